-- Partial units that wait for more jobs (a queue's batch.max_wait): the
-- daemon claims what is there, holds the lease while the unit fills, and tops
-- the same lease up with claim_more before it sends the unit to an executor.

