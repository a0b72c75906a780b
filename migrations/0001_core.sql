-- inferq core schema: jobs, active-session leases, workers, and the SQL API
-- (enqueue, cancel for producers; claim, reap, heartbeat, complete, release
-- for daemons). Applied by `inferq migrate` in one transaction.

CREATE SCHEMA IF NOT EXISTS inferq;

CREATE TYPE inferq.job_state AS ENUM ('available', 'running', 'succeeded', 'dead', 'cancelled');

-- One row per running daemon; rows of daemons that stopped heartbeating are
-- removed by the reaper of any other daemon.
CREATE TABLE inferq.workers (
  id           bigserial PRIMARY KEY,
  name         text        NOT NULL,
  host         text        NOT NULL,
  pid          integer     NOT NULL,
  version      text        NOT NULL,
  queues       text[]      NOT NULL DEFAULT '{}',
  started_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
  last_seen_at timestamptz NOT NULL DEFAULT clock_timestamp()
);

-- The active-session rows: one lease per claimed work unit. The id is the
-- fencing token (a sequence, never reused). A key has at most one live lease
-- per queue, which is what makes keyed jobs run one unit at a time.
CREATE TABLE inferq.active_sessions (
  id            bigserial   PRIMARY KEY,
  queue         text        NOT NULL,
  work_unit_key text,
  worker_id     bigint      NOT NULL,
  claimed_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
  heartbeat_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
  CONSTRAINT active_sessions_one_lease_per_key UNIQUE (queue, work_unit_key)
);
CREATE INDEX active_sessions_heartbeat ON inferq.active_sessions (heartbeat_at);

CREATE TABLE inferq.jobs (
  id               bigserial   PRIMARY KEY,
  queue            text        NOT NULL,
  work_unit_key    text,
  payload          jsonb       NOT NULL,
  state            inferq.job_state NOT NULL DEFAULT 'available',
  priority         integer     NOT NULL DEFAULT 0,
  run_at           timestamptz NOT NULL DEFAULT now(),
  attempts         integer     NOT NULL DEFAULT 0,
  -- NULL until first claimed: then fixed to the queue's retry.max_attempts.
  max_attempts     integer     CHECK (max_attempts IS NULL OR max_attempts >= 1),
  lease_id         bigint,
  cancel_requested boolean     NOT NULL DEFAULT false,
  result           jsonb,
  last_error       text,
  errors           jsonb       NOT NULL DEFAULT '[]',
  created_at       timestamptz NOT NULL DEFAULT clock_timestamp(),
  started_at       timestamptz,
  finished_at      timestamptz
);

-- Claim paths. Partial indexes hold only available jobs, so a claim reads the
-- head of an index whose size is the claimable backlog, never the history.
CREATE INDEX jobs_claim_unkeyed ON inferq.jobs (queue, priority DESC, run_at, id)
  WHERE state = 'available' AND work_unit_key IS NULL;
CREATE INDEX jobs_key_order ON inferq.jobs (queue, work_unit_key, id)
  WHERE state = 'available' AND work_unit_key IS NOT NULL;
CREATE INDEX jobs_running_lease ON inferq.jobs (lease_id) WHERE state = 'running';

-- The claimable keys: one row per key that has available jobs and no live
-- lease, naming the key's head (its lowest-id available job) and the head's
-- rank. A keyed claim reads the best row here, so its cost is the number of
-- claimable keys it skips, never the keyed backlog. A head not yet due (a
-- retry's backoff) keeps its row with its run_at: the key waits for it.
--
-- Every transaction that changes a key's state (enqueue, cancel, claim,
-- complete, release, reap) first takes the key's advisory lock
-- (inferq.key_lock), held to commit, and a writer then recomputes the row in
-- a statement of its own (inferq.refresh_key_head). Under READ COMMITTED that
-- statement's snapshot is taken after the lock was granted, so it sees every
-- change of any earlier holder, which committed before giving the lock up:
-- the last writer to commit leaves the row right. A claim only try-locks
-- (after locking the row FOR UPDATE), so it never waits on a key.
CREATE TABLE inferq.key_heads (
  queue         text        NOT NULL,
  work_unit_key text        NOT NULL,
  head_id       bigint      NOT NULL,
  priority      integer     NOT NULL,
  run_at        timestamptz NOT NULL,
  PRIMARY KEY (queue, work_unit_key)
);
CREATE INDEX key_heads_claim ON inferq.key_heads (queue, priority DESC, run_at, head_id);

