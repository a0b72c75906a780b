-- The first daemon API, kept for its callers: complete_outcomes, returning
-- only the number of jobs written.
CREATE OR REPLACE FUNCTION inferq.complete(p_jobs jsonb, p_worker_name text)
RETURNS integer
LANGUAGE sql AS $$
  SELECT coalesce(sum(c.jobs), 0)::integer FROM inferq.complete_outcomes(p_jobs, p_worker_name) c
$$;
