-- Cancels a job, for its own producer: an available job becomes
-- cancelled at once; a running one is marked and becomes cancelled when its
-- unit ends. Returns false when the job does not exist or has already
-- finished. A job enqueued by another login role raises insufficient_privilege
-- (42501) unless the caller is a member of the owner of inferq.jobs (the
-- daemon's role, an admin; superusers are members of every role): telling a
-- producer "no such job" for a job it can see the id of would hide a mistake.
CREATE OR REPLACE FUNCTION inferq.cancel(job_id bigint) RETURNS boolean
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  s inferq.job_state;
  k record;
BEGIN
  SELECT j.queue, j.work_unit_key, j.enqueued_by INTO k FROM inferq.jobs j WHERE j.id = cancel.job_id;
  IF NOT FOUND THEN
    RETURN false;
  END IF;
  IF k.enqueued_by IS DISTINCT FROM session_user
     AND NOT pg_has_role(session_user,
                         (SELECT c.relowner FROM pg_class c WHERE c.oid = 'inferq.jobs'::regclass),
                         'MEMBER') THEN
    RAISE EXCEPTION 'inferq.cancel: job % was not enqueued by role %', cancel.job_id, session_user
      USING ERRCODE = 'insufficient_privilege',
            HINT = 'A producer may cancel only the jobs it enqueued.';
  END IF;
  -- A keyed job: take its key's lock before touching the row (see key_heads).
  IF k.work_unit_key IS NOT NULL THEN
    PERFORM pg_advisory_xact_lock(inferq.key_lock_ns(), inferq.key_lock(k.queue, k.work_unit_key));
  END IF;
  UPDATE inferq.jobs j
     SET cancel_requested = true,
         state = CASE WHEN j.state = 'available' THEN 'cancelled'::inferq.job_state ELSE j.state END,
         finished_at = CASE WHEN j.state = 'available' THEN clock_timestamp() ELSE j.finished_at END
   WHERE j.id = cancel.job_id AND j.state IN ('available', 'running')
  RETURNING j.state INTO s;
  IF NOT FOUND THEN
    RETURN false;
  END IF;
  IF s = 'cancelled' THEN
    -- It was available: if it was its key's head, the head moves on.
    IF k.work_unit_key IS NOT NULL THEN
      PERFORM inferq.refresh_key_head(k.queue, k.work_unit_key);
    END IF;
    PERFORM pg_notify('inferq_done', cancel.job_id::text);
  END IF;
  RETURN true;
END
$$;
