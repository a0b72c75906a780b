-- Grants role p_role exactly what a producer needs: inferq.enqueue,
-- inferq.cancel, the tensor helpers and inferq.my_jobs (LISTEN needs no
-- grant). Run it as the owner of schema inferq (the role that ran migrate) or
-- a superuser; nobody else may execute it. privileges.sql calls it again for
-- every producer after each migrate.
CREATE OR REPLACE FUNCTION inferq.grant_producer(p_role regrole) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  IF p_role IS NULL THEN
    RAISE EXCEPTION 'inferq.grant_producer: role must not be NULL'
      USING ERRCODE = 'invalid_parameter_value';
  END IF;
  -- regrole's text is the quoted name.
  EXECUTE format('GRANT USAGE ON SCHEMA inferq TO %s', p_role);
  EXECUTE format('GRANT EXECUTE ON FUNCTION inferq.enqueue(text, jsonb, text, integer, timestamptz, integer, bytea, text),'
                 ' inferq.cancel(bigint),'
                 ' inferq.tensor_bytes(real[]), inferq.tensor_bytes(double precision[]),'
                 ' inferq.tensor_bytes(bigint[]), inferq.tensor_bytes(integer[]),'
                 ' inferq.output_real(jsonb, bytea, text), inferq.output_double(jsonb, bytea, text),'
                 ' inferq.output_bigint(jsonb, bytea, text) TO %s', p_role);
  EXECUTE format('GRANT SELECT ON inferq.my_jobs TO %s', p_role);
END
$$;
