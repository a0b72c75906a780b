-- Output `p_output` of a job's result as a 1-D array of double precision:
-- FP64, FP32 or FP16 data, from JSON ("data", "NaN" and "Infinity" strings
-- included) or from result_binary. NULL for a NULL result (a job with none).
CREATE OR REPLACE FUNCTION inferq.output_double(p_result jsonb, p_result_binary bytea, p_output text)
RETURNS double precision[]
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  o    record;
  size integer;
BEGIN
  IF p_result IS NULL THEN
    RETURN NULL;
  END IF;
  SELECT * INTO o FROM inferq.output_entry(p_result, p_result_binary, p_output);
  size := inferq.output_element_size(p_output, o.entry ->> 'datatype', '{FP64,FP32,FP16}', o.bytes);
  IF o.bytes IS NULL THEN
    RETURN ARRAY(SELECT (t.v #>> '{}')::float8
                   FROM jsonb_array_elements(o.entry -> 'data') WITH ORDINALITY AS t(v, n) ORDER BY t.n);
  END IF;
  RETURN ARRAY(SELECT inferq.float_of_bits(inferq.le_integer(o.bytes, i * size, size),
                                           CASE size WHEN 8 THEN 11 WHEN 4 THEN 8 ELSE 5 END,
                                           CASE size WHEN 8 THEN 52 WHEN 4 THEN 23 ELSE 10 END)
                 FROM generate_series(0, octet_length(o.bytes) / size - 1) AS i ORDER BY i);
END
$$;