-- The advisory lock of a key: (namespace, hash) keeps it apart from the
-- single-key lock of migrate. Equal hashes of two keys only share a lock.
CREATE FUNCTION inferq.key_lock_ns() RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT 1769301585 $$;  -- 'inferq' keys
CREATE FUNCTION inferq.key_lock(p_queue text, p_key text) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT hashtext(p_queue || E'\x1f' || p_key) $$;

-- Recomputes a key's row in key_heads from its available jobs and its lease.
-- Takes the key's lock first (the caller usually holds it already), then reads
-- in later statements, which see what earlier holders committed.
CREATE FUNCTION inferq.refresh_key_head(p_queue text, p_key text) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
  h record;
BEGIN
  PERFORM pg_advisory_xact_lock(inferq.key_lock_ns(), inferq.key_lock(p_queue, p_key));
  SELECT j.id, j.priority, j.run_at INTO h
    FROM inferq.jobs j
   WHERE j.queue = p_queue AND j.work_unit_key = p_key AND j.state = 'available'
   ORDER BY j.id
   LIMIT 1;
  IF h.id IS NULL OR EXISTS (SELECT 1 FROM inferq.active_sessions s
                              WHERE s.queue = p_queue AND s.work_unit_key = p_key) THEN
    DELETE FROM inferq.key_heads kh WHERE kh.queue = p_queue AND kh.work_unit_key = p_key;
  ELSE
    INSERT INTO inferq.key_heads AS kh (queue, work_unit_key, head_id, priority, run_at)
    VALUES (p_queue, p_key, h.id, h.priority, h.run_at)
    ON CONFLICT (queue, work_unit_key) DO UPDATE
       SET head_id = EXCLUDED.head_id, priority = EXCLUDED.priority, run_at = EXCLUDED.run_at
     WHERE (kh.head_id, kh.priority, kh.run_at)
           IS DISTINCT FROM (EXCLUDED.head_id, EXCLUDED.priority, EXCLUDED.run_at);
  END IF;
END
$$;

-- Takes the locks of keys (queues[i], keys[i]) in lock order, so that two
-- transactions locking several keys cannot deadlock on them.
CREATE FUNCTION inferq.lock_keys(p_queues text[], p_keys text[]) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
  l integer;
BEGIN
  IF p_keys IS NULL THEN
    RETURN;
  END IF;
  FOR l IN SELECT DISTINCT inferq.key_lock(x.q, x.k)
             FROM unnest(p_queues, p_keys) AS x(q, k) ORDER BY 1 LOOP
    PERFORM pg_advisory_xact_lock(inferq.key_lock_ns(), l);
  END LOOP;
END
$$;

CREATE FUNCTION inferq.refresh_key_heads(p_queues text[], p_keys text[]) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
  FOR i IN 1 .. coalesce(array_length(p_keys, 1), 0) LOOP
    PERFORM inferq.refresh_key_head(p_queues[i], p_keys[i]);
  END LOOP;
END
$$;

-- Rebuilds key_heads from scratch (of one queue, or all): a repair, and the
-- way to index keyed jobs written to inferq.jobs by hand. It locks key_heads
-- against claims and refreshes while it runs; run it while producers and
-- daemons are quiet, as a refresh computed before it may commit after it.
CREATE FUNCTION inferq.rebuild_key_heads(p_queue text DEFAULT NULL) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
  n integer;
BEGIN
  LOCK TABLE inferq.key_heads IN EXCLUSIVE MODE;
  DELETE FROM inferq.key_heads kh WHERE p_queue IS NULL OR kh.queue = p_queue;
  INSERT INTO inferq.key_heads (queue, work_unit_key, head_id, priority, run_at)
  SELECT DISTINCT ON (j.queue, j.work_unit_key) j.queue, j.work_unit_key, j.id, j.priority, j.run_at
    FROM inferq.jobs j
   WHERE j.state = 'available' AND j.work_unit_key IS NOT NULL
     AND (p_queue IS NULL OR j.queue = p_queue)
     AND NOT EXISTS (SELECT 1 FROM inferq.active_sessions s
                      WHERE s.queue = j.queue AND s.work_unit_key = j.work_unit_key)
   ORDER BY j.queue, j.work_unit_key, j.id;
  GET DIAGNOSTICS n = ROW_COUNT;
  RETURN n;
