-- Locks up to p_max_jobs due unkeyed available jobs of the queue, best
-- first (priority, then run_at, then id), skipping rows other claims hold;
-- returns their ctids (NULL when none), valid until the caller's transaction
-- ends. Shared by claim and claim_more.
CREATE OR REPLACE FUNCTION inferq.lock_due_unkeyed(p_queue text, p_max_jobs integer) RETURNS tid[]
LANGUAGE plpgsql
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
  tids tid[];
BEGIN
  SELECT array_agg(x.ctid) INTO tids
    FROM (SELECT j.ctid FROM inferq.jobs j
           WHERE j.queue = p_queue AND j.state = 'available' AND j.work_unit_key IS NULL
             AND j.run_at <= now()
           ORDER BY j.priority DESC, j.run_at, j.id
           LIMIT p_max_jobs
           FOR UPDATE SKIP LOCKED) x;
  RETURN tids;
END
$$;
