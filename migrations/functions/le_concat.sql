-- The elements' big-endian bytes (what the *send functions write), in
-- order, as one little-endian bytea; a NULL element raises (tensor data has
-- none).
CREATE OR REPLACE FUNCTION inferq.le_concat(p_be bytea[]) RETURNS bytea
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
BEGIN
  IF array_position(p_be, NULL) IS NOT NULL THEN
    RAISE EXCEPTION 'inferq.tensor_bytes: element % of the array is NULL; tensor data has no NULL',
      array_position(p_be, NULL)
      USING ERRCODE = 'null_value_not_allowed';
  END IF;
  RETURN (SELECT coalesce(string_agg(
                   CASE octet_length(t.b)
                     WHEN 4 THEN substr(t.b, 4, 1) || substr(t.b, 3, 1) || substr(t.b, 2, 1) || substr(t.b, 1, 1)
                     ELSE substr(t.b, 8, 1) || substr(t.b, 7, 1) || substr(t.b, 6, 1) || substr(t.b, 5, 1)
                       || substr(t.b, 4, 1) || substr(t.b, 3, 1) || substr(t.b, 2, 1) || substr(t.b, 1, 1)
                   END, ''::bytea ORDER BY t.n), ''::bytea)
            FROM unnest(p_be) WITH ORDINALITY AS t(b, n));
END
$$;
