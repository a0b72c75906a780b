-- Partial units that wait for more jobs (a queue's batch.max_wait): the
-- daemon claims what is there, holds the lease while the unit fills, and tops
-- the same lease up with claim_more before it sends the unit to an executor.

-- Adds up to p_max_jobs more unkeyed jobs of p_queue, due now, to the live
-- unkeyed lease p_lease, in claim order (priority DESC, run_at, id), counting
-- their attempt now. Returns the jobs added: none when nothing is claimable,
-- or when the lease no longer exists (reaped) or is keyed. The lease row is
-- locked first, so a reaper deleting it either goes first (nothing is added)
-- or waits for this to commit (and then returns these jobs too).
CREATE FUNCTION inferq.claim_more(p_lease bigint, p_queue text, p_max_jobs integer,
                                  p_default_max_attempts integer)
RETURNS TABLE (job_id bigint, payload text, attempts integer, max_attempts integer)
LANGUAGE plpgsql AS $$
DECLARE
  ids bigint[];
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
  SELECT array_agg(x.id) INTO ids
    FROM (SELECT j.id FROM inferq.jobs j
           WHERE j.queue = p_queue AND j.state = 'available' AND j.work_unit_key IS NULL
             AND j.run_at <= now()
           ORDER BY j.priority DESC, j.run_at, j.id
           LIMIT p_max_jobs
           FOR UPDATE SKIP LOCKED) x;
  IF ids IS NULL THEN
    RETURN;
  END IF;
  RETURN QUERY
  UPDATE inferq.jobs j
     SET state = 'running', lease_id = p_lease, attempts = j.attempts + 1,
         max_attempts = coalesce(j.max_attempts, p_default_max_attempts),
         started_at = clock_timestamp()
   WHERE j.id = ANY (ids)
  RETURNING j.id, j.payload::text, j.attempts, j.max_attempts;
END
$$;
