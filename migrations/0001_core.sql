-- inferq core schema: jobs, active-session leases, workers. The SQL API
-- (enqueue, cancel for producers; claim, reap, heartbeat, complete, release
-- for daemons) is in migrations/functions/, one file per function, which
-- every `inferq migrate` applies after the numbered migrations, in the same
-- transaction (migrations/README.md).

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

-- Producer API -------------------------------------------------------------

-- Daemon API ----------------------------------------------------------------

