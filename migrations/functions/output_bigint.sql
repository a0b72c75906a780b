-- The same as bigint[]: INT64, INT32, INT8, UINT8 or BOOL (0 and 1) data.
CREATE OR REPLACE FUNCTION inferq.output_bigint(p_result jsonb, p_result_binary bytea, p_output text)
RETURNS bigint[]
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  o    record;
  size integer;
BEGIN
  IF p_result IS NULL THEN
    RETURN NULL;
  END IF;
  SELECT * INTO o FROM inferq.output_entry(p_result, p_result_binary, p_output);
  size := inferq.output_element_size(p_output, o.entry ->> 'datatype', '{INT64,INT32,INT8,UINT8,BOOL}', o.bytes);
  IF o.bytes IS NULL THEN
    RETURN ARRAY(SELECT CASE jsonb_typeof(t.v) WHEN 'boolean' THEN (t.v::text::boolean)::integer::bigint
                                               ELSE (t.v #>> '{}')::bigint END
                   FROM jsonb_array_elements(o.entry -> 'data') WITH ORDINALITY AS t(v, n) ORDER BY t.n);
  END IF;
  RETURN ARRAY(SELECT CASE WHEN o.entry ->> 'datatype' = 'INT32' AND x.u >= 2147483648 THEN x.u - 4294967296
                           WHEN o.entry ->> 'datatype' = 'INT8' AND x.u >= 128 THEN x.u - 256
                           ELSE x.u END
                 FROM (SELECT i, inferq.le_integer(o.bytes, i * size, size) AS u
                         FROM generate_series(0, octet_length(o.bytes) / size - 1) AS i) x
                ORDER BY x.i);
END
$$;
