-- Claims one work unit of `p_queue` for worker `p_worker`: either up to
-- p_max_jobs unkeyed jobs, or up to p_max_jobs consecutive available jobs of
-- one key whose head is due and which has no live lease, whichever ranks
-- first by (priority DESC, run_at, id). Counts the attempt now. Returns no
-- rows when nothing is claimable; each job with its wait (ready to claimed,
-- from the UPDATE that claims it: see 0005) and its payload_binary. Keys are
-- found in key_heads (claimable keys only); a key another transaction is
-- writing right now is skipped, not waited for. Statements are planned once
-- per session (plan_cache_mode, see 0007).
CREATE OR REPLACE FUNCTION inferq.claim(p_queue text, p_worker bigint, p_max_jobs integer,
                             p_default_max_attempts integer)
RETURNS TABLE (lease_id bigint, job_id bigint, payload text, attempts integer,
               max_attempts integer, work_unit_key text, wait_seconds float8, payload_binary bytea)
LANGUAGE plpgsql
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
  u        record;
  u_read   boolean := false;
  k        record;
  ids      bigint[];
  tids     tid[];
  lease    bigint;
  tries    integer := 0;
  skipped  text[] := '{}';
BEGIN
  -- The best claimable key (see key_heads). Its row is locked FOR UPDATE
  -- (another daemon skips it), then its key's lock is only tried: a key being
  -- written by another transaction is skipped, never waited for.
  LOOP
    k := NULL;
    SELECT h.priority, h.run_at, h.head_id AS id, h.work_unit_key AS key INTO k
      FROM inferq.key_heads h
     WHERE h.queue = p_queue AND h.run_at <= now()
       AND NOT (h.work_unit_key = ANY (skipped))
     ORDER BY h.priority DESC, h.run_at, h.head_id
     LIMIT 1
     FOR UPDATE SKIP LOCKED;
    EXIT WHEN k.id IS NULL;
    IF NOT u_read THEN
      -- The best unkeyed job, to weigh against the key's head.
      SELECT j.priority, j.run_at, j.id INTO u
        FROM inferq.jobs j
       WHERE j.queue = p_queue AND j.state = 'available' AND j.work_unit_key IS NULL
         AND j.run_at <= now()
       ORDER BY j.priority DESC, j.run_at, j.id
       LIMIT 1;
      u_read := true;
    END IF;
    EXIT WHEN u.id IS NOT NULL AND (u.priority, k.run_at, k.id) > (k.priority, u.run_at, u.id);
    skipped := skipped || k.key;
    tries := tries + 1;

    IF pg_try_advisory_xact_lock(inferq.key_lock_ns(), inferq.key_lock(p_queue, k.key)) THEN
      -- From here on the statements see what the key's last writer committed.
      -- The unique lease per key is what makes its jobs run one unit at a time.
      lease := NULL;
      INSERT INTO inferq.active_sessions (queue, work_unit_key, worker_id)
      VALUES (p_queue, k.key, p_worker)
      ON CONFLICT ON CONSTRAINT active_sessions_one_lease_per_key DO NOTHING
      RETURNING id INTO lease;
      IF lease IS NOT NULL THEN
        -- The key's next jobs in id order, cut at the first one not yet due.
        SELECT array_agg(x.id ORDER BY x.id) INTO ids
          FROM (SELECT j.id, bool_and(j.run_at <= now()) OVER (ORDER BY j.id) AS due
                  FROM (SELECT j2.id, j2.run_at FROM inferq.jobs j2
                         WHERE j2.queue = p_queue AND j2.work_unit_key = k.key
                           AND j2.state = 'available'
                         ORDER BY j2.id LIMIT p_max_jobs) j) x
         WHERE x.due;
        IF ids IS NOT NULL THEN
          -- Leased: the key is not claimable until its unit ends.
          DELETE FROM inferq.key_heads h WHERE h.queue = p_queue AND h.work_unit_key = k.key;
          RETURN QUERY
          UPDATE inferq.jobs j
             SET state = 'running', lease_id = lease, attempts = j.attempts + 1,
                 max_attempts = coalesce(j.max_attempts, p_default_max_attempts),
                 started_at = clock_timestamp()
           WHERE j.id = ANY (ids) AND j.state = 'available'
          RETURNING lease, j.id, j.payload::text, j.attempts, j.max_attempts, j.work_unit_key,
                    extract(epoch FROM clock_timestamp() - greatest(j.created_at, j.run_at))::float8,
                    j.payload_binary;
          IF FOUND THEN
            RETURN;
          END IF;
        END IF;
        DELETE FROM inferq.active_sessions s WHERE s.id = lease;
      END IF;
      -- The row was stale (the key is leased, or its head is not due): fix it.
      PERFORM inferq.refresh_key_head(p_queue, k.key);
    END IF;
    EXIT WHEN tries >= 5;
  END LOOP;

  IF u_read THEN
    IF u.id IS NULL THEN  -- (u is unassigned until read: no AND here)
      RETURN;
    END IF;
  END IF;
  -- Up to p_max_jobs due unkeyed jobs, best first, skipping rows other
  -- claims hold.
  SELECT array_agg(x.ctid) INTO tids
    FROM (SELECT j.ctid FROM inferq.jobs j
           WHERE j.queue = p_queue AND j.state = 'available' AND j.work_unit_key IS NULL
             AND j.run_at <= now()
           ORDER BY j.priority DESC, j.run_at, j.id
           LIMIT p_max_jobs
           FOR UPDATE SKIP LOCKED) x;
  IF tids IS NULL THEN
    RETURN;
  END IF;
  -- The lease and the start in one statement (see 0007).
  RETURN QUERY
  WITH new_lease AS (
    INSERT INTO inferq.active_sessions (queue, worker_id) VALUES (p_queue, p_worker)
    RETURNING id
  )
  UPDATE inferq.jobs j
     SET state = 'running', lease_id = l.id, attempts = j.attempts + 1,
         max_attempts = coalesce(j.max_attempts, p_default_max_attempts),
         started_at = clock_timestamp()
    FROM new_lease l
   WHERE j.ctid = ANY (tids)
  RETURNING l.id, j.id, j.payload::text, j.attempts, j.max_attempts, j.work_unit_key,
            extract(epoch FROM clock_timestamp() - greatest(j.created_at, j.run_at))::float8,
            j.payload_binary;
END
$$;
