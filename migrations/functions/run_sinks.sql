-- Sinks. A job of a queue with a `sink` arrives with "sink": "schema.fn";
-- run_sinks calls fn(job_id, payload, result) for each such success whose
-- fence holds, inside this transaction, so the user's table gets the result
-- exactly when the job is completed: once, or (rolled back) not at all. A job
-- whose entry has "rb" (its queue has binary outputs) has a sink
-- fn(bigint, jsonb, jsonb, bytea), called with the bytes. The job's row is
-- locked first, so no reap can take it between the sink and the completion.
-- A sink that raises fails its job alone (a subtransaction per call):
-- transient for SQLSTATE class 40 and 55P03 (a race), permanent otherwise,
-- with the sink's message.
CREATE OR REPLACE FUNCTION inferq.run_sinks(p_jobs jsonb)
RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
  e jsonb;
  v_payload jsonb;
  v_fn regprocedure;
  v_args text;
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
      v_args := CASE WHEN e ? 'rb' THEN '(bigint, jsonb, jsonb, bytea)' ELSE '(bigint, jsonb, jsonb)' END;
      v_fn := to_regprocedure((e->>'sink') || v_args);
      IF v_fn IS NULL THEN
        RAISE EXCEPTION 'no function %', (e->>'sink') || v_args USING ERRCODE = '42883';
      END IF;
      IF e ? 'rb' THEN
        EXECUTE format('SELECT %s($1, $2, $3, $4)', v_fn::oid::regproc)
          USING (e->>'id')::bigint, v_payload, e->'result', decode(e->>'rb', 'hex');
      ELSE
        EXECUTE format('SELECT %s($1, $2, $3)', v_fn::oid::regproc)
          USING (e->>'id')::bigint, v_payload, e->'result';
      END IF;
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
  RETURN (SELECT jsonb_agg(CASE WHEN failed ? (x->>'id') THEN (x - 'result' - 'rb') || (failed -> (x->>'id'))
                                ELSE x END
                           ORDER BY n)
            FROM jsonb_array_elements(p_jobs) WITH ORDINALITY AS t(x, n));
END
$$;
