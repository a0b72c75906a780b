-- The advisory lock of a key: (namespace, hash) keeps it apart from the
-- single-key lock of migrate. Equal hashes of two keys only share a lock.
CREATE OR REPLACE FUNCTION inferq.key_lock_ns() RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT 1769301585 $$;
