--
-- PostgreSQL database dump
--



SET statement_timeout = 0;
SET lock_timeout = 0;
SET idle_in_transaction_session_timeout = 0;
SET client_encoding = 'UTF8';
SET standard_conforming_strings = on;
SELECT pg_catalog.set_config('search_path', '', false);
SET check_function_bodies = false;
SET xmloption = content;
SET client_min_messages = warning;
SET row_security = off;

--
-- Name: inferq; Type: SCHEMA; Schema: -; Owner: -
--

CREATE SCHEMA inferq;


--
-- Name: job_state; Type: TYPE; Schema: inferq; Owner: -
--

CREATE TYPE inferq.job_state AS ENUM (
    'available',
    'running',
    'succeeded',
    'dead',
    'cancelled'
);


--
-- Name: cancel(bigint); Type: FUNCTION; Schema: inferq; Owner: -
--

CREATE FUNCTION inferq.cancel(job_id bigint) RETURNS boolean
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'pg_temp'
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


--
-- Name: claim(text, bigint, integer, integer); Type: FUNCTION; Schema: inferq; Owner: -
--

CREATE FUNCTION inferq.claim(p_queue text, p_worker bigint, p_max_jobs integer, p_default_max_attempts integer) RETURNS TABLE(lease_id bigint, job_id bigint, payload text, attempts integer, max_attempts integer, work_unit_key text, wait_seconds double precision, payload_binary bytea)
    LANGUAGE plpgsql
    SET plan_cache_mode TO 'force_generic_plan'
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


--
-- Name: claim_more(bigint, text, integer, integer); Type: FUNCTION; Schema: inferq; Owner: -
--

CREATE FUNCTION inferq.claim_more(p_lease bigint, p_queue text, p_max_jobs integer, p_default_max_attempts integer) RETURNS TABLE(job_id bigint, payload text, attempts integer, max_attempts integer, wait_seconds double precision, payload_binary bytea)
    LANGUAGE plpgsql
    SET plan_cache_mode TO 'force_generic_plan'
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


--
-- Name: complete(jsonb, text); Type: FUNCTION; Schema: inferq; Owner: -
--

CREATE FUNCTION inferq.complete(p_jobs jsonb, p_worker_name text) RETURNS integer
    LANGUAGE sql
    AS $$
  SELECT coalesce(sum(c.jobs), 0)::integer FROM inferq.complete_outcomes(p_jobs, p_worker_name) c
$$;


--
-- Name: complete_outcomes(jsonb, text); Type: FUNCTION; Schema: inferq; Owner: -
--

CREATE FUNCTION inferq.complete_outcomes(p_jobs jsonb, p_worker_name text) RETURNS TABLE(queue text, outcome text, jobs integer)
    LANGUAGE plpgsql
    AS $_$
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
$_$;


--
-- Name: enqueue(text, jsonb, text, integer, timestamp with time zone, integer, bytea, text); Type: FUNCTION; Schema: inferq; Owner: -
--

CREATE FUNCTION inferq.enqueue(queue text, payload jsonb, work_unit_key text DEFAULT NULL::text, priority integer DEFAULT 0, run_at timestamp with time zone DEFAULT now(), max_attempts integer DEFAULT NULL::integer, payload_binary bytea DEFAULT NULL::bytea, unique_key text DEFAULT NULL::text) RETURNS bigint
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $_$
-- Columns win over the parameters (always written enqueue.name) in the
-- ON CONFLICT clause, whose names are the index's.
#variable_conflict use_column
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
  IF octet_length(enqueue.payload_binary) > 16777216 THEN
    RAISE EXCEPTION 'inferq.enqueue: payload_binary is % bytes, over the limit of 16777216 bytes (16 MiB)',
      octet_length(enqueue.payload_binary)
      USING ERRCODE = 'program_limit_exceeded';
  END IF;
  IF enqueue.unique_key = '' THEN
    RAISE EXCEPTION 'inferq.enqueue: unique_key must be NULL or a non-empty string'
      USING ERRCODE = 'invalid_parameter_value';
  END IF;
  IF octet_length(enqueue.unique_key) > 1000 THEN
    RAISE EXCEPTION 'inferq.enqueue: unique_key is % bytes, over the limit of 1000 bytes',
      octet_length(enqueue.unique_key)
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

  -- A live job with the key wins: its id is returned and nothing is
  -- inserted. ON CONFLICT waits for a concurrent inserter of the same key to
  -- commit or roll back, so exactly one of racing producers inserts. The
  -- loop covers the live job finishing between the two statements (then
  -- the key is free and the insert goes through); under REPEATABLE READ a
  -- conflict with a job the snapshot cannot see raises a serialization
  -- failure instead, as PostgreSQL does for any such conflict.
  FOR attempt IN 1..10 LOOP
    INSERT INTO inferq.jobs (queue, work_unit_key, payload, payload_binary, priority, run_at, max_attempts,
                             enqueued_by, unique_key)
    VALUES (enqueue.queue, enqueue.work_unit_key, enqueue.payload, enqueue.payload_binary, enqueue.priority,
            coalesce(enqueue.run_at, now()), enqueue.max_attempts, session_user, enqueue.unique_key)
    ON CONFLICT (queue, unique_key) WHERE unique_key IS NOT NULL AND state IN ('available', 'running')
    DO NOTHING
    RETURNING id INTO new_id;
    EXIT WHEN new_id IS NOT NULL;
    SELECT j.id INTO new_id
      FROM inferq.jobs j
     WHERE j.queue = enqueue.queue AND j.unique_key = enqueue.unique_key
       AND j.state IN ('available', 'running');
    IF new_id IS NOT NULL THEN
      RETURN new_id;
    END IF;
  END LOOP;
  IF new_id IS NULL THEN
    RAISE EXCEPTION 'inferq.enqueue: unique_key "%": the live job with this key kept changing; try again',
      enqueue.unique_key
      USING ERRCODE = 'serialization_failure';
  END IF;
  IF enqueue.work_unit_key IS NOT NULL THEN
    PERFORM inferq.refresh_key_head(enqueue.queue, enqueue.work_unit_key);
  END IF;
  -- Delivered at commit; identical payloads in one transaction fold into one.
  PERFORM pg_notify('inferq_jobs', enqueue.queue);
  RETURN new_id;
END
$_$;


--
-- Name: fail_unclaimable(text, integer); Type: FUNCTION; Schema: inferq; Owner: -
--

CREATE FUNCTION inferq.fail_unclaimable(p_queue text, p_limit integer) RETURNS integer
    LANGUAGE plpgsql
    AS $$
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


--
-- Name: float_of_bits(bigint, integer, integer); Type: FUNCTION; Schema: inferq; Owner: -
--

