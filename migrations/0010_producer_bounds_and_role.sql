-- Bounds on what a producer may enqueue, a way past jobs no claim can serve,
-- and a least-privilege producer role.
--
-- Bounds. inferq.enqueue bounded the payload's jsonb size only, but the
-- claims return payload::text, and numerics amplify: 8,300 copies of
-- 1e131071 are 130 KB of jsonb (2 KB stored) and over 1 GB of text, so every
-- claim of that queue then failed (54000 "out of memory") and the queue was
-- wedged. The JSON text is now bounded at 16 MiB too. A run_at of
-- 'infinity' was never due and '-infinity' ranked first for ever, so run_at
-- must be finite; max_attempts is at most 1000, as each failed attempt adds
-- an entry to the job's error history.
--
-- inferq.fail_unclaimable is for jobs written before these bounds, or into
-- inferq.jobs directly: when a claim fails on resources (SQLSTATE class 53 or
-- 54), the daemon calls it to make the jobs the claim would take, and whose
-- text cannot be made or is over the bound, dead.
--
-- Producers. inferq.enqueue and inferq.cancel run as their owner (SECURITY
-- DEFINER, with a search_path the caller cannot change), record and check
-- who enqueued a job (enqueued_by, the caller's login role), and a producer
-- reads its own jobs through inferq.my_jobs. inferq.grant_producer(role)
-- grants exactly that; nothing in schema inferq is executable by PUBLIC any
-- more. The owner (the daemon's role, which ran migrate) is unaffected.

-- The login role that enqueued the job (session_user: inside SECURITY
-- DEFINER functions current_user is their owner). NULL for jobs enqueued
-- before this migration: their producer is not known, so only members of
-- the owner may cancel them and no producer sees them in my_jobs.
ALTER TABLE inferq.jobs ADD COLUMN enqueued_by name;
ALTER TABLE inferq.jobs ALTER COLUMN enqueued_by SET DEFAULT session_user;

-- Producer API -------------------------------------------------------------

-- A producer's own jobs (enqueued_by is its login role). security_barrier:
-- a function of the caller's in a WHERE on the view cannot see the rows the
-- filter hides. The view reads inferq.jobs with its owner's rights.
CREATE VIEW inferq.my_jobs WITH (security_barrier) AS
SELECT j.id, j.queue, j.work_unit_key, j.state, j.priority, j.attempts, j.max_attempts,
       j.run_at, j.created_at, j.started_at, j.finished_at, j.result, j.last_error
  FROM inferq.jobs j
 WHERE j.enqueued_by = session_user;

-- Daemon API ----------------------------------------------------------------

-- Privileges -----------------------------------------------------------------

