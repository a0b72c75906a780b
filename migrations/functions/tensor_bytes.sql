-- The array's elements as raw little-endian bytes, row-major (a
-- multidimensional array's elements in storage order): FP32 for real[], FP64
-- for double precision[], INT64 for bigint[], INT32 for integer[]. NULL for a
-- NULL array; a NULL element raises.
CREATE OR REPLACE FUNCTION inferq.tensor_bytes(p_data real[]) RETURNS bytea
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
  SELECT inferq.le_concat(ARRAY(SELECT float4send(t.x) FROM unnest(p_data) WITH ORDINALITY AS t(x, n) ORDER BY t.n))
$$;

CREATE OR REPLACE FUNCTION inferq.tensor_bytes(p_data double precision[]) RETURNS bytea
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
  SELECT inferq.le_concat(ARRAY(SELECT float8send(t.x) FROM unnest(p_data) WITH ORDINALITY AS t(x, n) ORDER BY t.n))
$$;

CREATE OR REPLACE FUNCTION inferq.tensor_bytes(p_data bigint[]) RETURNS bytea
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
  SELECT inferq.le_concat(ARRAY(SELECT int8send(t.x) FROM unnest(p_data) WITH ORDINALITY AS t(x, n) ORDER BY t.n))
$$;

CREATE OR REPLACE FUNCTION inferq.tensor_bytes(p_data integer[]) RETURNS bytea
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
  SELECT inferq.le_concat(ARRAY(SELECT int4send(t.x) FROM unnest(p_data) WITH ORDINALITY AS t(x, n) ORDER BY t.n))
$$;
