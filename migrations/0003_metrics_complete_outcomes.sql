-- Per-outcome completion counts, for inferq_jobs_finished_total{outcome}.
-- inferq.complete (0001) returned only how many jobs it wrote; a daemon also
-- needs to know how each attempt ended (succeeded, retried, dead, cancelled),
-- which only the database knows (cancel_requested, attempts left).
-- inferq.complete_outcomes is 0001's inferq.complete with that result; the
-- old function stays, with its signature, as a wrapper, so a daemon of the
-- previous version keeps working against this schema.