END
$$;

-- Producer API -------------------------------------------------------------

CREATE FUNCTION inferq.enqueue(
  queue         text,
  payload       jsonb,
  work_unit_key text        DEFAULT NULL,
  priority      integer     DEFAULT 0,
  run_at        timestamptz DEFAULT now(),
  max_attempts  integer     DEFAULT NULL
) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
  new_id bigint;
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
  IF enqueue.work_unit_key = '' THEN
    RAISE EXCEPTION 'inferq.enqueue: work_unit_key must be NULL or a non-empty string'
      USING ERRCODE = 'invalid_parameter_value';
  END IF;
  IF enqueue.priority IS NULL THEN
    RAISE EXCEPTION 'inferq.enqueue: priority must not be NULL'
      USING ERRCODE = 'invalid_parameter_value';
  END IF;
  IF enqueue.max_attempts IS NOT NULL AND enqueue.max_attempts < 1 THEN
    RAISE EXCEPTION 'inferq.enqueue: max_attempts must be at least 1, got %', enqueue.max_attempts
      USING ERRCODE = 'invalid_parameter_value';
  END IF;

  INSERT INTO inferq.jobs (queue, work_unit_key, payload, priority, run_at, max_attempts)
  VALUES (enqueue.queue, enqueue.work_unit_key, enqueue.payload, enqueue.priority,
          coalesce(enqueue.run_at, now()), enqueue.max_attempts)
  RETURNING id INTO new_id;
  IF enqueue.work_unit_key IS NOT NULL THEN
    PERFORM inferq.refresh_key_head(enqueue.queue, enqueue.work_unit_key);
  END IF;
  -- Delivered at commit; identical payloads in one transaction fold into one.
  PERFORM pg_notify('inferq_jobs', enqueue.queue);
  RETURN new_id;
END
$$;

-- An available job becomes cancelled at once; a running one is marked and
-- becomes cancelled when its unit ends (its result is discarded). Returns
-- false when the job does not exist or has already finished.
CREATE FUNCTION inferq.cancel(job_id bigint) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
  s inferq.job_state;
  k record;
BEGIN
  -- A keyed job: take its key's lock before touching the row (see key_heads).
  SELECT j.queue, j.work_unit_key INTO k FROM inferq.jobs j WHERE j.id = cancel.job_id;
  IF k.work_unit_key IS NOT NULL THEN
    PERFORM pg_advisory_xact_lock(inferq.key_lock_ns(), inferq.key_lock(k.queue, k.work_unit_key));
  END IF;
  UPDATE inferq.jobs j
     SET cancel_requested = true,
         state = CASE WHEN j.state = 'available' THEN 'cancelled'::inferq.job_state ELSE j.state END,
         finished_at = CASE WHEN j.state = 'available' THEN clock_timestamp() ELSE j.finished_at END
   WHERE j.id = cancel.job_id AND j.state IN ('available', 'running')
  RETURNING j.state INTO s;
  IF NOT FOUND THEN
    RETURN false;
  END IF;
  IF s = 'cancelled' THEN
    -- It was available: if it was its key's head, the head moves on.
    IF k.work_unit_key IS NOT NULL THEN
      PERFORM inferq.refresh_key_head(k.queue, k.work_unit_key);
    END IF;
    PERFORM pg_notify('inferq_done', cancel.job_id::text);
  END IF;
  RETURN true;
END
$$;

-- Daemon API ----------------------------------------------------------------

-- Claims one work unit of `p_queue` for worker `p_worker`: either up to
-- p_max_jobs unkeyed jobs, or up to p_max_jobs consecutive available jobs of
-- one key whose head is due and which has no live lease, whichever ranks
-- first by (priority DESC, run_at, id). Counts the attempt now. Returns no
-- rows when nothing is claimable. Keys are found in key_heads (claimable keys
-- only); a key another transaction is writing right now is skipped, not
-- waited for.
CREATE FUNCTION inferq.claim(p_queue text, p_worker bigint, p_max_jobs integer,
                             p_default_max_attempts integer)
RETURNS TABLE (lease_id bigint, job_id bigint, payload text, attempts integer,
               max_attempts integer, work_unit_key text)
LANGUAGE plpgsql AS $$
DECLARE
  u      record;
  k      record;
  ids    bigint[];
  lease  bigint;
  tries  integer := 0;
  skipped text[] := '{}';
