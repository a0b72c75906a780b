-- Retention: finished jobs do not stay for ever.
--
-- Each daemon's janitor deletes the succeeded, dead and cancelled jobs of
-- its queues once they have been finished for longer than the queue's
-- retention, a small batch per statement (its own short transaction), so
-- no long transaction holds back VACUUM or locks many rows. One daemon at
-- a time prunes a queue (a transaction advisory lock per queue; the others
-- find it taken and leave the batch to it, rather than wait or lock the same
-- rows). A sink runs inside the completion transaction that makes a job
-- succeeded, so no job can be pruned before its sink ran.
--
-- What changes:
-- - jobs_finished: an index over finished jobs by (queue, state,
--   finished_at), so a batch reads only what it deletes and the janitor can
--   count finished jobs by state without reading the live ones. Building it
--   reads the table once, under this migration's lock.
-- - inferq.prune(queue, state, older_than, max_rows): deletes at most
--   max_rows such jobs, oldest first; returns how many (0 when another
--   session is pruning the queue). The daemon's role (the owner) alone may
--   execute it.

CREATE INDEX jobs_finished ON inferq.jobs (queue, state, finished_at)
  WHERE state IN ('succeeded', 'dead', 'cancelled');

