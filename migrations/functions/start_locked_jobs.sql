-- Starts the jobs at `p_tids` (rows the caller locked in this transaction)
-- under lease `p_lease`: running, one more attempt, max_attempts fixed to
-- the queue's default when unset. Returns each job with its wait (from ready
-- to now) and payload_binary. Shared by claim and claim_more.
CREATE OR REPLACE FUNCTION inferq.start_locked_jobs(p_tids tid[], p_lease bigint, p_default_max_attempts integer)
RETURNS TABLE (job_id bigint, payload text, attempts integer, max_attempts integer,
               work_unit_key text, wait_seconds float8, payload_binary bytea)
LANGUAGE plpgsql AS $$
BEGIN
  RETURN QUERY
  UPDATE inferq.jobs j
     SET state = 'running', lease_id = p_lease, attempts = j.attempts + 1,
         max_attempts = coalesce(j.max_attempts, p_default_max_attempts),
         started_at = clock_timestamp()
   WHERE j.ctid = ANY (p_tids)
  RETURNING j.id, j.payload::text, j.attempts, j.max_attempts, j.work_unit_key,
            extract(epoch FROM clock_timestamp() - greatest(j.created_at, j.run_at))::float8,
            j.payload_binary;
END
$$;
