-- Each function's one current definition lives in migrations/functions/
-- (applied by every `inferq migrate` after the numbered migrations, in the
-- same transaction), no longer in the migration that last changed it. The
-- version alone then no longer says which definitions a database has: a
-- build whose functions differ from the ones applied (another build of the
-- same version, an interrupted manual fix) would run against them. migrate
-- stores the SHA-256 of the function files it applied here, and a daemon
-- starts only when it is its own.
CREATE TABLE inferq.schema_functions (
  singleton  boolean     PRIMARY KEY DEFAULT true CHECK (singleton),
  digest     text        NOT NULL,
  applied_at timestamptz NOT NULL DEFAULT now()
);
