-- Enqueues one job and returns its id. Checks: the payload's JSON text and
-- payload_binary at most 16 MiB each, run_at finite, max_attempts at most
-- 1000; records enqueued_by. A job with a unique_key that an unfinished job
-- of the queue holds is not enqueued twice: the existing job's id is
-- returned. Every name is qualified (search_path is pg_catalog, pg_temp
-- while it runs).
CREATE OR REPLACE FUNCTION inferq.enqueue(
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
