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

DROP FUNCTION IF EXISTS inferq.enqueue(text, jsonb, text, integer, timestamptz, integer, bytea);

-- 0012's view, plus unique_key.
CREATE OR REPLACE VIEW inferq.my_jobs WITH (security_barrier) AS
SELECT j.id, j.queue, j.work_unit_key, j.state, j.priority, j.attempts, j.max_attempts,
       j.run_at, j.created_at, j.started_at, j.finished_at, j.result, j.last_error, j.result_binary,
       j.unique_key
  FROM inferq.jobs j
 WHERE j.enqueued_by = session_user;

