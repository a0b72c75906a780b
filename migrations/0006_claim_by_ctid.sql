-- inferq.claim and inferq.claim_more update the unkeyed jobs they claim by
-- ctid instead of by id. The rows were just locked FOR UPDATE in the same
-- transaction, so their ctids cannot change before the UPDATE, which then
-- reads each row straight from its heap page (a TID scan) instead of
-- descending jobs_pkey once per job: the pkey holds every version of every
-- job, the history included, so those descents cost more as the table grows.
-- Keyed claims (rows guarded by the key's lock, not a row lock) still update
-- by id. Picking and starting unkeyed jobs move into two helpers both use;
-- the bodies are 0005's otherwise.

-- Locks up to p_max_jobs due unkeyed available jobs of the queue, best
-- first (priority, then run_at, then id), skipping rows other claims hold;
-- returns their ctids (NULL when none), valid until the caller's transaction
-- ends. Shared by claim and claim_more.
CREATE FUNCTION inferq.lock_due_unkeyed(p_queue text, p_max_jobs integer) RETURNS tid[]
LANGUAGE plpgsql AS $$
DECLARE
  tids tid[];
BEGIN
  SELECT array_agg(x.ctid) INTO tids
    FROM (SELECT j.ctid FROM inferq.jobs j
           WHERE j.queue = p_queue AND j.state = 'available' AND j.work_unit_key IS NULL
             AND j.run_at <= now()
           ORDER BY j.priority DESC, j.run_at, j.id
           LIMIT p_max_jobs
           FOR UPDATE SKIP LOCKED) x;
  RETURN tids;
END
$$;

-- Starts the jobs at `p_tids` (rows the caller locked in this transaction)
-- under lease `p_lease`: running, one more attempt, max_attempts fixed to
-- the queue's default when unset. Returns each job with its wait (from ready
-- to now). Shared by claim and claim_more.
CREATE FUNCTION inferq.start_locked_jobs(p_tids tid[], p_lease bigint, p_default_max_attempts integer)
RETURNS TABLE (job_id bigint, payload text, attempts integer, max_attempts integer,
               work_unit_key text, wait_seconds float8)
LANGUAGE plpgsql AS $$
BEGIN
  RETURN QUERY
  UPDATE inferq.jobs j
     SET state = 'running', lease_id = p_lease, attempts = j.attempts + 1,
         max_attempts = coalesce(j.max_attempts, p_default_max_attempts),
         started_at = clock_timestamp()
   WHERE j.ctid = ANY (p_tids)
  RETURNING j.id, j.payload::text, j.attempts, j.max_attempts, j.work_unit_key,
            extract(epoch FROM clock_timestamp() - greatest(j.created_at, j.run_at))::float8;
END
$$;

CREATE OR REPLACE FUNCTION inferq.claim(p_queue text, p_worker bigint, p_max_jobs integer,
                             p_default_max_attempts integer)
RETURNS TABLE (lease_id bigint, job_id bigint, payload text, attempts integer,
               max_attempts integer, work_unit_key text, wait_seconds float8)
LANGUAGE plpgsql AS $$
DECLARE
  u      record;
  k      record;
  ids    bigint[];
  tids   tid[];
  lease  bigint;
  tries  integer := 0;
  skipped text[] := '{}';
BEGIN
  SELECT j.priority, j.run_at, j.id INTO u
    FROM inferq.jobs j
   WHERE j.queue = p_queue AND j.state = 'available' AND j.work_unit_key IS NULL
     AND j.run_at <= now()
   ORDER BY j.priority DESC, j.run_at, j.id
   LIMIT 1;

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
                    extract(epoch FROM clock_timestamp() - greatest(j.created_at, j.run_at))::float8;
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

  IF u.id IS NULL THEN
    RETURN;
  END IF;
  tids := inferq.lock_due_unkeyed(p_queue, p_max_jobs);
  IF tids IS NULL THEN
    RETURN;
  END IF;
  INSERT INTO inferq.active_sessions (queue, worker_id) VALUES (p_queue, p_worker)
  RETURNING id INTO lease;
  RETURN QUERY
  SELECT lease, s.job_id, s.payload, s.attempts, s.max_attempts, s.work_unit_key, s.wait_seconds
    FROM inferq.start_locked_jobs(tids, lease, p_default_max_attempts) s;
END
$$;

CREATE OR REPLACE FUNCTION inferq.claim_more(p_lease bigint, p_queue text, p_max_jobs integer,
                                  p_default_max_attempts integer)
RETURNS TABLE (job_id bigint, payload text, attempts integer, max_attempts integer, wait_seconds float8)
LANGUAGE plpgsql AS $$
DECLARE
  tids tid[];
BEGIN
  IF p_max_jobs IS NULL OR p_max_jobs <= 0 THEN
    RETURN;
  END IF;
  PERFORM 1 FROM inferq.active_sessions s
   WHERE s.id = p_lease AND s.queue = p_queue AND s.work_unit_key IS NULL
     FOR UPDATE;
  IF NOT FOUND THEN
    RETURN;
  END IF;
  tids := inferq.lock_due_unkeyed(p_queue, p_max_jobs);
  IF tids IS NULL THEN
    RETURN;
  END IF;
  RETURN QUERY
  SELECT s.job_id, s.payload, s.attempts, s.max_attempts, s.wait_seconds
    FROM inferq.start_locked_jobs(tids, p_lease, p_default_max_attempts) s;
END
$$;