CREATE FUNCTION inferq.float_of_bits(p_bits bigint, p_exponent_bits integer, p_fraction_bits integer) RETURNS double precision
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    AS $$
  SELECT CASE WHEN x.e = x.emax THEN CASE WHEN x.f = 0 THEN x.s * 'Infinity'::float8 ELSE 'NaN'::float8 END
              WHEN x.e = 0 THEN x.s * x.f * power(2::float8, 1 - x.bias - p_fraction_bits)
              ELSE x.s * (x.f + (1::bigint << p_fraction_bits)) * power(2::float8, x.e - x.bias - p_fraction_bits)
         END
    FROM (SELECT CASE WHEN ((p_bits >> (p_exponent_bits + p_fraction_bits)) & 1) = 1 THEN -1::float8
                      ELSE 1::float8 END AS s,
                 (p_bits >> p_fraction_bits) & ((1::bigint << p_exponent_bits) - 1) AS e,
                 p_bits & ((1::bigint << p_fraction_bits) - 1) AS f,
                 (1 << (p_exponent_bits - 1)) - 1 AS bias,
                 (1 << p_exponent_bits) - 1 AS emax) x
$$;


--
-- Name: grant_producer(regrole); Type: FUNCTION; Schema: inferq; Owner: -
--

CREATE FUNCTION inferq.grant_producer(p_role regrole) RETURNS void
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
BEGIN
  IF p_role IS NULL THEN
    RAISE EXCEPTION 'inferq.grant_producer: role must not be NULL'
      USING ERRCODE = 'invalid_parameter_value';
  END IF;
  -- regrole's text is the quoted name.
  EXECUTE format('GRANT USAGE ON SCHEMA inferq TO %s', p_role);
  EXECUTE format('GRANT EXECUTE ON FUNCTION inferq.enqueue(text, jsonb, text, integer, timestamptz, integer, bytea, text),'
                 ' inferq.cancel(bigint),'
                 ' inferq.tensor_bytes(real[]), inferq.tensor_bytes(double precision[]),'
                 ' inferq.tensor_bytes(bigint[]), inferq.tensor_bytes(integer[]),'
                 ' inferq.output_real(jsonb, bytea, text), inferq.output_double(jsonb, bytea, text),'
                 ' inferq.output_bigint(jsonb, bytea, text) TO %s', p_role);
  EXECUTE format('GRANT SELECT ON inferq.my_jobs TO %s', p_role);
END
$$;


--
-- Name: heartbeat(bigint, bigint[]); Type: FUNCTION; Schema: inferq; Owner: -
--

CREATE FUNCTION inferq.heartbeat(p_worker bigint, p_leases bigint[]) RETURNS SETOF bigint
    LANGUAGE sql
    AS $$
  WITH seen AS (
    UPDATE inferq.workers SET last_seen_at = clock_timestamp() WHERE id = p_worker
  )
  UPDATE inferq.active_sessions s SET heartbeat_at = clock_timestamp()
   WHERE s.id = ANY (p_leases)
  RETURNING s.id;
$$;


--
-- Name: key_lock(text, text); Type: FUNCTION; Schema: inferq; Owner: -
--

CREATE FUNCTION inferq.key_lock(p_queue text, p_key text) RETURNS integer
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT hashtext(p_queue || E'\x1f' || p_key) $$;


--
-- Name: key_lock_ns(); Type: FUNCTION; Schema: inferq; Owner: -
--

CREATE FUNCTION inferq.key_lock_ns() RETURNS integer
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT 1769301585 $$;


--
-- Name: le_concat(bytea[]); Type: FUNCTION; Schema: inferq; Owner: -
--

CREATE FUNCTION inferq.le_concat(p_be bytea[]) RETURNS bytea
    LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE
    AS $$
BEGIN
  IF array_position(p_be, NULL) IS NOT NULL THEN
    RAISE EXCEPTION 'inferq.tensor_bytes: element % of the array is NULL; tensor data has no NULL',
      array_position(p_be, NULL)
      USING ERRCODE = 'null_value_not_allowed';
  END IF;
  RETURN (SELECT coalesce(string_agg(
                   CASE octet_length(t.b)
                     WHEN 4 THEN substr(t.b, 4, 1) || substr(t.b, 3, 1) || substr(t.b, 2, 1) || substr(t.b, 1, 1)
                     ELSE substr(t.b, 8, 1) || substr(t.b, 7, 1) || substr(t.b, 6, 1) || substr(t.b, 5, 1)
                       || substr(t.b, 4, 1) || substr(t.b, 3, 1) || substr(t.b, 2, 1) || substr(t.b, 1, 1)
                   END, ''::bytea ORDER BY t.n), ''::bytea)
            FROM unnest(p_be) WITH ORDINALITY AS t(b, n));
END
$$;


--
-- Name: le_integer(bytea, integer, integer); Type: FUNCTION; Schema: inferq; Owner: -
--

CREATE FUNCTION inferq.le_integer(p_bytes bytea, p_at integer, p_width integer) RETURNS bigint
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    AS $$
  SELECT CASE p_width
    WHEN 1 THEN get_byte(p_bytes, p_at)::bigint
    WHEN 2 THEN get_byte(p_bytes, p_at)::bigint | (get_byte(p_bytes, p_at + 1)::bigint << 8)
    WHEN 4 THEN get_byte(p_bytes, p_at)::bigint | (get_byte(p_bytes, p_at + 1)::bigint << 8)
              | (get_byte(p_bytes, p_at + 2)::bigint << 16) | (get_byte(p_bytes, p_at + 3)::bigint << 24)
    WHEN 8 THEN get_byte(p_bytes, p_at)::bigint | (get_byte(p_bytes, p_at + 1)::bigint << 8)
              | (get_byte(p_bytes, p_at + 2)::bigint << 16) | (get_byte(p_bytes, p_at + 3)::bigint << 24)
              | (get_byte(p_bytes, p_at + 4)::bigint << 32) | (get_byte(p_bytes, p_at + 5)::bigint << 40)
              | (get_byte(p_bytes, p_at + 6)::bigint << 48) | (get_byte(p_bytes, p_at + 7)::bigint << 56)
  END
$$;


--
-- Name: lock_due_unkeyed(text, integer); Type: FUNCTION; Schema: inferq; Owner: -
--

CREATE FUNCTION inferq.lock_due_unkeyed(p_queue text, p_max_jobs integer) RETURNS tid[]
    LANGUAGE plpgsql
    SET plan_cache_mode TO 'force_generic_plan'
    AS $$
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


--
-- Name: lock_keys(text[], text[]); Type: FUNCTION; Schema: inferq; Owner: -
--

