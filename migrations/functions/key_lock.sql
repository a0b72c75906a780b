CREATE OR REPLACE FUNCTION inferq.key_lock(p_queue text, p_key text) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT hashtext(p_queue || E'\x1f' || p_key) $$;
