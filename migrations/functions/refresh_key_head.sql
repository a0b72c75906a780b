-- Recomputes a key's row in key_heads from its available jobs and its lease.
-- Takes the key's lock first (the caller usually holds it already), then reads
-- in later statements, which see what earlier holders committed.
CREATE OR REPLACE FUNCTION inferq.refresh_key_head(p_queue text, p_key text) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
  h record;
BEGIN
  PERFORM pg_advisory_xact_lock(inferq.key_lock_ns(), inferq.key_lock(p_queue, p_key));
  SELECT j.id, j.priority, j.run_at INTO h
    FROM inferq.jobs j
   WHERE j.queue = p_queue AND j.work_unit_key = p_key AND j.state = 'available'
   ORDER BY j.id
   LIMIT 1;
  IF h.id IS NULL OR EXISTS (SELECT 1 FROM inferq.active_sessions s
                              WHERE s.queue = p_queue AND s.work_unit_key = p_key) THEN
    DELETE FROM inferq.key_heads kh WHERE kh.queue = p_queue AND kh.work_unit_key = p_key;
  ELSE
    INSERT INTO inferq.key_heads AS kh (queue, work_unit_key, head_id, priority, run_at)
    VALUES (p_queue, p_key, h.id, h.priority, h.run_at)
    ON CONFLICT (queue, work_unit_key) DO UPDATE
       SET head_id = EXCLUDED.head_id, priority = EXCLUDED.priority, run_at = EXCLUDED.run_at
     WHERE (kh.head_id, kh.priority, kh.run_at)
           IS DISTINCT FROM (EXCLUDED.head_id, EXCLUDED.priority, EXCLUDED.run_at);
  END IF;
END
$$;