CREATE FUNCTION inferq.lock_keys(p_queues text[], p_keys text[]) RETURNS void
    LANGUAGE plpgsql
    AS $$
DECLARE
  l        integer;
  first    boolean := true;
  previous text := current_setting('lock_timeout');
BEGIN
  IF p_keys IS NULL THEN
    RETURN;
  END IF;
  FOR l IN SELECT DISTINCT inferq.key_lock(x.q, x.k)
             FROM unnest(p_queues, p_keys) AS x(q, k) ORDER BY 1 LOOP
    IF first THEN
      PERFORM pg_advisory_xact_lock(inferq.key_lock_ns(), l);
      first := false;
    ELSIF NOT pg_try_advisory_xact_lock(inferq.key_lock_ns(), l) THEN
      PERFORM set_config('lock_timeout', '200ms', true);
      PERFORM pg_advisory_xact_lock(inferq.key_lock_ns(), l);
      PERFORM set_config('lock_timeout', previous, true);
    END IF;
  END LOOP;
END
$$;


--
-- Name: output_bigint(jsonb, bytea, text); Type: FUNCTION; Schema: inferq; Owner: -
--

CREATE FUNCTION inferq.output_bigint(p_result jsonb, p_result_binary bytea, p_output text) RETURNS bigint[]
    LANGUAGE plpgsql IMMUTABLE SECURITY DEFINER PARALLEL SAFE
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
DECLARE
  o    record;
  size integer;
