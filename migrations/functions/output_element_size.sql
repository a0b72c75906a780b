-- The element size of `p_datatype` when it is one of `p_allowed`; raises
-- otherwise, and when `p_bytes` is not a whole number of elements.
CREATE OR REPLACE FUNCTION inferq.output_element_size(p_output text, p_datatype text, p_allowed text[], p_bytes bytea)
RETURNS integer
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
DECLARE
  size integer;
BEGIN
  IF p_datatype IS NULL OR NOT p_datatype = ANY (p_allowed) THEN
    RAISE EXCEPTION 'inferq: output "%" is %, not one of %', p_output, coalesce(p_datatype, 'of no datatype'),
      array_to_string(p_allowed, ', ')
      USING ERRCODE = 'invalid_parameter_value';
  END IF;
  size := CASE p_datatype WHEN 'FP64' THEN 8 WHEN 'INT64' THEN 8 WHEN 'FP32' THEN 4 WHEN 'INT32' THEN 4
                          WHEN 'FP16' THEN 2 ELSE 1 END;
  IF p_bytes IS NOT NULL AND octet_length(p_bytes) % size <> 0 THEN
    RAISE EXCEPTION 'inferq: output "%": % bytes is not a whole number of % elements (% bytes each)',
      p_output, octet_length(p_bytes), p_datatype, size
      USING ERRCODE = 'invalid_parameter_value';
  END IF;
  RETURN size;
END
$$;
