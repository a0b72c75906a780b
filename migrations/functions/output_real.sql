-- The same as real[]: FP32 or FP16 data (exactly; FP64 would round, so it
-- is refused: use output_double).
CREATE OR REPLACE FUNCTION inferq.output_real(p_result jsonb, p_result_binary bytea, p_output text)
RETURNS real[]
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  o record;
BEGIN
  IF p_result IS NULL THEN
    RETURN NULL;
  END IF;
  SELECT * INTO o FROM inferq.output_entry(p_result, p_result_binary, p_output);
  PERFORM inferq.output_element_size(p_output, o.entry ->> 'datatype', '{FP32,FP16}', o.bytes);
  RETURN inferq.output_double(p_result, p_result_binary, p_output)::real[];
END
$$;
