-- Makes the jobs of `p_queue` that a claim would take but cannot serve dead,
-- so that the queue's claims get past them. The daemon calls it when a claim
-- fails on resources (SQLSTATE class 53 or 54): a payload whose JSON text
-- cannot be made (past 1 GB) fails the whole claim statement, every time.
--
-- It looks at what the next claims would take, in claim order: up to p_limit
-- due unkeyed jobs, and up to p_limit due jobs of the best claimable keys
-- (each key's jobs in id order, cut at the first one not yet due). A claim
-- takes either a key's unit or an unkeyed batch, so either may be what
-- failed. Each one's octet_length(payload::text) is tried; a job whose
-- conversion fails with class 53 or 54, or whose text is over 16 MiB (what
-- enqueue refuses), becomes dead like a permanent failure: finished_at set,
-- last_error and the error history "payload cannot be served: <reason>
-- (SQLSTATE ...)", NOTIFY inferq_done with its id, its key's head moved on.
-- Its attempts are left as they are (it never ran). Other jobs are not
-- touched. Rows or keys another transaction holds are skipped, never waited
-- for, as the claims do. Returns how many jobs it made dead.
CREATE OR REPLACE FUNCTION inferq.fail_unclaimable(p_queue text, p_limit integer) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
  ids     bigint[];
  h       record;
  keyed   bigint[];
  kq      text[] := '{}';
  kk      text[] := '{}';
  v_id    bigint;
  v_key   text;
  bytes   integer;
  reason  text;
  v_state text;
  v_msg   text;
  n       integer := 0;
BEGIN
  IF p_limit IS NULL OR p_limit <= 0 THEN
    RETURN 0;
  END IF;
  -- The unkeyed batch a claim or claim_more would take, locked as they lock it.
  SELECT coalesce(array_agg(x.id), '{}') INTO ids
    FROM (SELECT j.id FROM inferq.jobs j
           WHERE j.queue = p_queue AND j.state = 'available' AND j.work_unit_key IS NULL
             AND j.run_at <= now()
           ORDER BY j.priority DESC, j.run_at, j.id
           LIMIT p_limit
           FOR UPDATE SKIP LOCKED) x;

  -- The units of the best claimable keys (see key_heads), p_limit jobs in all.
  FOR h IN SELECT kh.work_unit_key AS key
             FROM inferq.key_heads kh
            WHERE kh.queue = p_queue AND kh.run_at <= now()
            ORDER BY kh.priority DESC, kh.run_at, kh.head_id
            LIMIT p_limit LOOP
    EXIT WHEN coalesce(cardinality(keyed), 0) >= p_limit;
    -- A key another transaction writes is skipped, as a claim skips it.
    CONTINUE WHEN NOT pg_try_advisory_xact_lock(inferq.key_lock_ns(), inferq.key_lock(p_queue, h.key));
    kq := kq || p_queue;
    kk := kk || h.key;
    -- Read after the lock: sees what the key's last writer committed.
    keyed := coalesce(keyed, '{}') || ARRAY(
      SELECT x.id
        FROM (SELECT j.id, bool_and(j.run_at <= now()) OVER (ORDER BY j.id) AS due
                FROM (SELECT j2.id, j2.run_at FROM inferq.jobs j2
                       WHERE j2.queue = p_queue AND j2.work_unit_key = h.key
                         AND j2.state = 'available'
                       ORDER BY j2.id
                       LIMIT p_limit - coalesce(cardinality(keyed), 0)) j) x
       WHERE x.due
       ORDER BY x.id);
  END LOOP;
  ids := ids || coalesce(keyed, '{}');

  FOREACH v_id IN ARRAY ids LOOP
    reason := NULL;
    BEGIN
      SELECT octet_length(j.payload::text) INTO bytes FROM inferq.jobs j WHERE j.id = v_id;
      IF bytes > 16777216 THEN
        reason := format('its JSON text is %s bytes, over the limit of 16777216 bytes (16 MiB) (SQLSTATE 54000)',
                         bytes);
      END IF;
    EXCEPTION WHEN insufficient_resources OR program_limit_exceeded THEN
      GET STACKED DIAGNOSTICS v_state = RETURNED_SQLSTATE, v_msg = MESSAGE_TEXT;
      reason := format('its JSON text could not be made: %s (SQLSTATE %s)', v_msg, v_state);
    END;
    CONTINUE WHEN reason IS NULL;

    reason := 'payload cannot be served: ' || reason;
    UPDATE inferq.jobs j
       SET state = 'dead',
           last_error = reason,
           errors = j.errors || jsonb_build_array(jsonb_build_object(
             'attempt', j.attempts, 'at', clock_timestamp(), 'class', 'permanent',
             'message', reason, 'worker', NULL)),
           finished_at = clock_timestamp()
     WHERE j.id = v_id AND j.state = 'available'
    RETURNING j.work_unit_key INTO v_key;
    CONTINUE WHEN NOT FOUND;
    n := n + 1;
    PERFORM pg_notify('inferq_done', v_id::text);
  END LOOP;

  -- Every key locked above: a dead head moves on to the key's next job.
  IF n > 0 THEN
    PERFORM inferq.refresh_key_heads(kq, kk);
  END IF;
  RETURN n;
END
$$;
