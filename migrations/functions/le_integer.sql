-- The little-endian integer of `p_width` bytes at byte `p_at` (from 0),
-- unsigned below 8 bytes, two's complement at 8.
CREATE OR REPLACE FUNCTION inferq.le_integer(p_bytes bytea, p_at integer, p_width integer) RETURNS bigint
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
  SELECT CASE p_width
    WHEN 1 THEN get_byte(p_bytes, p_at)::bigint
    WHEN 2 THEN get_byte(p_bytes, p_at)::bigint | (get_byte(p_bytes, p_at + 1)::bigint << 8)
    WHEN 4 THEN get_byte(p_bytes, p_at)::bigint | (get_byte(p_bytes, p_at + 1)::bigint << 8)
              | (get_byte(p_bytes, p_at + 2)::bigint << 16) | (get_byte(p_bytes, p_at + 3)::bigint << 24)
    WHEN 8 THEN get_byte(p_bytes, p_at)::bigint | (get_byte(p_bytes, p_at + 1)::bigint << 8)
              | (get_byte(p_bytes, p_at + 2)::bigint << 16) | (get_byte(p_bytes, p_at + 3)::bigint << 24)
              | (get_byte(p_bytes, p_at + 4)::bigint << 32) | (get_byte(p_bytes, p_at + 5)::bigint << 40)
              | (get_byte(p_bytes, p_at + 6)::bigint << 48) | (get_byte(p_bytes, p_at + 7)::bigint << 56)
  END
$$;
