#!/usr/bin/env bash
# PostgreSQL's CPU per work unit: what the database itself spends to claim
# one unit and complete it, with inferq's own functions, and the floor of a
# bare claim and a bare UPDATE. A model bench run at batch 1 pays this for
# every job, on the cores its executors need when the server shares the host.
#
#   bench/pg_unit_cost.sh [SECONDS]     (default 8 s per measurement)
#
# A second table measures units of 256 jobs (issue 21's host-cost bench
# shape) by payload and result size: a 64-id OIP payload (889 bytes as jsonb)
# or {"i": n}, a 32-float OIP result or {"i": n}, and the table at fillfactor
# 100 or 50; each on a fresh backlog of 51,200 jobs after a CHECKPOINT, with
# PostgreSQL's CPU and WAL bytes per job.
#
# Starts a throwaway cluster (scripts/pg-local.sh, port $INFERQ_PG_PORT or
# 54339, fsync and synchronous_commit on as by default), migrates it with
# build/src/inferq, fills it with the model bench's jobs (64 INT64 tokens)
# and result (384 floats, 4.7 KB of JSON), and runs pgbench with one client.
# The CPU is that of the cluster's postmaster and all its processes (from
# /proc: user + system, exited backends included), over the transactions
# pgbench ran.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
seconds=${1:-8}
pg_bin=${INFERQ_PG_BIN:-/usr/lib/postgresql/15/bin}
export INFERQ_PG_PORT=${INFERQ_PG_PORT:-54339}
inferq=$repo/build/src/inferq
[[ -x "$inferq" ]] || { echo "pg_unit_cost: build first (scripts/build.sh build)" >&2; exit 1; }

dir=$(mktemp -d /tmp/inferq-pg-unit-cost.XXXXXX)
scripts=$dir/scripts
cleanup() { "$repo/scripts/pg-local.sh" stop "$dir/pg" >/dev/null 2>&1 || true; rm -rf "$dir"; }
trap cleanup EXIT
mkdir -p "$scripts"
chmod 755 "$dir"

url=$("$repo/scripts/pg-local.sh" start "$dir/pg" | sed -n 's/^pg-local: ready: //p')
INFERQ_DATABASE_URL=$url "$inferq" migrate >/dev/null
psql -qX "$url" >/dev/null <<'SQL'
INSERT INTO inferq.workers (name, host, pid, version, queues) VALUES ('bench', 'bench', 1, 'bench', '{q}');
SELECT inferq.enqueue('q', jsonb_build_object('inputs', jsonb_build_array(jsonb_build_object(
         'name', 'input_ids', 'datatype', 'INT64', 'shape', jsonb_build_array(64),
         'data', (SELECT jsonb_agg(1 + (g * 131 + i * 71) % 8000 ORDER BY i) FROM generate_series(0, 63) i)))))
  FROM generate_series(1, 100000) g;
CREATE TABLE bench_result AS
  SELECT jsonb_build_object('outputs', jsonb_build_array(jsonb_build_object(
           'name', 'embedding', 'datatype', 'FP32', 'shape', jsonb_build_array(384),
           'data', (SELECT jsonb_agg(sin(i)::real) FROM generate_series(1, 384) i)))) AS r;
VACUUM ANALYZE;
SQL

claim="SELECT lease_id, job_id FROM inferq.claim('q', (SELECT min(id) FROM inferq.workers), 1, 3) \\gset"
printf '%s\n%s\n' "$claim" \
  "SELECT queue, outcome, jobs FROM inferq.complete_outcomes(jsonb_build_array(jsonb_build_object('lease', :lease_id, 'id', :job_id, 'ok', true, 'result', (SELECT r FROM bench_result))), 'bench:1');" \
  >"$scripts/claim_complete.sql"
printf '%s\n%s\n' "$claim" \
  "WITH d AS (UPDATE inferq.jobs SET state = 'succeeded', result = (SELECT r FROM bench_result), lease_id = NULL, finished_at = now() WHERE id = :job_id AND lease_id = :lease_id RETURNING id), s AS (DELETE FROM inferq.active_sessions WHERE id = :lease_id) SELECT count(*) FROM d;" \
  >"$scripts/claim_bare_update.sql"
printf '%s\n' "$claim" >"$scripts/claim.sql"
printf 'SELECT 1;\n' >"$scripts/select_1.sql"