BEGIN
  IF p_result IS NULL THEN
    RETURN NULL;
  END IF;
  SELECT * INTO o FROM inferq.output_entry(p_result, p_result_binary, p_output);
  size := inferq.output_element_size(p_output, o.entry ->> 'datatype', '{INT64,INT32,INT8,UINT8,BOOL}', o.bytes);
  IF o.bytes IS NULL THEN
    RETURN ARRAY(SELECT CASE jsonb_typeof(t.v) WHEN 'boolean' THEN (t.v::text::boolean)::integer::bigint
                                               ELSE (t.v #>> '{}')::bigint END
                   FROM jsonb_array_elements(o.entry -> 'data') WITH ORDINALITY AS t(v, n) ORDER BY t.n);
  END IF;
  RETURN ARRAY(SELECT CASE WHEN o.entry ->> 'datatype' = 'INT32' AND x.u >= 2147483648 THEN x.u - 4294967296
                           WHEN o.entry ->> 'datatype' = 'INT8' AND x.u >= 128 THEN x.u - 256
                           ELSE x.u END
                 FROM (SELECT i, inferq.le_integer(o.bytes, i * size, size) AS u
                         FROM generate_series(0, octet_length(o.bytes) / size - 1) AS i) x
                ORDER BY x.i);
END
$$;


--
-- Name: output_double(jsonb, bytea, text); Type: FUNCTION; Schema: inferq; Owner: -
--

CREATE FUNCTION inferq.output_double(p_result jsonb, p_result_binary bytea, p_output text) RETURNS double precision[]
    LANGUAGE plpgsql IMMUTABLE SECURITY DEFINER PARALLEL SAFE
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
DECLARE
  o    record;
  size integer;
BEGIN
  IF p_result IS NULL THEN
    RETURN NULL;
  END IF;
  SELECT * INTO o FROM inferq.output_entry(p_result, p_result_binary, p_output);
  size := inferq.output_element_size(p_output, o.entry ->> 'datatype', '{FP64,FP32,FP16}', o.bytes);
  IF o.bytes IS NULL THEN
    RETURN ARRAY(SELECT (t.v #>> '{}')::float8
                   FROM jsonb_array_elements(o.entry -> 'data') WITH ORDINALITY AS t(v, n) ORDER BY t.n);
  END IF;
  RETURN ARRAY(SELECT inferq.float_of_bits(inferq.le_integer(o.bytes, i * size, size),
                                           CASE size WHEN 8 THEN 11 WHEN 4 THEN 8 ELSE 5 END,
                                           CASE size WHEN 8 THEN 52 WHEN 4 THEN 23 ELSE 10 END)
                 FROM generate_series(0, octet_length(o.bytes) / size - 1) AS i ORDER BY i);
END
$$;


--
-- Name: output_element_size(text, text, text[], bytea); Type: FUNCTION; Schema: inferq; Owner: -
--

CREATE FUNCTION inferq.output_element_size(p_output text, p_datatype text, p_allowed text[], p_bytes bytea) RETURNS integer
    LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
    AS $$
DECLARE
  size integer;
BEGIN
  IF p_datatype IS NULL OR NOT p_datatype = ANY (p_allowed) THEN
    RAISE EXCEPTION 'inferq: output "%" is %, not one of %', p_output, coalesce(p_datatype, 'of no datatype'),
      array_to_string(p_allowed, ', ')
      USING ERRCODE = 'invalid_parameter_value';
  END IF;
  size := CASE p_datatype WHEN 'FP64' THEN 8 WHEN 'INT64' THEN 8 WHEN 'FP32' THEN 4 WHEN 'INT32' THEN 4
                          WHEN 'FP16' THEN 2 ELSE 1 END;
  IF p_bytes IS NOT NULL AND octet_length(p_bytes) % size <> 0 THEN
    RAISE EXCEPTION 'inferq: output "%": % bytes is not a whole number of % elements (% bytes each)',
      p_output, octet_length(p_bytes), p_datatype, size
      USING ERRCODE = 'invalid_parameter_value';
  END IF;
  RETURN size;
END
$$;


--
-- Name: output_entry(jsonb, bytea, text); Type: FUNCTION; Schema: inferq; Owner: -
--

CREATE FUNCTION inferq.output_entry(p_result jsonb, p_result_binary bytea, p_output text, OUT entry jsonb, OUT bytes bytea) RETURNS record
    LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
    AS $$
DECLARE
  o    jsonb;
  at   bigint := 0;
  size bigint;
BEGIN
  IF jsonb_typeof(p_result -> 'outputs') IS DISTINCT FROM 'array' THEN
    RAISE EXCEPTION 'inferq: the result has no "outputs" array' USING ERRCODE = 'invalid_parameter_value';
  END IF;
  FOR o IN SELECT x FROM jsonb_array_elements(p_result -> 'outputs') AS t(x) LOOP
    size := (o #>> '{parameters,binary_data_size}')::bigint;
    IF o ->> 'name' = p_output THEN
      entry := o;
      IF size IS NOT NULL THEN
        IF coalesce(octet_length(p_result_binary), 0) < at + size THEN
          RAISE EXCEPTION 'inferq: output "%": binary_data_size % at byte % runs past the end of result_binary (% bytes)',
            p_output, size, at, coalesce(octet_length(p_result_binary), 0)
            USING ERRCODE = 'invalid_parameter_value';
        END IF;
        bytes := substr(p_result_binary, (at + 1)::integer, size::integer);
      ELSIF NOT o ? 'data' THEN
        RAISE EXCEPTION 'inferq: output "%" has neither data nor parameters.binary_data_size', p_output
          USING ERRCODE = 'invalid_parameter_value';
      END IF;
      RETURN;
    END IF;
    at := at + coalesce(size, 0);
  END LOOP;
  RAISE EXCEPTION 'inferq: the result has no output "%"', p_output USING ERRCODE = 'invalid_parameter_value';
END
$$;


--
-- Name: output_real(jsonb, bytea, text); Type: FUNCTION; Schema: inferq; Owner: -
--

CREATE FUNCTION inferq.output_real(p_result jsonb, p_result_binary bytea, p_output text) RETURNS real[]
    LANGUAGE plpgsql IMMUTABLE SECURITY DEFINER PARALLEL SAFE
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
DECLARE
  o record;
BEGIN
  IF p_result IS NULL THEN
    RETURN NULL;
  END IF;
  SELECT * INTO o FROM inferq.output_entry(p_result, p_result_binary, p_output);
  PERFORM inferq.output_element_size(p_output, o.entry ->> 'datatype', '{FP32,FP16}', o.bytes);
  RETURN inferq.output_double(p_result, p_result_binary, p_output)::real[];
END
$$;


--
-- Name: prune(text, inferq.job_state, interval, integer); Type: FUNCTION; Schema: inferq; Owner: -
--

CREATE FUNCTION inferq.prune(p_queue text, p_state inferq.job_state, p_older_than interval, p_max_rows integer) RETURNS integer
    LANGUAGE plpgsql
    AS $$
DECLARE
  n integer;
BEGIN
  IF p_state IS NULL OR p_state NOT IN ('succeeded', 'dead', 'cancelled') THEN
    RAISE EXCEPTION 'inferq.prune: state must be succeeded, dead or cancelled, got %', coalesce(p_state::text, 'NULL')
      USING ERRCODE = 'invalid_parameter_value';
  END IF;
  IF p_older_than IS NULL OR p_older_than <= interval '0' THEN
    RAISE EXCEPTION 'inferq.prune: older_than must be positive, got %', coalesce(p_older_than::text, 'NULL')
      USING ERRCODE = 'invalid_parameter_value';
  END IF;
  -- Keys (1769107570 = 'iqpr', the queue's hash): apart from migrate's and
  -- the janitor's VACUUM lock, which take a single bigint key. No row lock
  -- first: a FOR UPDATE would write every row twice (17% more WAL).
  IF NOT pg_try_advisory_xact_lock(1769107570, hashtext(p_queue)) THEN
    RETURN 0;
  END IF;
  DELETE FROM inferq.jobs j
   WHERE j.id IN (SELECT x.id
                    FROM inferq.jobs x
                   WHERE x.queue = p_queue AND x.state = p_state
                     AND x.finished_at < clock_timestamp() - p_older_than
                   ORDER BY x.finished_at
                   LIMIT p_max_rows);
  GET DIAGNOSTICS n = ROW_COUNT;
  RETURN n;
END
$$;


--
-- Name: reap(interval, bigint[]); Type: FUNCTION; Schema: inferq; Owner: -
--

CREATE FUNCTION inferq.reap(p_stale_after interval, p_keep bigint[]) RETURNS integer
    LANGUAGE plpgsql
    AS $$
DECLARE
  n       integer;
  leases  bigint[];
  orphans bigint[];
  kq      text[];
  kk      text[];
  oq      text[];
  ok      text[];
BEGIN
  SELECT array_agg(s.id),
         array_agg(s.queue) FILTER (WHERE s.work_unit_key IS NOT NULL),
         array_agg(s.work_unit_key) FILTER (WHERE s.work_unit_key IS NOT NULL)
    INTO leases, kq, kk
    FROM inferq.active_sessions s
   WHERE s.heartbeat_at < clock_timestamp() - p_stale_after
     AND NOT (s.id = ANY (coalesce(p_keep, '{}')));
  SELECT array_agg(DISTINCT j.lease_id),
         array_agg(j.queue) FILTER (WHERE j.work_unit_key IS NOT NULL),
         array_agg(j.work_unit_key) FILTER (WHERE j.work_unit_key IS NOT NULL)
    INTO orphans, oq, ok
    FROM inferq.jobs j
   WHERE j.state = 'running'
     AND NOT EXISTS (SELECT 1 FROM inferq.active_sessions s WHERE s.id = j.lease_id);
  IF leases IS NULL AND orphans IS NULL THEN
    RETURN 0;
  END IF;
  kq := kq || oq;
  kk := kk || ok;
  -- The keys of keyed leases: locked before their rows change, refreshed after.
  PERFORM inferq.lock_keys(kq, kk);

  WITH stale AS (
    DELETE FROM inferq.active_sessions s
     WHERE s.id = ANY (leases)
       AND s.heartbeat_at < clock_timestamp() - p_stale_after
    RETURNING s.id, s.worker_id, s.queue
  ), owner AS (
    SELECT st.id,
           'lease expired: worker ' || coalesce(w.name, '#' || st.worker_id::text)
             || ' did not renew it within '
             || (extract(epoch FROM p_stale_after))::numeric(12,3)::float8::text || 's' AS message,
           coalesce(w.name, '#' || st.worker_id::text) AS worker
      FROM stale st LEFT JOIN inferq.workers w ON w.id = st.worker_id
    UNION ALL
    SELECT o.id,
           'running with no lease: lease ' || o.id::text
             || ' was released without this job (its daemon never saw it claimed)',
           NULL
      FROM unnest(orphans) AS o(id)
  ), lost AS (
    UPDATE inferq.jobs j
       SET state = CASE WHEN j.cancel_requested THEN 'cancelled'
                        WHEN j.attempts >= j.max_attempts THEN 'dead'
                        ELSE 'available' END::inferq.job_state,
           lease_id = NULL,
           last_error = o.message,
           errors = j.errors || jsonb_build_array(jsonb_build_object(
             'attempt', j.attempts, 'at', clock_timestamp(), 'class', 'lost',
             'message', o.message, 'worker', o.worker)),
           finished_at = CASE WHEN j.cancel_requested OR j.attempts >= j.max_attempts
                              THEN clock_timestamp() END
      FROM owner o
     WHERE j.lease_id = o.id AND j.state = 'running'
    RETURNING j.id, j.state, j.queue
  ), notified AS (
    SELECT pg_notify(CASE WHEN l.state = 'available' THEN 'inferq_jobs' ELSE 'inferq_done' END,
                     CASE WHEN l.state = 'available' THEN l.queue ELSE l.id::text END)
      FROM lost l
  )
  SELECT (SELECT count(*) FROM stale) + coalesce(cardinality(orphans), 0)
         + 0 * (SELECT count(*) FROM notified) INTO n;

  -- Every key locked above (one whose lease was renewed meanwhile: a no-op).
  PERFORM inferq.refresh_key_heads(kq, kk);

  IF n > 0 THEN
    DELETE FROM inferq.workers w
     WHERE w.last_seen_at < clock_timestamp() - greatest(p_stale_after * 4, interval '1 minute');
  END IF;
  RETURN n;
END
$$;


--
-- Name: rebuild_key_heads(text); Type: FUNCTION; Schema: inferq; Owner: -
--

CREATE FUNCTION inferq.rebuild_key_heads(p_queue text DEFAULT NULL::text) RETURNS integer
    LANGUAGE plpgsql
    AS $$
DECLARE
  n integer;
BEGIN
  LOCK TABLE inferq.key_heads IN EXCLUSIVE MODE;
  DELETE FROM inferq.key_heads kh WHERE p_queue IS NULL OR kh.queue = p_queue;
  INSERT INTO inferq.key_heads (queue, work_unit_key, head_id, priority, run_at)
  SELECT DISTINCT ON (j.queue, j.work_unit_key) j.queue, j.work_unit_key, j.id, j.priority, j.run_at
    FROM inferq.jobs j
   WHERE j.state = 'available' AND j.work_unit_key IS NOT NULL
     AND (p_queue IS NULL OR j.queue = p_queue)
     AND NOT EXISTS (SELECT 1 FROM inferq.active_sessions s
                      WHERE s.queue = j.queue AND s.work_unit_key = j.work_unit_key)
   ORDER BY j.queue, j.work_unit_key, j.id;
  GET DIAGNOSTICS n = ROW_COUNT;
  RETURN n;
END
$$;


--
-- Name: refresh_key_head(text, text); Type: FUNCTION; Schema: inferq; Owner: -
--

CREATE FUNCTION inferq.refresh_key_head(p_queue text, p_key text) RETURNS void
    LANGUAGE plpgsql
    AS $$
DECLARE
  h record;
BEGIN
  PERFORM pg_advisory_xact_lock(inferq.key_lock_ns(), inferq.key_lock(p_queue, p_key));
  SELECT j.id, j.priority, j.run_at INTO h
    FROM inferq.jobs j
   WHERE j.queue = p_queue AND j.work_unit_key = p_key AND j.state = 'available'
   ORDER BY j.id
   LIMIT 1;
  IF h.id IS NULL OR EXISTS (SELECT 1 FROM inferq.active_sessions s
                              WHERE s.queue = p_queue AND s.work_unit_key = p_key) THEN
    DELETE FROM inferq.key_heads kh WHERE kh.queue = p_queue AND kh.work_unit_key = p_key;
  ELSE
    INSERT INTO inferq.key_heads AS kh (queue, work_unit_key, head_id, priority, run_at)
    VALUES (p_queue, p_key, h.id, h.priority, h.run_at)
    ON CONFLICT (queue, work_unit_key) DO UPDATE
       SET head_id = EXCLUDED.head_id, priority = EXCLUDED.priority, run_at = EXCLUDED.run_at
     WHERE (kh.head_id, kh.priority, kh.run_at)
           IS DISTINCT FROM (EXCLUDED.head_id, EXCLUDED.priority, EXCLUDED.run_at);
  END IF;
END
$$;


--
-- Name: refresh_key_heads(text[], text[]); Type: FUNCTION; Schema: inferq; Owner: -
--

CREATE FUNCTION inferq.refresh_key_heads(p_queues text[], p_keys text[]) RETURNS void
    LANGUAGE plpgsql
    AS $$
BEGIN
  FOR i IN 1 .. coalesce(array_length(p_keys, 1), 0) LOOP
    PERFORM inferq.refresh_key_head(p_queues[i], p_keys[i]);
  END LOOP;
END
$$;


--
-- Name: release(bigint[]); Type: FUNCTION; Schema: inferq; Owner: -
--

CREATE FUNCTION inferq.release(p_leases bigint[]) RETURNS integer
    LANGUAGE plpgsql
    AS $$
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


--
-- Name: run_sinks(jsonb); Type: FUNCTION; Schema: inferq; Owner: -
--

CREATE FUNCTION inferq.run_sinks(p_jobs jsonb) RETURNS jsonb
    LANGUAGE plpgsql
    AS $_$
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
$_$;


--
-- Name: start_locked_jobs(tid[], bigint, integer); Type: FUNCTION; Schema: inferq; Owner: -
--

CREATE FUNCTION inferq.start_locked_jobs(p_tids tid[], p_lease bigint, p_default_max_attempts integer) RETURNS TABLE(job_id bigint, payload text, attempts integer, max_attempts integer, work_unit_key text, wait_seconds double precision, payload_binary bytea)
    LANGUAGE plpgsql
    AS $$
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


--
-- Name: tensor_bytes(real[]); Type: FUNCTION; Schema: inferq; Owner: -
--

CREATE FUNCTION inferq.tensor_bytes(p_data real[]) RETURNS bytea
    LANGUAGE sql IMMUTABLE STRICT SECURITY DEFINER PARALLEL SAFE
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
  SELECT inferq.le_concat(ARRAY(SELECT float4send(t.x) FROM unnest(p_data) WITH ORDINALITY AS t(x, n) ORDER BY t.n))
$$;


--
-- Name: tensor_bytes(double precision[]); Type: FUNCTION; Schema: inferq; Owner: -
--

CREATE FUNCTION inferq.tensor_bytes(p_data double precision[]) RETURNS bytea
    LANGUAGE sql IMMUTABLE STRICT SECURITY DEFINER PARALLEL SAFE
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
  SELECT inferq.le_concat(ARRAY(SELECT float8send(t.x) FROM unnest(p_data) WITH ORDINALITY AS t(x, n) ORDER BY t.n))
$$;


--
-- Name: tensor_bytes(integer[]); Type: FUNCTION; Schema: inferq; Owner: -
--

CREATE FUNCTION inferq.tensor_bytes(p_data integer[]) RETURNS bytea
    LANGUAGE sql IMMUTABLE STRICT SECURITY DEFINER PARALLEL SAFE
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
  SELECT inferq.le_concat(ARRAY(SELECT int4send(t.x) FROM unnest(p_data) WITH ORDINALITY AS t(x, n) ORDER BY t.n))
$$;


--
-- Name: tensor_bytes(bigint[]); Type: FUNCTION; Schema: inferq; Owner: -
--

CREATE FUNCTION inferq.tensor_bytes(p_data bigint[]) RETURNS bytea
    LANGUAGE sql IMMUTABLE STRICT SECURITY DEFINER PARALLEL SAFE
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
  SELECT inferq.le_concat(ARRAY(SELECT int8send(t.x) FROM unnest(p_data) WITH ORDINALITY AS t(x, n) ORDER BY t.n))
$$;


SET default_tablespace = '';

SET default_table_access_method = heap;

--
-- Name: active_sessions; Type: TABLE; Schema: inferq; Owner: -
--

CREATE TABLE inferq.active_sessions (
    id bigint NOT NULL,
    queue text NOT NULL,
    work_unit_key text,
    worker_id bigint NOT NULL,
    claimed_at timestamp with time zone DEFAULT clock_timestamp() NOT NULL,
    heartbeat_at timestamp with time zone DEFAULT clock_timestamp() NOT NULL
);


--
-- Name: active_sessions_id_seq; Type: SEQUENCE; Schema: inferq; Owner: -
--

CREATE SEQUENCE inferq.active_sessions_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;


--
-- Name: active_sessions_id_seq; Type: SEQUENCE OWNED BY; Schema: inferq; Owner: -
--

ALTER SEQUENCE inferq.active_sessions_id_seq OWNED BY inferq.active_sessions.id;


--
-- Name: jobs; Type: TABLE; Schema: inferq; Owner: -
--

CREATE TABLE inferq.jobs (
    id bigint NOT NULL,
    queue text NOT NULL,
    work_unit_key text,
    payload jsonb NOT NULL,
    state inferq.job_state DEFAULT 'available'::inferq.job_state NOT NULL,
    priority integer DEFAULT 0 NOT NULL,
    run_at timestamp with time zone DEFAULT now() NOT NULL,
    attempts integer DEFAULT 0 NOT NULL,
    max_attempts integer,
    lease_id bigint,
    cancel_requested boolean DEFAULT false NOT NULL,
    result jsonb,
    last_error text,
    errors jsonb DEFAULT '[]'::jsonb NOT NULL,
    created_at timestamp with time zone DEFAULT clock_timestamp() NOT NULL,
    started_at timestamp with time zone,
    finished_at timestamp with time zone,
    enqueued_by name DEFAULT SESSION_USER,
    payload_binary bytea,
    result_binary bytea,
    unique_key text,
    CONSTRAINT jobs_max_attempts_check CHECK (((max_attempts IS NULL) OR (max_attempts >= 1)))
);
ALTER TABLE ONLY inferq.jobs ALTER COLUMN payload_binary SET STORAGE EXTERNAL;
ALTER TABLE ONLY inferq.jobs ALTER COLUMN result_binary SET STORAGE EXTERNAL;


--
-- Name: jobs_id_seq; Type: SEQUENCE; Schema: inferq; Owner: -
--

CREATE SEQUENCE inferq.jobs_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;


--
-- Name: jobs_id_seq; Type: SEQUENCE OWNED BY; Schema: inferq; Owner: -
--

ALTER SEQUENCE inferq.jobs_id_seq OWNED BY inferq.jobs.id;


--
-- Name: key_heads; Type: TABLE; Schema: inferq; Owner: -
--

CREATE TABLE inferq.key_heads (
    queue text NOT NULL,
    work_unit_key text NOT NULL,
    head_id bigint NOT NULL,
    priority integer NOT NULL,
    run_at timestamp with time zone NOT NULL
);


--
-- Name: my_jobs; Type: VIEW; Schema: inferq; Owner: -
--

CREATE VIEW inferq.my_jobs WITH (security_barrier='true') AS
 SELECT j.id,
    j.queue,
    j.work_unit_key,
    j.state,
    j.priority,
    j.attempts,
    j.max_attempts,
    j.run_at,
    j.created_at,
    j.started_at,
    j.finished_at,
    j.result,
    j.last_error,
    j.result_binary,
    j.unique_key
   FROM inferq.jobs j
  WHERE (j.enqueued_by = SESSION_USER);


--
-- Name: schema_functions; Type: TABLE; Schema: inferq; Owner: -
--

CREATE TABLE inferq.schema_functions (
    singleton boolean DEFAULT true NOT NULL,
    digest text NOT NULL,
    applied_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT schema_functions_singleton_check CHECK (singleton)
);


--
-- Name: schema_migrations; Type: TABLE; Schema: inferq; Owner: -
--

CREATE TABLE inferq.schema_migrations (
    version integer NOT NULL,
    name text NOT NULL,
    applied_at timestamp with time zone DEFAULT now() NOT NULL
);


--
-- Name: workers; Type: TABLE; Schema: inferq; Owner: -
--

CREATE TABLE inferq.workers (
    id bigint NOT NULL,
    name text NOT NULL,
    host text NOT NULL,
    pid integer NOT NULL,
    version text NOT NULL,
    queues text[] DEFAULT '{}'::text[] NOT NULL,
    started_at timestamp with time zone DEFAULT clock_timestamp() NOT NULL,
    last_seen_at timestamp with time zone DEFAULT clock_timestamp() NOT NULL
);


--
-- Name: workers_id_seq; Type: SEQUENCE; Schema: inferq; Owner: -
--

CREATE SEQUENCE inferq.workers_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;


--
-- Name: workers_id_seq; Type: SEQUENCE OWNED BY; Schema: inferq; Owner: -
--

ALTER SEQUENCE inferq.workers_id_seq OWNED BY inferq.workers.id;


--
-- Name: active_sessions id; Type: DEFAULT; Schema: inferq; Owner: -
--

ALTER TABLE ONLY inferq.active_sessions ALTER COLUMN id SET DEFAULT nextval('inferq.active_sessions_id_seq'::regclass);


--
-- Name: jobs id; Type: DEFAULT; Schema: inferq; Owner: -
--

ALTER TABLE ONLY inferq.jobs ALTER COLUMN id SET DEFAULT nextval('inferq.jobs_id_seq'::regclass);


--
-- Name: workers id; Type: DEFAULT; Schema: inferq; Owner: -
--

ALTER TABLE ONLY inferq.workers ALTER COLUMN id SET DEFAULT nextval('inferq.workers_id_seq'::regclass);


--
-- Name: active_sessions active_sessions_one_lease_per_key; Type: CONSTRAINT; Schema: inferq; Owner: -
--

ALTER TABLE ONLY inferq.active_sessions
    ADD CONSTRAINT active_sessions_one_lease_per_key UNIQUE (queue, work_unit_key);


--
-- Name: active_sessions active_sessions_pkey; Type: CONSTRAINT; Schema: inferq; Owner: -
--

ALTER TABLE ONLY inferq.active_sessions
    ADD CONSTRAINT active_sessions_pkey PRIMARY KEY (id);


--
-- Name: jobs jobs_pkey; Type: CONSTRAINT; Schema: inferq; Owner: -
--

ALTER TABLE ONLY inferq.jobs
    ADD CONSTRAINT jobs_pkey PRIMARY KEY (id);


--
-- Name: key_heads key_heads_pkey; Type: CONSTRAINT; Schema: inferq; Owner: -
--

ALTER TABLE ONLY inferq.key_heads
    ADD CONSTRAINT key_heads_pkey PRIMARY KEY (queue, work_unit_key);


--
-- Name: schema_functions schema_functions_pkey; Type: CONSTRAINT; Schema: inferq; Owner: -
--

ALTER TABLE ONLY inferq.schema_functions
    ADD CONSTRAINT schema_functions_pkey PRIMARY KEY (singleton);


--
-- Name: schema_migrations schema_migrations_pkey; Type: CONSTRAINT; Schema: inferq; Owner: -
--

ALTER TABLE ONLY inferq.schema_migrations
    ADD CONSTRAINT schema_migrations_pkey PRIMARY KEY (version);


--
-- Name: workers workers_pkey; Type: CONSTRAINT; Schema: inferq; Owner: -
--

ALTER TABLE ONLY inferq.workers
    ADD CONSTRAINT workers_pkey PRIMARY KEY (id);


--
-- Name: active_sessions_heartbeat; Type: INDEX; Schema: inferq; Owner: -
--

CREATE INDEX active_sessions_heartbeat ON inferq.active_sessions USING btree (heartbeat_at);


--
-- Name: jobs_claim_unkeyed; Type: INDEX; Schema: inferq; Owner: -
--

CREATE INDEX jobs_claim_unkeyed ON inferq.jobs USING btree (queue, priority DESC, run_at, id) WHERE ((state = 'available'::inferq.job_state) AND (work_unit_key IS NULL));


--
-- Name: jobs_finished; Type: INDEX; Schema: inferq; Owner: -
--

CREATE INDEX jobs_finished ON inferq.jobs USING btree (queue, state, finished_at) WHERE (state = ANY (ARRAY['succeeded'::inferq.job_state, 'dead'::inferq.job_state, 'cancelled'::inferq.job_state]));


--
-- Name: jobs_key_order; Type: INDEX; Schema: inferq; Owner: -
--

CREATE INDEX jobs_key_order ON inferq.jobs USING btree (queue, work_unit_key, id) WHERE ((state = 'available'::inferq.job_state) AND (work_unit_key IS NOT NULL));


--
-- Name: jobs_running_lease; Type: INDEX; Schema: inferq; Owner: -
--

CREATE INDEX jobs_running_lease ON inferq.jobs USING btree (lease_id) WHERE (state = 'running'::inferq.job_state);


--
-- Name: jobs_unique_live; Type: INDEX; Schema: inferq; Owner: -
--

CREATE UNIQUE INDEX jobs_unique_live ON inferq.jobs USING btree (queue, unique_key) WHERE ((unique_key IS NOT NULL) AND (state = ANY (ARRAY['available'::inferq.job_state, 'running'::inferq.job_state])));


--
-- Name: key_heads_claim; Type: INDEX; Schema: inferq; Owner: -
--

CREATE INDEX key_heads_claim ON inferq.key_heads USING btree (queue, priority DESC, run_at, head_id);


--
-- Name: FUNCTION cancel(job_id bigint); Type: ACL; Schema: inferq; Owner: -
--

REVOKE ALL ON FUNCTION inferq.cancel(job_id bigint) FROM PUBLIC;


--
-- Name: FUNCTION claim(p_queue text, p_worker bigint, p_max_jobs integer, p_default_max_attempts integer); Type: ACL; Schema: inferq; Owner: -
--

REVOKE ALL ON FUNCTION inferq.claim(p_queue text, p_worker bigint, p_max_jobs integer, p_default_max_attempts integer) FROM PUBLIC;


--
-- Name: FUNCTION claim_more(p_lease bigint, p_queue text, p_max_jobs integer, p_default_max_attempts integer); Type: ACL; Schema: inferq; Owner: -
--

REVOKE ALL ON FUNCTION inferq.claim_more(p_lease bigint, p_queue text, p_max_jobs integer, p_default_max_attempts integer) FROM PUBLIC;


--
-- Name: FUNCTION complete(p_jobs jsonb, p_worker_name text); Type: ACL; Schema: inferq; Owner: -
--

REVOKE ALL ON FUNCTION inferq.complete(p_jobs jsonb, p_worker_name text) FROM PUBLIC;


--
-- Name: FUNCTION complete_outcomes(p_jobs jsonb, p_worker_name text); Type: ACL; Schema: inferq; Owner: -
--

REVOKE ALL ON FUNCTION inferq.complete_outcomes(p_jobs jsonb, p_worker_name text) FROM PUBLIC;


--
-- Name: FUNCTION enqueue(queue text, payload jsonb, work_unit_key text, priority integer, run_at timestamp with time zone, max_attempts integer, payload_binary bytea, unique_key text); Type: ACL; Schema: inferq; Owner: -
--

REVOKE ALL ON FUNCTION inferq.enqueue(queue text, payload jsonb, work_unit_key text, priority integer, run_at timestamp with time zone, max_attempts integer, payload_binary bytea, unique_key text) FROM PUBLIC;


--
-- Name: FUNCTION fail_unclaimable(p_queue text, p_limit integer); Type: ACL; Schema: inferq; Owner: -
--

REVOKE ALL ON FUNCTION inferq.fail_unclaimable(p_queue text, p_limit integer) FROM PUBLIC;


--
-- Name: FUNCTION float_of_bits(p_bits bigint, p_exponent_bits integer, p_fraction_bits integer); Type: ACL; Schema: inferq; Owner: -
--

REVOKE ALL ON FUNCTION inferq.float_of_bits(p_bits bigint, p_exponent_bits integer, p_fraction_bits integer) FROM PUBLIC;


--
-- Name: FUNCTION grant_producer(p_role regrole); Type: ACL; Schema: inferq; Owner: -
--

REVOKE ALL ON FUNCTION inferq.grant_producer(p_role regrole) FROM PUBLIC;


--
-- Name: FUNCTION heartbeat(p_worker bigint, p_leases bigint[]); Type: ACL; Schema: inferq; Owner: -
--

REVOKE ALL ON FUNCTION inferq.heartbeat(p_worker bigint, p_leases bigint[]) FROM PUBLIC;


--
-- Name: FUNCTION key_lock(p_queue text, p_key text); Type: ACL; Schema: inferq; Owner: -
--

REVOKE ALL ON FUNCTION inferq.key_lock(p_queue text, p_key text) FROM PUBLIC;


--
-- Name: FUNCTION key_lock_ns(); Type: ACL; Schema: inferq; Owner: -
--

REVOKE ALL ON FUNCTION inferq.key_lock_ns() FROM PUBLIC;


--
-- Name: FUNCTION le_concat(p_be bytea[]); Type: ACL; Schema: inferq; Owner: -
--

REVOKE ALL ON FUNCTION inferq.le_concat(p_be bytea[]) FROM PUBLIC;


--
-- Name: FUNCTION le_integer(p_bytes bytea, p_at integer, p_width integer); Type: ACL; Schema: inferq; Owner: -
--

REVOKE ALL ON FUNCTION inferq.le_integer(p_bytes bytea, p_at integer, p_width integer) FROM PUBLIC;


--
-- Name: FUNCTION lock_due_unkeyed(p_queue text, p_max_jobs integer); Type: ACL; Schema: inferq; Owner: -
--

REVOKE ALL ON FUNCTION inferq.lock_due_unkeyed(p_queue text, p_max_jobs integer) FROM PUBLIC;


--
-- Name: FUNCTION lock_keys(p_queues text[], p_keys text[]); Type: ACL; Schema: inferq; Owner: -
--

REVOKE ALL ON FUNCTION inferq.lock_keys(p_queues text[], p_keys text[]) FROM PUBLIC;


--
-- Name: FUNCTION output_bigint(p_result jsonb, p_result_binary bytea, p_output text); Type: ACL; Schema: inferq; Owner: -
--

REVOKE ALL ON FUNCTION inferq.output_bigint(p_result jsonb, p_result_binary bytea, p_output text) FROM PUBLIC;


--
-- Name: FUNCTION output_double(p_result jsonb, p_result_binary bytea, p_output text); Type: ACL; Schema: inferq; Owner: -
--

REVOKE ALL ON FUNCTION inferq.output_double(p_result jsonb, p_result_binary bytea, p_output text) FROM PUBLIC;


--
-- Name: FUNCTION output_element_size(p_output text, p_datatype text, p_allowed text[], p_bytes bytea); Type: ACL; Schema: inferq; Owner: -
--

REVOKE ALL ON FUNCTION inferq.output_element_size(p_output text, p_datatype text, p_allowed text[], p_bytes bytea) FROM PUBLIC;


--
-- Name: FUNCTION output_entry(p_result jsonb, p_result_binary bytea, p_output text, OUT entry jsonb, OUT bytes bytea); Type: ACL; Schema: inferq; Owner: -
--

REVOKE ALL ON FUNCTION inferq.output_entry(p_result jsonb, p_result_binary bytea, p_output text, OUT entry jsonb, OUT bytes bytea) FROM PUBLIC;


--
-- Name: FUNCTION output_real(p_result jsonb, p_result_binary bytea, p_output text); Type: ACL; Schema: inferq; Owner: -
--

REVOKE ALL ON FUNCTION inferq.output_real(p_result jsonb, p_result_binary bytea, p_output text) FROM PUBLIC;


--
-- Name: FUNCTION prune(p_queue text, p_state inferq.job_state, p_older_than interval, p_max_rows integer); Type: ACL; Schema: inferq; Owner: -
--

REVOKE ALL ON FUNCTION inferq.prune(p_queue text, p_state inferq.job_state, p_older_than interval, p_max_rows integer) FROM PUBLIC;


--
-- Name: FUNCTION reap(p_stale_after interval, p_keep bigint[]); Type: ACL; Schema: inferq; Owner: -
--

REVOKE ALL ON FUNCTION inferq.reap(p_stale_after interval, p_keep bigint[]) FROM PUBLIC;


--
-- Name: FUNCTION rebuild_key_heads(p_queue text); Type: ACL; Schema: inferq; Owner: -
--

REVOKE ALL ON FUNCTION inferq.rebuild_key_heads(p_queue text) FROM PUBLIC;


--
-- Name: FUNCTION refresh_key_head(p_queue text, p_key text); Type: ACL; Schema: inferq; Owner: -
--

REVOKE ALL ON FUNCTION inferq.refresh_key_head(p_queue text, p_key text) FROM PUBLIC;


--
-- Name: FUNCTION refresh_key_heads(p_queues text[], p_keys text[]); Type: ACL; Schema: inferq; Owner: -
--

REVOKE ALL ON FUNCTION inferq.refresh_key_heads(p_queues text[], p_keys text[]) FROM PUBLIC;


--
-- Name: FUNCTION release(p_leases bigint[]); Type: ACL; Schema: inferq; Owner: -
--

REVOKE ALL ON FUNCTION inferq.release(p_leases bigint[]) FROM PUBLIC;


--
-- Name: FUNCTION run_sinks(p_jobs jsonb); Type: ACL; Schema: inferq; Owner: -
--

REVOKE ALL ON FUNCTION inferq.run_sinks(p_jobs jsonb) FROM PUBLIC;


--
-- Name: FUNCTION start_locked_jobs(p_tids tid[], p_lease bigint, p_default_max_attempts integer); Type: ACL; Schema: inferq; Owner: -
--

REVOKE ALL ON FUNCTION inferq.start_locked_jobs(p_tids tid[], p_lease bigint, p_default_max_attempts integer) FROM PUBLIC;


--
-- Name: FUNCTION tensor_bytes(p_data real[]); Type: ACL; Schema: inferq; Owner: -
--

REVOKE ALL ON FUNCTION inferq.tensor_bytes(p_data real[]) FROM PUBLIC;


--
-- Name: FUNCTION tensor_bytes(p_data double precision[]); Type: ACL; Schema: inferq; Owner: -
--

REVOKE ALL ON FUNCTION inferq.tensor_bytes(p_data double precision[]) FROM PUBLIC;


--
-- Name: FUNCTION tensor_bytes(p_data integer[]); Type: ACL; Schema: inferq; Owner: -
--

REVOKE ALL ON FUNCTION inferq.tensor_bytes(p_data integer[]) FROM PUBLIC;


--
-- Name: FUNCTION tensor_bytes(p_data bigint[]); Type: ACL; Schema: inferq; Owner: -
--

REVOKE ALL ON FUNCTION inferq.tensor_bytes(p_data bigint[]) FROM PUBLIC;


--
-- PostgreSQL database dump complete
--


