-- Gives back the leases of a daemon that stops cleanly: their running jobs
-- become available at once and do not lose the attempt the claim counted.
CREATE OR REPLACE FUNCTION inferq.release(p_leases bigint[])
RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
  n  integer;
  kq text[];
  kk text[];
BEGIN
  -- The keys of keyed leases: locked before their rows change, refreshed after.
  SELECT array_agg(s.queue), array_agg(s.work_unit_key) INTO kq, kk
    FROM inferq.active_sessions s
   WHERE s.id = ANY (p_leases)
     AND s.work_unit_key IS NOT NULL;
  PERFORM inferq.lock_keys(kq, kk);

  WITH gone AS (
    DELETE FROM inferq.active_sessions s WHERE s.id = ANY (p_leases) RETURNING s.id
  ), back AS (
    UPDATE inferq.jobs j
       SET state = CASE WHEN j.cancel_requested THEN 'cancelled'
                        ELSE 'available' END::inferq.job_state,
           attempts = greatest(j.attempts - 1, 0),
           lease_id = NULL,
           finished_at = CASE WHEN j.cancel_requested THEN clock_timestamp() END
      FROM gone g
     WHERE j.lease_id = g.id AND j.state = 'running'
    RETURNING j.id, j.state, j.queue
  ), notified AS (
    SELECT pg_notify(CASE WHEN b.state = 'available' THEN 'inferq_jobs' ELSE 'inferq_done' END,
                     CASE WHEN b.state = 'available' THEN b.queue ELSE b.id::text END)
      FROM back b
  )
  SELECT (SELECT count(*) FROM back)::integer + 0 * (SELECT count(*) FROM notified)::integer
    INTO n;

  PERFORM inferq.refresh_key_heads(kq, kk);
  RETURN n;
END
$$;
