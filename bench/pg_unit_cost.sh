#!/usr/bin/env bash
# PostgreSQL's CPU per work unit: what the database itself spends to claim
# one unit and complete it, with inferq's own functions, and the floor of a
# bare claim and a bare UPDATE. A model bench run at batch 1 pays this for
# every job, on the cores its executors need when the server shares the host.
#
#   bench/pg_unit_cost.sh [SECONDS]     (default 8 s per measurement)
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
