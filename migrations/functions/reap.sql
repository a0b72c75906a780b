-- Reaps leases whose heartbeat is older than p_stale_after, except those in
-- p_keep (the caller's own live units), and running jobs whose lease row is
-- gone (orphans, see 0011; lease ids are never reused). Their running jobs
-- become available again, or dead when out of attempts, or cancelled when
-- asked to; each counts its attempt and records the error. Returns the number
-- of leases reaped. Also forgets workers long gone.
CREATE OR REPLACE FUNCTION inferq.reap(p_stale_after interval, p_keep bigint[])
RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
  n       integer;
  leases  bigint[];
  orphans bigint[];
  kq      text[];
  kk      text[];
  oq      text[];
  ok      text[];
BEGIN
  SELECT array_agg(s.id),
         array_agg(s.queue) FILTER (WHERE s.work_unit_key IS NOT NULL),
         array_agg(s.work_unit_key) FILTER (WHERE s.work_unit_key IS NOT NULL)
    INTO leases, kq, kk
    FROM inferq.active_sessions s
   WHERE s.heartbeat_at < clock_timestamp() - p_stale_after
     AND NOT (s.id = ANY (coalesce(p_keep, '{}')));
  SELECT array_agg(DISTINCT j.lease_id),
         array_agg(j.queue) FILTER (WHERE j.work_unit_key IS NOT NULL),
         array_agg(j.work_unit_key) FILTER (WHERE j.work_unit_key IS NOT NULL)
    INTO orphans, oq, ok
    FROM inferq.jobs j
   WHERE j.state = 'running'
     AND NOT EXISTS (SELECT 1 FROM inferq.active_sessions s WHERE s.id = j.lease_id);
  IF leases IS NULL AND orphans IS NULL THEN
    RETURN 0;
  END IF;
  kq := kq || oq;
  kk := kk || ok;
  -- The keys of keyed leases: locked before their rows change, refreshed after.
  PERFORM inferq.lock_keys(kq, kk);

  WITH stale AS (
    DELETE FROM inferq.active_sessions s
     WHERE s.id = ANY (leases)
       AND s.heartbeat_at < clock_timestamp() - p_stale_after
    RETURNING s.id, s.worker_id, s.queue
  ), owner AS (
    SELECT st.id,
           'lease expired: worker ' || coalesce(w.name, '#' || st.worker_id::text)
             || ' did not renew it within '
             || (extract(epoch FROM p_stale_after))::numeric(12,3)::float8::text || 's' AS message,
           coalesce(w.name, '#' || st.worker_id::text) AS worker
      FROM stale st LEFT JOIN inferq.workers w ON w.id = st.worker_id
    UNION ALL
    SELECT o.id,
           'running with no lease: lease ' || o.id::text
             || ' was released without this job (its daemon never saw it claimed)',
           NULL
      FROM unnest(orphans) AS o(id)
  ), lost AS (
    UPDATE inferq.jobs j
       SET state = CASE WHEN j.cancel_requested THEN 'cancelled'
                        WHEN j.attempts >= j.max_attempts THEN 'dead'
                        ELSE 'available' END::inferq.job_state,
           lease_id = NULL,
           last_error = o.message,
           errors = j.errors || jsonb_build_array(jsonb_build_object(
             'attempt', j.attempts, 'at', clock_timestamp(), 'class', 'lost',
             'message', o.message, 'worker', o.worker)),
           finished_at = CASE WHEN j.cancel_requested OR j.attempts >= j.max_attempts
                              THEN clock_timestamp() END
      FROM owner o
     WHERE j.lease_id = o.id AND j.state = 'running'
    RETURNING j.id, j.state, j.queue
  ), notified AS (
    SELECT pg_notify(CASE WHEN l.state = 'available' THEN 'inferq_jobs' ELSE 'inferq_done' END,
                     CASE WHEN l.state = 'available' THEN l.queue ELSE l.id::text END)
      FROM lost l
  )
  SELECT (SELECT count(*) FROM stale) + coalesce(cardinality(orphans), 0)
         + 0 * (SELECT count(*) FROM notified) INTO n;

  -- Every key locked above (one whose lease was renewed meanwhile: a no-op).
  PERFORM inferq.refresh_key_heads(kq, kk);

  IF n > 0 THEN
    DELETE FROM inferq.workers w
     WHERE w.last_seen_at < clock_timestamp() - greatest(p_stale_after * 4, interval '1 minute');
  END IF;
  RETURN n;
END
$$;
