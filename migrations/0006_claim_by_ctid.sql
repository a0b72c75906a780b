-- inferq.claim and inferq.claim_more update the unkeyed jobs they claim by
-- ctid instead of by id. The rows were just locked FOR UPDATE in the same
-- transaction, so their ctids cannot change before the UPDATE, which then
-- reads each row straight from its heap page (a TID scan) instead of
-- descending jobs_pkey once per job: the pkey holds every version of every
-- job, the history included, so those descents cost more as the table grows.
-- Keyed claims (rows guarded by the key's lock, not a row lock) still update
-- by id. Picking and starting unkeyed jobs move into two helpers both use;
-- the bodies are 0005's otherwise.

