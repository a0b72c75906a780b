-- The IEEE 754 binary float of `p_bits` (exponent and fraction widths
-- given), exactly, as double precision: FP16, FP32 and FP64 values all are.
CREATE OR REPLACE FUNCTION inferq.float_of_bits(p_bits bigint, p_exponent_bits integer, p_fraction_bits integer)
RETURNS double precision
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
  SELECT CASE WHEN x.e = x.emax THEN CASE WHEN x.f = 0 THEN x.s * 'Infinity'::float8 ELSE 'NaN'::float8 END
              WHEN x.e = 0 THEN x.s * x.f * power(2::float8, 1 - x.bias - p_fraction_bits)
              ELSE x.s * (x.f + (1::bigint << p_fraction_bits)) * power(2::float8, x.e - x.bias - p_fraction_bits)
         END
    FROM (SELECT CASE WHEN ((p_bits >> (p_exponent_bits + p_fraction_bits)) & 1) = 1 THEN -1::float8
                      ELSE 1::float8 END AS s,
                 (p_bits >> p_fraction_bits) & ((1::bigint << p_exponent_bits) - 1) AS e,
                 p_bits & ((1::bigint << p_fraction_bits) - 1) AS f,
                 (1 << (p_exponent_bits - 1)) - 1 AS bias,
                 (1 << p_exponent_bits) - 1 AS emax) x
$$;