BEGIN
  SELECT j.priority, j.run_at, j.id INTO u
    FROM inferq.jobs j
   WHERE j.queue = p_queue AND j.state = 'available' AND j.work_unit_key IS NULL
     AND j.run_at <= now()
   ORDER BY j.priority DESC, j.run_at, j.id
   LIMIT 1;

  -- The best claimable key (see key_heads). Its row is locked FOR UPDATE
  -- (another daemon skips it), then its key's lock is only tried: a key being
  -- written by another transaction is skipped, never waited for.
  LOOP
    k := NULL;
    SELECT h.priority, h.run_at, h.head_id AS id, h.work_unit_key AS key INTO k
      FROM inferq.key_heads h
     WHERE h.queue = p_queue AND h.run_at <= now()
       AND NOT (h.work_unit_key = ANY (skipped))
     ORDER BY h.priority DESC, h.run_at, h.head_id
     LIMIT 1
     FOR UPDATE SKIP LOCKED;
    EXIT WHEN k.id IS NULL;
    EXIT WHEN u.id IS NOT NULL AND (u.priority, k.run_at, k.id) > (k.priority, u.run_at, u.id);
    skipped := skipped || k.key;
    tries := tries + 1;

    IF pg_try_advisory_xact_lock(inferq.key_lock_ns(), inferq.key_lock(p_queue, k.key)) THEN
      -- From here on the statements see what the key's last writer committed.
      -- The unique lease per key is what makes its jobs run one unit at a time.
      lease := NULL;
      INSERT INTO inferq.active_sessions (queue, work_unit_key, worker_id)
      VALUES (p_queue, k.key, p_worker)
      ON CONFLICT ON CONSTRAINT active_sessions_one_lease_per_key DO NOTHING
      RETURNING id INTO lease;
      IF lease IS NOT NULL THEN
        -- The key's next jobs in id order, cut at the first one not yet due.
        SELECT array_agg(x.id ORDER BY x.id) INTO ids
          FROM (SELECT j.id, bool_and(j.run_at <= now()) OVER (ORDER BY j.id) AS due
                  FROM (SELECT j2.id, j2.run_at FROM inferq.jobs j2
                         WHERE j2.queue = p_queue AND j2.work_unit_key = k.key
                           AND j2.state = 'available'
                         ORDER BY j2.id LIMIT p_max_jobs) j) x
         WHERE x.due;
        IF ids IS NOT NULL THEN
          -- Leased: the key is not claimable until its unit ends.
          DELETE FROM inferq.key_heads h WHERE h.queue = p_queue AND h.work_unit_key = k.key;
          RETURN QUERY
          UPDATE inferq.jobs j
             SET state = 'running', lease_id = lease, attempts = j.attempts + 1,
                 max_attempts = coalesce(j.max_attempts, p_default_max_attempts),
                 started_at = clock_timestamp()
           WHERE j.id = ANY (ids) AND j.state = 'available'
          RETURNING lease, j.id, j.payload::text, j.attempts, j.max_attempts, j.work_unit_key;
          IF FOUND THEN
            RETURN;
          END IF;
        END IF;
        DELETE FROM inferq.active_sessions s WHERE s.id = lease;
      END IF;
      -- The row was stale (the key is leased, or its head is not due): fix it.
      PERFORM inferq.refresh_key_head(p_queue, k.key);
    END IF;
    EXIT WHEN tries >= 5;
  END LOOP;

  IF u.id IS NULL THEN
    RETURN;
  END IF;
  SELECT array_agg(x.id) INTO ids
    FROM (SELECT j.id FROM inferq.jobs j
           WHERE j.queue = p_queue AND j.state = 'available' AND j.work_unit_key IS NULL
             AND j.run_at <= now()
           ORDER BY j.priority DESC, j.run_at, j.id
           LIMIT p_max_jobs
           FOR UPDATE SKIP LOCKED) x;
  IF ids IS NULL THEN
    RETURN;
  END IF;
  INSERT INTO inferq.active_sessions (queue, worker_id) VALUES (p_queue, p_worker)
  RETURNING id INTO lease;
  RETURN QUERY
  UPDATE inferq.jobs j
     SET state = 'running', lease_id = lease, attempts = j.attempts + 1,
         max_attempts = coalesce(j.max_attempts, p_default_max_attempts),
         started_at = clock_timestamp()
   WHERE j.id = ANY (ids)
  RETURNING lease, j.id, j.payload::text, j.attempts, j.max_attempts, j.work_unit_key;
