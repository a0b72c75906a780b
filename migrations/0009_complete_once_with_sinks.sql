-- Two changes to inferq.complete_outcomes (the rest is 0008's body).
--
-- One time per completion statement. 0008 (like 0003) stamped each row with
-- its own clock_timestamp(), so the jobs of one unit, finished by one
-- statement, got finished_at values microseconds apart in row order, and
-- ordering a key's jobs by finished_at could show inversions inside a unit.
-- The function now reads the clock once and uses that time for finished_at,
-- the error history's 'at' and the retry's run_at.
--
-- Sinks. A job of a queue with a `sink` arrives with "sink": "schema.fn";
-- inferq.run_sinks calls fn(job_id, payload, result) for each such success
-- whose fence holds, inside this transaction, so the user's table gets the
-- result exactly when the job is completed: once, or (rolled back) not at
-- all. The job's row is locked first, so no reap can take it between the
-- sink and the completion. A sink that raises fails its job alone (a
-- subtransaction per call): transient for SQLSTATE class 40 and 55P03 (a
-- race), permanent otherwise, with the sink's message.

CREATE FUNCTION inferq.run_sinks(p_jobs jsonb)
RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
  e jsonb;
  v_payload jsonb;
  v_fn regprocedure;
  v_state text;
  v_msg text;
  failed jsonb := '{}';  -- job id -> what replaces its success
BEGIN
  FOR e IN SELECT x FROM jsonb_array_elements(p_jobs) AS t(x) WHERE x ? 'sink' AND (x->>'ok')::boolean LOOP
    SELECT j.payload INTO v_payload
      FROM inferq.jobs j
     WHERE j.id = (e->>'id')::bigint AND j.lease_id = (e->>'lease')::bigint
       AND j.state = 'running' AND NOT j.cancel_requested
       FOR UPDATE;
    CONTINUE WHEN NOT FOUND;  -- fenced off or cancelled: nothing lands anywhere
    BEGIN
      v_fn := to_regprocedure((e->>'sink') || '(bigint, jsonb, jsonb)');
      IF v_fn IS NULL THEN
        RAISE EXCEPTION 'no function %(bigint, jsonb, jsonb)', e->>'sink' USING ERRCODE = '42883';
      END IF;
      EXECUTE format('SELECT %s($1, $2, $3)', v_fn::oid::regproc)
        USING (e->>'id')::bigint, v_payload, e->'result';
    EXCEPTION WHEN OTHERS THEN
      GET STACKED DIAGNOSTICS v_state = RETURNED_SQLSTATE, v_msg = MESSAGE_TEXT;
      failed := failed || jsonb_build_object(e->>'id', jsonb_build_object(
        'ok', false,
        'class', CASE WHEN v_state LIKE '40%' OR v_state = '55P03' THEN 'transient' ELSE 'permanent' END,
        'message', format('sink %s failed: %s (SQLSTATE %s)', e->>'sink', v_msg, v_state)));
    END;
  END LOOP;
  IF failed = '{}' THEN
    RETURN p_jobs;
  END IF;
  RETURN (SELECT jsonb_agg(CASE WHEN failed ? (x->>'id') THEN (x - 'result') || (failed -> (x->>'id')) ELSE x END
                           ORDER BY n)
            FROM jsonb_array_elements(p_jobs) WITH ORDINALITY AS t(x, n));
END
$$;

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
      AS x(lease bigint, id bigint, ok boolean, result jsonb, class text,
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
     -- Joined on id alone: lease_id is compared, never joined on (see above).
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
   -- Referencing 'notified' is what runs it (a plain SELECT CTE that is not
   -- referenced is skipped), as in 0001's inferq.complete.
   WHERE (SELECT count(*) FROM notified) >= 0;

  PERFORM inferq.refresh_key_heads(kq, kk);
  RETURN QUERY SELECT x.queue, x.outcome, x.jobs
                 FROM jsonb_to_recordset(res) AS x(queue text, outcome text, jobs integer);
END
$$;
