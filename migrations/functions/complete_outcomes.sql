-- Finishes the jobs of work units, fenced by lease: each entry's job is
-- written only while it is still running under the entry's lease, so a
-- reaped unit's late result is dropped, once (see 0009). Runs the queues'
-- sinks first (run_sinks), stores result_binary from "rb", and returns per
-- queue and outcome how many jobs were written: succeeded, retried (failed,
-- available again), dead, cancelled, or requeued (a keyed job put back unrun,
-- its attempt refunded).
CREATE OR REPLACE FUNCTION inferq.complete_outcomes(p_jobs jsonb, p_worker_name text)
RETURNS TABLE (queue text, outcome text, jobs integer)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
  res jsonb;
  kq text[];
  kk text[];
  v_now timestamptz := clock_timestamp();  -- the one time of this completion
BEGIN
  -- The keys of keyed leases: locked before their rows change, refreshed after.
  SELECT array_agg(s.queue), array_agg(s.work_unit_key) INTO kq, kk
    FROM inferq.active_sessions s
   WHERE s.id IN (SELECT x.lease FROM jsonb_to_recordset(p_jobs) AS x(lease bigint))
     AND s.work_unit_key IS NOT NULL;
  PERFORM inferq.lock_keys(kq, kk);
  IF jsonb_path_exists(p_jobs, '$[*].sink') THEN
    p_jobs := inferq.run_sinks(p_jobs);
  END IF;

  WITH r AS (
    SELECT x.*, coalesce(NOT x.ok AND x.class = 'requeue', false) AS requeue
      FROM jsonb_to_recordset(p_jobs)
      AS x(lease bigint, id bigint, ok boolean, result jsonb, rb text, class text,
           message text, retry_ms bigint)
  ), done AS (
    UPDATE inferq.jobs j
       SET state = CASE WHEN j.cancel_requested THEN 'cancelled'
                        WHEN r.ok THEN 'succeeded'
                        WHEN r.requeue THEN 'available'
                        WHEN r.class = 'permanent' OR j.attempts >= j.max_attempts THEN 'dead'
                        ELSE 'available' END::inferq.job_state,
           attempts = CASE WHEN r.requeue THEN greatest(j.attempts - 1, 0) ELSE j.attempts END,
           result = CASE WHEN r.ok AND NOT j.cancel_requested THEN r.result END,
           result_binary = CASE WHEN r.ok AND NOT j.cancel_requested THEN decode(r.rb, 'hex') END,
           last_error = CASE WHEN r.ok OR r.requeue THEN j.last_error ELSE r.message END,
           errors = CASE WHEN r.ok OR r.requeue THEN j.errors
                         ELSE j.errors || jsonb_build_array(jsonb_build_object(
                           'attempt', j.attempts, 'at', v_now, 'class', r.class,
                           'message', r.message, 'worker', p_worker_name)) END,
           lease_id = NULL,
           run_at = CASE WHEN NOT r.ok AND NOT r.requeue AND NOT j.cancel_requested
                              AND r.class <> 'permanent' AND j.attempts < j.max_attempts
                         THEN v_now + make_interval(secs => coalesce(r.retry_ms, 0) / 1000.0)
                         ELSE j.run_at END,
           finished_at = CASE WHEN r.ok OR j.cancel_requested
                                   OR (NOT r.requeue AND (r.class = 'permanent'
                                                          OR j.attempts >= j.max_attempts))
                              THEN v_now END
      FROM r
     -- Joined on id alone: lease_id is compared, never joined on (see 0008).
     WHERE j.id = r.id AND j.lease_id IS NOT DISTINCT FROM r.lease AND j.state = 'running'
    RETURNING j.id, j.state, j.queue, r.requeue
  ), released AS (
    DELETE FROM inferq.active_sessions s WHERE s.id IN (SELECT DISTINCT r.lease FROM r)
  ), notified AS (
    SELECT pg_notify(CASE WHEN d.state = 'available' THEN 'inferq_jobs' ELSE 'inferq_done' END,
                     CASE WHEN d.state = 'available' THEN d.queue ELSE d.id::text END)
      FROM done d
  )
  SELECT coalesce(jsonb_agg(jsonb_build_object('queue', o.q, 'outcome', o.outcome, 'jobs', o.n)), '[]')
    INTO res
    FROM (SELECT d.queue AS q,
                 CASE WHEN d.requeue THEN 'requeued'
                      WHEN d.state = 'available' THEN 'retried'
                      ELSE d.state::text END AS outcome,
                 count(*)::integer AS n
            FROM done d
           GROUP BY 1, 2) o
   -- Referencing 'notified' is what runs it (see 0009).
   WHERE (SELECT count(*) FROM notified) >= 0;

  PERFORM inferq.refresh_key_heads(kq, kk);
  RETURN QUERY SELECT x.queue, x.outcome, x.jobs
                 FROM jsonb_to_recordset(res) AS x(queue text, outcome text, jobs integer);
END
$$;
