-- inferq.claim and inferq.claim_more also return each job's wait (from
-- ready, max(created_at, run_at), to this claim) for inferq_job_wait_seconds.
--
-- The daemon used to read the wait by joining the claim's rows to
-- inferq.jobs in the calling statement. That statement's snapshot is older
-- than the statements inside the function, so a job committed in between was
-- claimed (running, under the lease) yet missing from the join: the daemon
-- never ran it, its lease ended without it, and it stayed running for ever.
-- The wait now comes from the UPDATE ... RETURNING that claims the job.
-- The bodies are 0001's and 0002's otherwise.

DROP FUNCTION IF EXISTS inferq.claim(text, bigint, integer, integer);
DROP FUNCTION IF EXISTS inferq.claim_more(bigint, text, integer, integer);

