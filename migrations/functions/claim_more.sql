-- Adds up to p_max_jobs more unkeyed jobs of p_queue, due now, to the live
-- unkeyed lease p_lease, in claim order (priority DESC, run_at, id), counting
-- their attempt now (a queue's batch.max_wait: see 0002). Returns the jobs
-- added: none when nothing is claimable, or when the lease no longer exists
-- (reaped) or is keyed. The lease row is locked first, so a reaper deleting
-- it either goes first (nothing is added) or waits for this to commit (and
-- then returns these jobs too).
CREATE OR REPLACE FUNCTION inferq.claim_more(p_lease bigint, p_queue text, p_max_jobs integer,
                                  p_default_max_attempts integer)
RETURNS TABLE (job_id bigint, payload text, attempts integer, max_attempts integer, wait_seconds float8,
               payload_binary bytea)
LANGUAGE plpgsql
SET plan_cache_mode = force_generic_plan
AS $$
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
  SELECT s.job_id, s.payload, s.attempts, s.max_attempts, s.wait_seconds, s.payload_binary
    FROM inferq.start_locked_jobs(tids, p_lease, p_default_max_attempts) s;
END
$$;