postmaster=$(head -1 "$dir/pg/data/postmaster.pid")
# Clock ticks of the postmaster (its own and its exited children's) and of its
# live children.
cluster_ticks() {
  local total=0 pid
  for pid in "$postmaster" $(pgrep -P "$postmaster"); do
    total=$((total + $(awk '{print $14 + $15 + $16 + $17}' "/proc/$pid/stat" 2>/dev/null || echo 0)))
  done
  echo "$total"
}
hz=$(getconf CLK_TCK)

measure() {
  local name=$1 what=$2 before after out n
  before=$(cluster_ticks)
  out=$("$pg_bin/pgbench" -n -c 1 -T "$seconds" -f "$scripts/$name.sql" "$url" 2>&1)
  after=$(cluster_ticks)
  n=$(awk '/number of transactions actually processed/ {split($NF, a, "/"); print a[1]}' <<<"$out")
  awk -v t=$((after - before)) -v hz="$hz" -v n="$n" -v what="$what" \
    'BEGIN { printf "%-46s %7d units  %6.3f ms of PostgreSQL CPU per unit\n", what, n, 1000 * t / hz / n }'
}

echo "PostgreSQL CPU per unit of one job, one client, ${seconds} s each ($(nproc) cores)"
measure claim_complete "inferq.claim + inferq.complete_outcomes"
measure claim_bare_update "inferq.claim + a bare UPDATE and DELETE"
measure claim "inferq.claim alone"
measure select_1 "SELECT 1 (a round trip)"

# Units of 256 by row size. The completion document is built in SQL, so its
# parsing (the daemon sends it as text) is not in these figures.
big_payload="jsonb_build_object('inputs', jsonb_build_array(jsonb_build_object('name', 'ids', 'datatype', 'INT64',
  'shape', jsonb_build_array(64), 'data', (SELECT jsonb_agg((g * 131 + i * 71) % 1000 ORDER BY i) FROM generate_series(0, 63) i))))"
psql -qX "$url" >/dev/null <<'SQL'
CREATE TABLE result_big AS SELECT jsonb_build_object('model_name', 'embed', 'outputs', jsonb_build_array(jsonb_build_object(
    'name', 'e', 'datatype', 'FP32', 'shape', jsonb_build_array(32),
    'data', (SELECT jsonb_agg(round(sin(k)::numeric, 9)) FROM generate_series(1, 32) k)))) AS r;
CREATE TABLE result_small AS SELECT '{"i": 12345}'::jsonb AS r;
SQL
measure_rows() {
  local what=$1 payload=$2 result=$3 fillfactor=$4 n=51200 before after wal0 wal
  psql -qX "$url" >/dev/null <<SQL
TRUNCATE inferq.jobs, inferq.active_sessions;
ALTER TABLE inferq.jobs SET (fillfactor = $fillfactor);
SELECT count(inferq.enqueue('q', $payload)) FROM generate_series(1, $n) g;
VACUUM ANALYZE inferq.jobs;
CHECKPOINT;
SQL
  printf '%s\n%s\n' \
    "SELECT array_agg(job_id) AS ids, min(lease_id) AS lease FROM inferq.claim('q', (SELECT min(id) FROM inferq.workers), 256, 3) \\gset" \
    "SELECT count(*) FROM inferq.complete_outcomes((SELECT jsonb_agg(jsonb_build_object('lease', :lease, 'id', i, 'ok', true, 'result', r.r)) FROM unnest(':ids'::bigint[]) i, $result r), 'bench:1');" \
    >"$scripts/unit_256.sql"
  wal0=$(psql -qAtX "$url" -c "SELECT pg_current_wal_lsn()")
  before=$(cluster_ticks)
  "$pg_bin/pgbench" -n -c 1 -t $((n / 256)) -f "$scripts/unit_256.sql" "$url" >/dev/null 2>&1
  after=$(cluster_ticks)
  wal=$(psql -qAtX "$url" -c "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '$wal0')")
  awk -v t=$((after - before)) -v hz="$hz" -v n="$n" -v w="$wal" -v what="$what" \
    'BEGIN { printf "%-46s %6.1f us of PostgreSQL CPU per job  %6.0f WAL bytes per job\n", what, 1e6 * t / hz / n, w / n }'
}

echo
echo "Units of 256 jobs (claim + complete_outcomes), by row size, one client"
measure_rows "64-id payload, 32-float result" "$big_payload" result_big 100
measure_rows "64-id payload, 32-float result, fillfactor 50" "$big_payload" result_big 50
measure_rows "64-id payload, {\"i\": n} result" "$big_payload" result_small 100
measure_rows "{\"i\": n} payload, 32-float result" "jsonb_build_object('i', g)" result_big 100
measure_rows "{\"i\": n} payload, {\"i\": n} result" "jsonb_build_object('i', g)" result_small 100
