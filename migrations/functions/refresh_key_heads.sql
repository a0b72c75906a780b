CREATE OR REPLACE FUNCTION inferq.refresh_key_heads(p_queues text[], p_keys text[]) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
  FOR i IN 1 .. coalesce(array_length(p_keys, 1), 0) LOOP
    PERFORM inferq.refresh_key_head(p_queues[i], p_keys[i]);
  END LOOP;
END
$$;
