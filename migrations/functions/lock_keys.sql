-- Takes the advisory locks of the given keys, in key order. The daemon gives
-- way to producers: a producer that enqueues into several keys in one
-- transaction takes their locks in its own order and holds them to its
-- commit, so a daemon waiting for each key in turn could close a deadlock
-- cycle and PostgreSQL would abort one side, sometimes the producer (see
-- 0004). It waits as long as it takes for its first key (holding none, it
-- closes no cycle), but for each further key at most 200 ms, well under
-- deadlock_timeout (1 s), so in such a cycle its statement fails first
-- (SQLSTATE 55P03, which the daemon retries) and the producer's transaction
-- goes on. Between daemons nothing changes: they all lock in key order, so
-- they only ever wait, never deadlock.
CREATE OR REPLACE FUNCTION inferq.lock_keys(p_queues text[], p_keys text[]) RETURNS void
LANGUAGE plpgsql AS $$
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
