-- Bounds on what a producer may enqueue, a way past jobs no claim can serve,
-- and a least-privilege producer role.
--
-- Bounds. inferq.enqueue bounded the payload's jsonb size only, but the
-- claims return payload::text, and numerics amplify: 8,300 copies of
-- 1e131071 are 130 KB of jsonb (2 KB stored) and over 1 GB of text, so every
-- claim of that queue then failed (54000 "out of memory") and the queue was
-- wedged. The JSON text is now bounded at 16 MiB too. A run_at of
-- 'infinity' was never due and '-infinity' ranked first for ever, so run_at
-- must be finite; max_attempts is at most 1000, as each failed attempt adds
-- an entry to the job's error history.
--
-- inferq.fail_unclaimable is for jobs written before these bounds, or into
-- inferq.jobs directly: when a claim fails on resources (SQLSTATE class 53 or
-- 54), the daemon calls it to make the jobs the claim would take, and whose
-- text cannot be made or is over the bound, dead.
--
-- Producers. inferq.enqueue and inferq.cancel run as their owner (SECURITY
-- DEFINER, with a search_path the caller cannot change), record and check
-- who enqueued a job (enqueued_by, the caller's login role), and a producer
-- reads its own jobs through inferq.my_jobs. inferq.grant_producer(role)
-- grants exactly that; nothing in schema inferq is executable by PUBLIC any
-- more. The owner (the daemon's role, which ran migrate) is unaffected.

-- The login role that enqueued the job (session_user: inside SECURITY
-- DEFINER functions current_user is their owner). NULL for jobs enqueued
-- before this migration: their producer is not known, so only members of
-- the owner may cancel them and no producer sees them in my_jobs.
ALTER TABLE inferq.jobs ADD COLUMN enqueued_by name;
ALTER TABLE inferq.jobs ALTER COLUMN enqueued_by SET DEFAULT session_user;

-- Producer API -------------------------------------------------------------

-- 0001's checks, plus: the payload's JSON text at most 16 MiB, run_at finite,
-- max_attempts at most 1000; records enqueued_by. Every name is qualified
-- (search_path is pg_catalog, pg_temp while it runs).
CREATE OR REPLACE FUNCTION inferq.enqueue(
  queue         text,
  payload       jsonb,
  work_unit_key text        DEFAULT NULL,
  priority      integer     DEFAULT 0,
  run_at        timestamptz DEFAULT now(),
  max_attempts  integer     DEFAULT NULL
) RETURNS bigint
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  new_id     bigint;
  text_bytes integer;
  v_state    text;
  v_msg      text;
BEGIN
  IF enqueue.queue IS NULL OR enqueue.queue = '' THEN
    RAISE EXCEPTION 'inferq.enqueue: queue must be a non-empty name'
      USING ERRCODE = 'invalid_parameter_value';
  END IF;
  IF enqueue.queue !~ '^[A-Za-z0-9_.-]{1,200}$' THEN
    RAISE EXCEPTION 'inferq.enqueue: queue name "%" is invalid: use 1 to 200 of A-Z a-z 0-9 _ . -', enqueue.queue
      USING ERRCODE = 'invalid_parameter_value';
  END IF;
  IF enqueue.payload IS NULL OR jsonb_typeof(enqueue.payload) <> 'object' THEN
    RAISE EXCEPTION 'inferq.enqueue: payload must be a JSON object, got %',
      coalesce(jsonb_typeof(enqueue.payload), 'NULL')
      USING ERRCODE = 'invalid_parameter_value';
  END IF;
  IF pg_column_size(enqueue.payload) > 16777216 THEN
    RAISE EXCEPTION 'inferq.enqueue: payload is % bytes, over the limit of 16777216 bytes (16 MiB)',
      pg_column_size(enqueue.payload)
      USING ERRCODE = 'program_limit_exceeded';
  END IF;
  -- The text the claims will send. Making it can itself fail (past 1 GB):
  -- that is over the limit too. The block's subtransaction writes nothing,
  -- so it takes no transaction id.
  BEGIN
    text_bytes := octet_length(enqueue.payload::text);
  EXCEPTION WHEN program_limit_exceeded OR out_of_memory THEN
    GET STACKED DIAGNOSTICS v_state = RETURNED_SQLSTATE, v_msg = MESSAGE_TEXT;
    RAISE EXCEPTION 'inferq.enqueue: payload''s JSON text is over the limit of 16777216 bytes (16 MiB)'
      USING ERRCODE = 'program_limit_exceeded',
            DETAIL = format('Making it failed: %s (SQLSTATE %s).', v_msg, v_state);
  END;
  IF text_bytes > 16777216 THEN
    RAISE EXCEPTION 'inferq.enqueue: payload''s JSON text is % bytes, over the limit of 16777216 bytes (16 MiB)',
      text_bytes
      USING ERRCODE = 'program_limit_exceeded';
  END IF;
  IF enqueue.work_unit_key = '' THEN
    RAISE EXCEPTION 'inferq.enqueue: work_unit_key must be NULL or a non-empty string'
      USING ERRCODE = 'invalid_parameter_value';
  END IF;
  IF enqueue.priority IS NULL THEN
    RAISE EXCEPTION 'inferq.enqueue: priority must not be NULL'
      USING ERRCODE = 'invalid_parameter_value';
  END IF;
  IF enqueue.run_at IS NOT NULL AND NOT isfinite(enqueue.run_at) THEN
    RAISE EXCEPTION 'inferq.enqueue: run_at must be a finite time (or NULL for now), got %', enqueue.run_at
      USING ERRCODE = 'invalid_parameter_value';
  END IF;
  IF enqueue.max_attempts IS NOT NULL AND enqueue.max_attempts < 1 THEN
    RAISE EXCEPTION 'inferq.enqueue: max_attempts must be at least 1, got %', enqueue.max_attempts
      USING ERRCODE = 'invalid_parameter_value';
  END IF;
  IF enqueue.max_attempts > 1000 THEN
    RAISE EXCEPTION 'inferq.enqueue: max_attempts must be at most 1000, got %', enqueue.max_attempts
      USING ERRCODE = 'invalid_parameter_value';
  END IF;

  INSERT INTO inferq.jobs (queue, work_unit_key, payload, priority, run_at, max_attempts, enqueued_by)
  VALUES (enqueue.queue, enqueue.work_unit_key, enqueue.payload, enqueue.priority,
          coalesce(enqueue.run_at, now()), enqueue.max_attempts, session_user)
  RETURNING id INTO new_id;
  IF enqueue.work_unit_key IS NOT NULL THEN
    PERFORM inferq.refresh_key_head(enqueue.queue, enqueue.work_unit_key);
  END IF;
  -- Delivered at commit; identical payloads in one transaction fold into one.
  PERFORM pg_notify('inferq_jobs', enqueue.queue);
  RETURN new_id;
END
$$;

-- 0001's cancel, for the job's own producer: an available job becomes
-- cancelled at once; a running one is marked and becomes cancelled when its
-- unit ends. Returns false when the job does not exist or has already
-- finished. A job enqueued by another login role raises insufficient_privilege
-- (42501) unless the caller is a member of the owner of inferq.jobs (the
-- daemon's role, an admin; superusers are members of every role): telling a
-- producer "no such job" for a job it can see the id of would hide a mistake.
CREATE OR REPLACE FUNCTION inferq.cancel(job_id bigint) RETURNS boolean
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  s inferq.job_state;
  k record;
BEGIN
  SELECT j.queue, j.work_unit_key, j.enqueued_by INTO k FROM inferq.jobs j WHERE j.id = cancel.job_id;
  IF NOT FOUND THEN
    RETURN false;
  END IF;
  IF k.enqueued_by IS DISTINCT FROM session_user
     AND NOT pg_has_role(session_user,
                         (SELECT c.relowner FROM pg_class c WHERE c.oid = 'inferq.jobs'::regclass),
                         'MEMBER') THEN
    RAISE EXCEPTION 'inferq.cancel: job % was not enqueued by role %', cancel.job_id, session_user
      USING ERRCODE = 'insufficient_privilege',
            HINT = 'A producer may cancel only the jobs it enqueued.';
  END IF;
  -- A keyed job: take its key's lock before touching the row (see key_heads).
  IF k.work_unit_key IS NOT NULL THEN
    PERFORM pg_advisory_xact_lock(inferq.key_lock_ns(), inferq.key_lock(k.queue, k.work_unit_key));
  END IF;
  UPDATE inferq.jobs j
     SET cancel_requested = true,
         state = CASE WHEN j.state = 'available' THEN 'cancelled'::inferq.job_state ELSE j.state END,
         finished_at = CASE WHEN j.state = 'available' THEN clock_timestamp() ELSE j.finished_at END
   WHERE j.id = cancel.job_id AND j.state IN ('available', 'running')
  RETURNING j.state INTO s;
  IF NOT FOUND THEN
    RETURN false;
  END IF;
  IF s = 'cancelled' THEN
    -- It was available: if it was its key's head, the head moves on.
    IF k.work_unit_key IS NOT NULL THEN
      PERFORM inferq.refresh_key_head(k.queue, k.work_unit_key);
    END IF;
    PERFORM pg_notify('inferq_done', cancel.job_id::text);
  END IF;
  RETURN true;
END
$$;

-- A producer's own jobs (enqueued_by is its login role). security_barrier:
-- a function of the caller's in a WHERE on the view cannot see the rows the
-- filter hides. The view reads inferq.jobs with its owner's rights.
CREATE VIEW inferq.my_jobs WITH (security_barrier) AS
SELECT j.id, j.queue, j.work_unit_key, j.state, j.priority, j.attempts, j.max_attempts,
       j.run_at, j.created_at, j.started_at, j.finished_at, j.result, j.last_error
  FROM inferq.jobs j
 WHERE j.enqueued_by = session_user;

-- Grants role p_role exactly what a producer needs: inferq.enqueue,
-- inferq.cancel and inferq.my_jobs (LISTEN needs no grant). Run it as the
-- owner of schema inferq (the role that ran migrate) or a superuser; nobody
-- else may execute it.
CREATE FUNCTION inferq.grant_producer(p_role regrole) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  IF p_role IS NULL THEN
    RAISE EXCEPTION 'inferq.grant_producer: role must not be NULL'
      USING ERRCODE = 'invalid_parameter_value';
  END IF;
  -- regrole's text is the quoted name.
  EXECUTE format('GRANT USAGE ON SCHEMA inferq TO %s', p_role);
  EXECUTE format('GRANT EXECUTE ON FUNCTION inferq.enqueue(text, jsonb, text, integer, timestamptz, integer),'
                 ' inferq.cancel(bigint) TO %s', p_role);
  EXECUTE format('GRANT SELECT ON inferq.my_jobs TO %s', p_role);
END
$$;

-- Daemon API ----------------------------------------------------------------

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
CREATE FUNCTION inferq.fail_unclaimable(p_queue text, p_limit integer) RETURNS integer
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

-- Privileges -----------------------------------------------------------------

-- Functions are executable by PUBLIC unless revoked; a producer gets EXECUTE
-- on enqueue and cancel alone, through grant_producer. A later migration
-- that creates a function must revoke it from PUBLIC too (test_db_producer_role
-- checks that a producer can execute nothing else).
REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA inferq FROM PUBLIC;
