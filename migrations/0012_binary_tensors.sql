-- Binary tensors (the Open Inference Protocol's binary data extension).
--
-- A job may carry raw little-endian tensor bytes beside its JSON payload:
-- an input of the payload that gives "parameters": {"binary_data_size": N}
-- instead of "data" takes the next N bytes of payload_binary, in the order
-- the inputs appear. A queue with binary_data_output writes its outputs the
-- same way: each output's entry gives its binary_data_size, and the bytes,
-- in output order, land in result_binary. JSON numbers cost time to write,
-- parse and store (a float is 4 bytes here, 10 to 20 as text); the bytes
-- are copied as they are.
--
-- What changes:
-- - inferq.jobs: payload_binary and result_binary (bytea, NULL when unused).
-- - inferq.enqueue takes payload_binary (at most 16 MiB, as the payload's
--   text); the roles that could execute the old one can execute the new one.
-- - inferq.claim, inferq.claim_more and inferq.start_locked_jobs return
--   payload_binary as their last column (bodies otherwise 0007's and 0006's).
-- - inferq.complete_outcomes writes result_binary from a job's "rb" (hex)
--   in the completion document; inferq.run_sinks calls a binary queue's sink
--   as fn(job_id, payload, result, result_binary) (bodies otherwise 0009's).
-- - inferq.my_jobs shows result_binary.
-- - For users and sinks: inferq.tensor_bytes(array) makes the bytes of an
--   array; inferq.output_real / output_double / output_bigint(result,
--   result_binary, name) read one output back as an array, from a binary
--   or a JSON result alike.

-- Stored out of line uncompressed once a row is big: tensor bytes hardly
-- compress, so trying costs CPU for nothing.
ALTER TABLE inferq.jobs ADD COLUMN payload_binary bytea, ADD COLUMN result_binary bytea;
ALTER TABLE inferq.jobs ALTER COLUMN payload_binary SET STORAGE EXTERNAL,
                        ALTER COLUMN result_binary SET STORAGE EXTERNAL;

-- Producer API -------------------------------------------------------------

-- The roles that may execute the old enqueue (grant_producer's), to grant
-- the new one to: a changed signature is a new function.
CREATE TEMP TABLE inferq_0012_producers ON COMMIT DROP AS
SELECT a.grantee::regrole AS role
  FROM pg_proc p, aclexplode(p.proacl) a
 WHERE p.oid = 'inferq.enqueue(text, jsonb, text, integer, timestamptz, integer)'::regprocedure
   AND a.privilege_type = 'EXECUTE' AND a.grantee <> 0 AND a.grantee <> p.proowner;

DROP FUNCTION inferq.enqueue(text, jsonb, text, integer, timestamptz, integer);

-- 0010's checks and body, plus payload_binary: at most 16 MiB.
CREATE FUNCTION inferq.enqueue(
  queue          text,
  payload        jsonb,
  work_unit_key  text        DEFAULT NULL,
  priority       integer     DEFAULT 0,
  run_at         timestamptz DEFAULT now(),
  max_attempts   integer     DEFAULT NULL,
  payload_binary bytea       DEFAULT NULL
) RETURNS bigint
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
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

  INSERT INTO inferq.jobs (queue, work_unit_key, payload, payload_binary, priority, run_at, max_attempts,
                           enqueued_by)
  VALUES (enqueue.queue, enqueue.work_unit_key, enqueue.payload, enqueue.payload_binary, enqueue.priority,
          coalesce(enqueue.run_at, now()), enqueue.max_attempts, session_user)
  RETURNING id INTO new_id;
  IF enqueue.work_unit_key IS NOT NULL THEN
    PERFORM inferq.refresh_key_head(enqueue.queue, enqueue.work_unit_key);
  END IF;
  -- Delivered at commit; identical payloads in one transaction fold into one.
  PERFORM pg_notify('inferq_jobs', enqueue.queue);
  RETURN new_id;
END
$$;

-- 0010's view, plus result_binary.
CREATE OR REPLACE VIEW inferq.my_jobs WITH (security_barrier) AS
SELECT j.id, j.queue, j.work_unit_key, j.state, j.priority, j.attempts, j.max_attempts,
       j.run_at, j.created_at, j.started_at, j.finished_at, j.result, j.last_error, j.result_binary
  FROM inferq.jobs j
 WHERE j.enqueued_by = session_user;

-- Tensor bytes ---------------------------------------------------------------
--
-- The helpers run as their owner with a pinned search_path, so a producer
-- needs EXECUTE on them alone (not on the internal ones they call); they
-- read no table.

-- The elements' big-endian bytes (what the *send functions write), in
-- order, as one little-endian bytea; a NULL element raises (tensor data has
-- none).
CREATE FUNCTION inferq.le_concat(p_be bytea[]) RETURNS bytea
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
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

-- The array's elements as raw little-endian bytes, row-major (a
-- multidimensional array's elements in storage order): FP32 for real[], FP64
-- for double precision[], INT64 for bigint[], INT32 for integer[]. NULL for a
-- NULL array; a NULL element raises.
CREATE FUNCTION inferq.tensor_bytes(p_data real[]) RETURNS bytea
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
  SELECT inferq.le_concat(ARRAY(SELECT float4send(t.x) FROM unnest(p_data) WITH ORDINALITY AS t(x, n) ORDER BY t.n))
$$;
CREATE FUNCTION inferq.tensor_bytes(p_data double precision[]) RETURNS bytea
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
  SELECT inferq.le_concat(ARRAY(SELECT float8send(t.x) FROM unnest(p_data) WITH ORDINALITY AS t(x, n) ORDER BY t.n))
$$;
CREATE FUNCTION inferq.tensor_bytes(p_data bigint[]) RETURNS bytea
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
  SELECT inferq.le_concat(ARRAY(SELECT int8send(t.x) FROM unnest(p_data) WITH ORDINALITY AS t(x, n) ORDER BY t.n))
$$;
CREATE FUNCTION inferq.tensor_bytes(p_data integer[]) RETURNS bytea
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
  SELECT inferq.le_concat(ARRAY(SELECT int4send(t.x) FROM unnest(p_data) WITH ORDINALITY AS t(x, n) ORDER BY t.n))
$$;

-- Output `p_output` of a result: its entry and, when binary, its bytes (the
-- slice of p_result_binary after the binary outputs before it). Raises when
-- the result has no such output, or its bytes are not all there.
CREATE FUNCTION inferq.output_entry(p_result jsonb, p_result_binary bytea, p_output text,
                                    OUT entry jsonb, OUT bytes bytea)
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
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

-- The element size of `p_datatype` when it is one of `p_allowed`; raises
-- otherwise, and when `p_bytes` is not a whole number of elements.
CREATE FUNCTION inferq.output_element_size(p_output text, p_datatype text, p_allowed text[], p_bytes bytea)
RETURNS integer
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
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

-- The little-endian integer of `p_width` bytes at byte `p_at` (from 0),
-- unsigned below 8 bytes, two's complement at 8.
CREATE FUNCTION inferq.le_integer(p_bytes bytea, p_at integer, p_width integer) RETURNS bigint
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
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

-- The IEEE 754 binary float of `p_bits` (exponent and fraction widths
-- given), exactly, as double precision: FP16, FP32 and FP64 values all are.
CREATE FUNCTION inferq.float_of_bits(p_bits bigint, p_exponent_bits integer, p_fraction_bits integer)
RETURNS double precision
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
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

-- Output `p_output` of a job's result as a 1-D array of double precision:
-- FP64, FP32 or FP16 data, from JSON ("data", "NaN" and "Infinity" strings
-- included) or from result_binary. NULL for a NULL result (a job with none).
CREATE FUNCTION inferq.output_double(p_result jsonb, p_result_binary bytea, p_output text)
RETURNS double precision[]
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
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

-- The same as real[]: FP32 or FP16 data (exactly; FP64 would round, so it
-- is refused: use output_double).
CREATE FUNCTION inferq.output_real(p_result jsonb, p_result_binary bytea, p_output text)
RETURNS real[]
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
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

-- The same as bigint[]: INT64, INT32, INT8, UINT8 or BOOL (0 and 1) data.
CREATE FUNCTION inferq.output_bigint(p_result jsonb, p_result_binary bytea, p_output text)
RETURNS bigint[]
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
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

-- Grants role p_role exactly what a producer needs: 0010's, plus the tensor
-- helpers.
CREATE OR REPLACE FUNCTION inferq.grant_producer(p_role regrole) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  IF p_role IS NULL THEN
    RAISE EXCEPTION 'inferq.grant_producer: role must not be NULL'
      USING ERRCODE = 'invalid_parameter_value';
  END IF;
  -- regrole's text is the quoted name.
  EXECUTE format('GRANT USAGE ON SCHEMA inferq TO %s', p_role);
  EXECUTE format('GRANT EXECUTE ON FUNCTION inferq.enqueue(text, jsonb, text, integer, timestamptz, integer, bytea),'
                 ' inferq.cancel(bigint),'
                 ' inferq.tensor_bytes(real[]), inferq.tensor_bytes(double precision[]),'
                 ' inferq.tensor_bytes(bigint[]), inferq.tensor_bytes(integer[]),'
                 ' inferq.output_real(jsonb, bytea, text), inferq.output_double(jsonb, bytea, text),'
                 ' inferq.output_bigint(jsonb, bytea, text) TO %s', p_role);
  EXECUTE format('GRANT SELECT ON inferq.my_jobs TO %s', p_role);
END
$$;

-- Daemon API ----------------------------------------------------------------

DROP FUNCTION inferq.claim(text, bigint, integer, integer);
DROP FUNCTION inferq.claim_more(bigint, text, integer, integer);
DROP FUNCTION inferq.start_locked_jobs(tid[], bigint, integer);

-- 0006's, plus payload_binary.
CREATE FUNCTION inferq.start_locked_jobs(p_tids tid[], p_lease bigint, p_default_max_attempts integer)
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

-- 0007's, plus payload_binary.
CREATE FUNCTION inferq.claim(p_queue text, p_worker bigint, p_max_jobs integer,
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

-- 0006's, plus payload_binary.
CREATE FUNCTION inferq.claim_more(p_lease bigint, p_queue text, p_max_jobs integer,
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

-- 0009's, plus: a job whose entry has "rb" (its queue has binary outputs)
-- has a sink fn(bigint, jsonb, jsonb, bytea), called with the bytes.
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

-- 0009's, plus result_binary from "rb".
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

-- Privileges -----------------------------------------------------------------

-- As 0010: nothing new is executable by PUBLIC; the producers of the old
-- enqueue get what grant_producer now grants.
REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA inferq FROM PUBLIC;
DO $$
DECLARE
  r regrole;
BEGIN
  FOR r IN SELECT p.role FROM pg_temp.inferq_0012_producers p LOOP
    PERFORM inferq.grant_producer(r);
  END LOOP;
END
$$;
