-- Renews the given leases of a live daemon in one statement and marks the
-- daemon seen. Returns the leases that still exist (a missing one was reaped).
CREATE OR REPLACE FUNCTION inferq.heartbeat(p_worker bigint, p_leases bigint[])
RETURNS SETOF bigint
LANGUAGE sql AS $$
  WITH seen AS (
    UPDATE inferq.workers SET last_seen_at = clock_timestamp() WHERE id = p_worker
  )
  UPDATE inferq.active_sessions s SET heartbeat_at = clock_timestamp()
   WHERE s.id = ANY (p_leases)
  RETURNING s.id;
$$;
