-- Producers deadlocked with daemons on key locks: the daemon now gives way
-- (waits at most 200 ms for each key after its first). The change is all in
-- inferq.lock_keys (migrations/functions/lock_keys.sql); this version number
-- stays so that databases migrated before the split count the same.
SELECT 1;
