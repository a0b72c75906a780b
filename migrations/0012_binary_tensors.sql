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

DROP FUNCTION IF EXISTS inferq.enqueue(text, jsonb, text, integer, timestamptz, integer);

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

-- Daemon API ----------------------------------------------------------------

DROP FUNCTION IF EXISTS inferq.claim(text, bigint, integer, integer);
DROP FUNCTION IF EXISTS inferq.claim_more(bigint, text, integer, integer);
DROP FUNCTION IF EXISTS inferq.start_locked_jobs(tid[], bigint, integer);

-- Privileges -----------------------------------------------------------------

