-- Unique jobs: a producer that retries a request does not enqueue the same
-- work twice.
--
-- inferq.enqueue(..., unique_key => 'doc-42'): while a job of that queue
-- with that key is available or running (retries included: a job waiting
-- for its next attempt is available), enqueue returns that job's id and
-- inserts nothing; once it is succeeded, dead or cancelled, the key is free
-- and a new job may take it. A unique partial index makes it race-free
-- under concurrent producers. Keys are per queue and shared by all
-- producers of the queue. The job that holds the key keeps its own payload,
-- work_unit_key, priority and run_at: a duplicate's are dropped.
--
-- What changes:
-- - inferq.jobs.unique_key, and the unique partial index jobs_unique_live
--   over (queue, unique_key) of live jobs that have one. Jobs without a key
--   are not in it and cost it nothing.
-- - inferq.enqueue takes unique_key last (at most 1000 bytes; 0012's body
--   otherwise); the roles that could execute the old one can execute the
--   new one, and grant_producer grants it.
-- - inferq.my_jobs shows unique_key.

ALTER TABLE inferq.jobs ADD COLUMN unique_key text;
-- Every existing row has a NULL key, so the index starts empty (building it
-- still reads the table once, under this migration's lock).
CREATE UNIQUE INDEX jobs_unique_live ON inferq.jobs (queue, unique_key)
  WHERE unique_key IS NOT NULL AND state IN ('available', 'running');

-- The roles that may execute the old enqueue (grant_producer's), to grant
-- the new one to: a changed signature is a new function.
CREATE TEMP TABLE inferq_0013_producers ON COMMIT DROP AS
SELECT a.grantee::regrole AS role
  FROM pg_proc p, aclexplode(p.proacl) a
 WHERE p.oid = 'inferq.enqueue(text, jsonb, text, integer, timestamptz, integer, bytea)'::regprocedure
   AND a.privilege_type = 'EXECUTE' AND a.grantee <> 0 AND a.grantee <> p.proowner;

DROP FUNCTION inferq.enqueue(text, jsonb, text, integer, timestamptz, integer, bytea);

-- 0012's checks and body, plus unique_key.
CREATE FUNCTION inferq.enqueue(
  queue          text,
  payload        jsonb,
  work_unit_key  text        DEFAULT NULL,
  priority       integer     DEFAULT 0,
  run_at         timestamptz DEFAULT now(),
  max_attempts   integer     DEFAULT NULL,
  payload_binary bytea       DEFAULT NULL,
  unique_key     text        DEFAULT NULL
) RETURNS bigint
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
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
$$;

-- 0012's view, plus unique_key.
CREATE OR REPLACE VIEW inferq.my_jobs WITH (security_barrier) AS
SELECT j.id, j.queue, j.work_unit_key, j.state, j.priority, j.attempts, j.max_attempts,
       j.run_at, j.created_at, j.started_at, j.finished_at, j.result, j.last_error, j.result_binary,
       j.unique_key
  FROM inferq.jobs j
 WHERE j.enqueued_by = session_user;

-- 0012's, granting the new enqueue.
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
  EXECUTE format('GRANT EXECUTE ON FUNCTION inferq.enqueue(text, jsonb, text, integer, timestamptz, integer, bytea, text),'
                 ' inferq.cancel(bigint),'
                 ' inferq.tensor_bytes(real[]), inferq.tensor_bytes(double precision[]),'
                 ' inferq.tensor_bytes(bigint[]), inferq.tensor_bytes(integer[]),'
                 ' inferq.output_real(jsonb, bytea, text), inferq.output_double(jsonb, bytea, text),'
                 ' inferq.output_bigint(jsonb, bytea, text) TO %s', p_role);
  EXECUTE format('GRANT SELECT ON inferq.my_jobs TO %s', p_role);
END
$$;

-- As 0012: nothing new is executable by PUBLIC; the producers of the old
-- enqueue get what grant_producer now grants.
REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA inferq FROM PUBLIC;
DO $$
DECLARE
  r regrole;
BEGIN
  FOR r IN SELECT p.role FROM pg_temp.inferq_0013_producers p LOOP
    PERFORM inferq.grant_producer(r);
  END LOOP;
END
$$;