END
$$;

-- Renews the given leases of a live daemon in one statement and marks the
-- daemon seen. Returns the leases that still exist (a missing one was reaped).
CREATE FUNCTION inferq.heartbeat(p_worker bigint, p_leases bigint[])
RETURNS SETOF bigint
LANGUAGE sql AS $$
  WITH seen AS (
    UPDATE inferq.workers SET last_seen_at = clock_timestamp() WHERE id = p_worker
  )
  UPDATE inferq.active_sessions s SET heartbeat_at = clock_timestamp()
   WHERE s.id = ANY (p_leases)
  RETURNING s.id;
$$;

-- Reaps leases whose heartbeat is older than p_stale_after, except those in
-- p_keep (the caller's own live units). Their running jobs become available
-- again, or dead when out of attempts, or cancelled when asked to. Returns
-- the number of leases reaped. Also forgets workers long gone.
CREATE FUNCTION inferq.reap(p_stale_after interval, p_keep bigint[])
RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
  n      integer;
  leases bigint[];
  kq     text[];
  kk     text[];
BEGIN
  SELECT array_agg(s.id),
         array_agg(s.queue) FILTER (WHERE s.work_unit_key IS NOT NULL),
         array_agg(s.work_unit_key) FILTER (WHERE s.work_unit_key IS NOT NULL)
    INTO leases, kq, kk
    FROM inferq.active_sessions s
   WHERE s.heartbeat_at < clock_timestamp() - p_stale_after
     AND NOT (s.id = ANY (coalesce(p_keep, '{}')));
  IF leases IS NULL THEN
    RETURN 0;
  END IF;
  -- The keys of keyed leases: locked before their rows change, refreshed after.
  PERFORM inferq.lock_keys(kq, kk);

  WITH stale AS (
    DELETE FROM inferq.active_sessions s
     WHERE s.id = ANY (leases)
       AND s.heartbeat_at < clock_timestamp() - p_stale_after
    RETURNING s.id, s.worker_id, s.queue
  ), owner AS (
    SELECT st.id, st.queue,
           'lease expired: worker ' || coalesce(w.name, '#' || st.worker_id::text)
             || ' did not renew it within '
             || (extract(epoch FROM p_stale_after))::numeric(12,3)::float8::text || 's' AS message,
           coalesce(w.name, '#' || st.worker_id::text) AS worker
      FROM stale st LEFT JOIN inferq.workers w ON w.id = st.worker_id
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
  SELECT (SELECT count(*) FROM stale) + 0 * (SELECT count(*) FROM notified) INTO n;

  -- Every key locked above (one whose lease was renewed meanwhile: a no-op).
  PERFORM inferq.refresh_key_heads(kq, kk);

  IF n > 0 THEN
    DELETE FROM inferq.workers w
     WHERE w.last_seen_at < clock_timestamp() - greatest(p_stale_after * 4, interval '1 minute');
  END IF;
  RETURN n;
END
$$;

-- Finishes the jobs of work units, fenced: a job is written only while it is
-- still running under the lease that names it, so a daemon whose lease was
-- reaped writes nothing. p_jobs is a JSON array of
--   {lease, id, ok, result, class, message, retry_ms}
-- Class 'requeue' means the job did not run (a keyed job put back behind an
-- earlier one of its key that will be retried): it becomes available as it
-- was, its attempt refunded and no error recorded.
-- Every lease named is released. Returns the number of jobs written.
CREATE FUNCTION inferq.complete(p_jobs jsonb, p_worker_name text)
RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
  n  integer;
  kq text[];
  kk text[];
BEGIN
  -- The keys of keyed leases: locked before their rows change, refreshed after.
  SELECT array_agg(s.queue), array_agg(s.work_unit_key) INTO kq, kk
    FROM inferq.active_sessions s
   WHERE s.id IN (SELECT x.lease FROM jsonb_to_recordset(p_jobs) AS x(lease bigint))
     AND s.work_unit_key IS NOT NULL;
  PERFORM inferq.lock_keys(kq, kk);

  WITH r AS (
    SELECT x.*, coalesce(NOT x.ok AND x.class = 'requeue', false) AS requeue
      FROM jsonb_to_recordset(p_jobs)
      AS x(lease bigint, id bigint, ok boolean, result jsonb, class text,
           message text, retry_ms bigint)
  ), done AS (
    UPDATE inferq.jobs j
       SET state = CASE WHEN j.cancel_requested THEN 'cancelled'
                        WHEN r.ok THEN 'succeeded'
                        WHEN r.requeue THEN 'available'
                        WHEN r.class = 'permanent' OR j.attempts >= j.max_attempts THEN 'dead'
                        ELSE 'available' END::inferq.job_state,
           attempts = CASE WHEN r.requeue THEN greatest(j.attempts - 1, 0) ELSE j.attempts END,
           result = CASE WHEN r.ok AND NOT j.cancel_requested THEN r.result END,
           last_error = CASE WHEN r.ok OR r.requeue THEN j.last_error ELSE r.message END,
           errors = CASE WHEN r.ok OR r.requeue THEN j.errors
                         ELSE j.errors || jsonb_build_array(jsonb_build_object(
                           'attempt', j.attempts, 'at', clock_timestamp(), 'class', r.class,
                           'message', r.message, 'worker', p_worker_name)) END,
           lease_id = NULL,
           run_at = CASE WHEN NOT r.ok AND NOT r.requeue AND NOT j.cancel_requested
                              AND r.class <> 'permanent' AND j.attempts < j.max_attempts
                         THEN clock_timestamp() + make_interval(secs => coalesce(r.retry_ms, 0) / 1000.0)
                         ELSE j.run_at END,
           finished_at = CASE WHEN r.ok OR j.cancel_requested
                                   OR (NOT r.requeue AND (r.class = 'permanent'
                                                          OR j.attempts >= j.max_attempts))
                              THEN clock_timestamp() END
      FROM r
     WHERE j.id = r.id AND j.lease_id = r.lease AND j.state = 'running'
    RETURNING j.id, j.state, j.queue
  ), released AS (
    DELETE FROM inferq.active_sessions s WHERE s.id IN (SELECT DISTINCT r.lease FROM r)
  ), notified AS (
    SELECT pg_notify(CASE WHEN d.state = 'available' THEN 'inferq_jobs' ELSE 'inferq_done' END,
                     CASE WHEN d.state = 'available' THEN d.queue ELSE d.id::text END)
      FROM done d
  )
  SELECT (SELECT count(*) FROM done)::integer + 0 * (SELECT count(*) FROM notified)::integer
    INTO n;

  PERFORM inferq.refresh_key_heads(kq, kk);
  RETURN n;
END
$$;

-- Gives back the leases of a daemon that stops cleanly: their running jobs
-- become available at once and do not lose the attempt the claim counted.
CREATE FUNCTION inferq.release(p_leases bigint[])
RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
  n  integer;
  kq text[];
  kk text[];
BEGIN
  -- The keys of keyed leases: locked before their rows change, refreshed after.
  SELECT array_agg(s.queue), array_agg(s.work_unit_key) INTO kq, kk
    FROM inferq.active_sessions s
   WHERE s.id = ANY (p_leases)
     AND s.work_unit_key IS NOT NULL;
  PERFORM inferq.lock_keys(kq, kk);

  WITH gone AS (
    DELETE FROM inferq.active_sessions s WHERE s.id = ANY (p_leases) RETURNING s.id
  ), back AS (
    UPDATE inferq.jobs j
       SET state = CASE WHEN j.cancel_requested THEN 'cancelled'
                        ELSE 'available' END::inferq.job_state,
           attempts = greatest(j.attempts - 1, 0),
           lease_id = NULL,
           finished_at = CASE WHEN j.cancel_requested THEN clock_timestamp() END
      FROM gone g
     WHERE j.lease_id = g.id AND j.state = 'running'
    RETURNING j.id, j.state, j.queue
  ), notified AS (
    SELECT pg_notify(CASE WHEN b.state = 'available' THEN 'inferq_jobs' ELSE 'inferq_done' END,
                     CASE WHEN b.state = 'available' THEN b.queue ELSE b.id::text END)
      FROM back b
  )
  SELECT (SELECT count(*) FROM back)::integer + 0 * (SELECT count(*) FROM notified)::integer
    INTO n;

  PERFORM inferq.refresh_key_heads(kq, kk);
  RETURN n;
END
$$;
