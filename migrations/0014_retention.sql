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

CREATE FUNCTION inferq.prune(p_queue text, p_state inferq.job_state, p_older_than interval, p_max_rows integer)
RETURNS integer
LANGUAGE plpgsql AS $$
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

REVOKE EXECUTE ON FUNCTION inferq.prune(text, inferq.job_state, interval, integer) FROM PUBLIC;
