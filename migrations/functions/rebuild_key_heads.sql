-- Rebuilds key_heads from scratch (of one queue, or all): a repair, and the
-- way to index keyed jobs written to inferq.jobs by hand. It locks key_heads
-- against claims and refreshes while it runs; run it while producers and
-- daemons are quiet, as a refresh computed before it may commit after it.
CREATE OR REPLACE FUNCTION inferq.rebuild_key_heads(p_queue text DEFAULT NULL) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
  n integer;
BEGIN
  LOCK TABLE inferq.key_heads IN EXCLUSIVE MODE;
  DELETE FROM inferq.key_heads kh WHERE p_queue IS NULL OR kh.queue = p_queue;
  INSERT INTO inferq.key_heads (queue, work_unit_key, head_id, priority, run_at)
  SELECT DISTINCT ON (j.queue, j.work_unit_key) j.queue, j.work_unit_key, j.id, j.priority, j.run_at
    FROM inferq.jobs j
   WHERE j.state = 'available' AND j.work_unit_key IS NOT NULL
     AND (p_queue IS NULL OR j.queue = p_queue)
     AND NOT EXISTS (SELECT 1 FROM inferq.active_sessions s
                      WHERE s.queue = j.queue AND s.work_unit_key = j.work_unit_key)
   ORDER BY j.queue, j.work_unit_key, j.id;
  GET DIAGNOSTICS n = ROW_COUNT;
  RETURN n;
END
$$;
