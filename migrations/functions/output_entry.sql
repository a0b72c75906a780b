-- Output `p_output` of a result: its entry and, when binary, its bytes (the
-- slice of p_result_binary after the binary outputs before it). Raises when
-- the result has no such output, or its bytes are not all there.
CREATE OR REPLACE FUNCTION inferq.output_entry(p_result jsonb, p_result_binary bytea, p_output text,
                                    OUT entry jsonb, OUT bytes bytea)
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
DECLARE
  o    jsonb;
  at   bigint := 0;
  size bigint;
BEGIN
  IF jsonb_typeof(p_result -> 'outputs') IS DISTINCT FROM 'array' THEN
    RAISE EXCEPTION 'inferq: the result has no "outputs" array' USING ERRCODE = 'invalid_parameter_value';
  END IF;
  FOR o IN SELECT x FROM jsonb_array_elements(p_result -> 'outputs') AS t(x) LOOP
    size := (o #>> '{parameters,binary_data_size}')::bigint;
    IF o ->> 'name' = p_output THEN
      entry := o;
      IF size IS NOT NULL THEN
        IF coalesce(octet_length(p_result_binary), 0) < at + size THEN
          RAISE EXCEPTION 'inferq: output "%": binary_data_size % at byte % runs past the end of result_binary (% bytes)',
            p_output, size, at, coalesce(octet_length(p_result_binary), 0)
            USING ERRCODE = 'invalid_parameter_value';
        END IF;
        bytes := substr(p_result_binary, (at + 1)::integer, size::integer);
      ELSIF NOT o ? 'data' THEN
        RAISE EXCEPTION 'inferq: output "%" has neither data nor parameters.binary_data_size', p_output
          USING ERRCODE = 'invalid_parameter_value';
      END IF;
      RETURN;
    END IF;
    at := at + coalesce(size, 0);
  END LOOP;
  RAISE EXCEPTION 'inferq: the result has no output "%"', p_output USING ERRCODE = 'invalid_parameter_value';
END
$$;
