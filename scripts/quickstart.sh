#!/usr/bin/env bash
# The quick start: from a clean clone on Debian 12, installs the packages,
# builds, starts a private PostgreSQL (unless INFERQ_DATABASE_URL is set),
# writes the example models (.inferq/models), migrates, runs the daemon with
# config/quickstart.yaml, enqueues a few jobs (builtin and model queues)
# with plain SQL, waits for them, shows the jobs table and `inferq status`,
# and stops the daemon with SIGTERM. Files go to .inferq/ (daemon.log, and
# the cluster in .inferq/pg).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
state_dir=$repo/.inferq
config=config/quickstart.yaml
inferq=build/src/inferq
daemon_log=$state_dir/daemon.log
wait_seconds=20
stop_seconds=45 # above the default shutdown_grace (30s)

say() { printf '\n== %s\n' "$*"; }
die() {
  printf 'quickstart: %s\n' "$*" >&2
  exit 1
}

say "installing packages"
scripts/install-deps.sh

say "building"
scripts/build.sh "$repo/build"
[[ -x "$inferq" ]] || die "$inferq was not built"

say "example models (inferq-executor make-models .inferq/models)"
build/src/inferq-executor make-models "$state_dir/models"

say "database"
if [[ -n "${INFERQ_DATABASE_URL:-}" ]]; then
  echo "using INFERQ_DATABASE_URL=$INFERQ_DATABASE_URL"
  started_cluster=false
else
  scripts/pg-local.sh start
  INFERQ_DATABASE_URL=$(scripts/pg-local.sh url)
  export INFERQ_DATABASE_URL
  started_cluster=true
fi
sql() { psql -X -q -v ON_ERROR_STOP=1 -P pager=off -d "$INFERQ_DATABASE_URL" "$@"; }

say "inferq migrate"
"$inferq" migrate --config "$config"

say "inferq run (in the background; log: ${daemon_log#"$repo"/})"
mkdir -p "$state_dir"
"$inferq" run --config "$config" >"$daemon_log" 2>&1 &
daemon_pid=$!
echo "daemon pid $daemon_pid"

daemon_running() { kill -0 "$daemon_pid" 2>/dev/null; }

# SIGTERM, then wait (bounded) for the graceful shutdown. Sets daemon_status.
daemon_status=
stop_daemon() {
  [[ -n "$daemon_pid" ]] || return 0
  kill -TERM "$daemon_pid" 2>/dev/null || true
  local waited=0
  while daemon_running && ((waited < stop_seconds * 10)); do
    sleep 0.1
    waited=$((waited + 1))
  done
  if daemon_running; then
    echo "the daemon did not stop within ${stop_seconds}s: SIGKILL" >&2
    kill -KILL "$daemon_pid" 2>/dev/null || true
  fi
  daemon_status=0
  wait "$daemon_pid" || daemon_status=$?
  daemon_pid=
}
trap stop_daemon EXIT

say "enqueueing jobs with SQL (inferq.enqueue)"
ids=$(sql -At <<'SQL'
SELECT inferq.enqueue('echo', '{"hello": "world"}');
SELECT inferq.enqueue('sleep', '{"seconds": 0.2}') FROM generate_series(1, 3);
-- Jobs that share a work_unit_key run one at a time, in id order.
SELECT inferq.enqueue('echo', '{"order": 42, "step": 1}', work_unit_key => 'order-42');
SELECT inferq.enqueue('echo', '{"order": 42, "step": 2}', work_unit_key => 'order-42');
-- Fails permanently: no retry, the job ends dead with the error.
SELECT inferq.enqueue('fail', '{"permanent": true, "message": "quickstart: this job fails on purpose"}');
-- Model jobs: Open Inference Protocol tensors; each unit runs as one batch.
SELECT inferq.enqueue('mlp', jsonb_build_object('inputs', jsonb_build_array(jsonb_build_object(
         'name', 'x', 'datatype', 'FP32', 'shape', jsonb_build_array(384),
         'data', (SELECT jsonb_agg(round(sin(i * k)::numeric, 4)) FROM generate_series(1, 384) i)))))
  FROM generate_series(1, 3) k;
SELECT inferq.enqueue('encoder', '{"inputs": [{"name": "input_ids", "datatype": "INT64", "shape": [5], "data": [101, 2054, 2003, 1037, 102]}]}');
SELECT inferq.enqueue('encoder', '{"inputs": [{"name": "input_ids", "datatype": "INT64", "shape": [1, 3], "data": [101, 7592, 102]}]}');
SQL
)
first_id=${ids%%$'\n'*}
[[ "$first_id" =~ ^[0-9]+$ ]] || die "inferq.enqueue returned no job id"
echo "enqueued 12 jobs (ids from $first_id)"

say "waiting for the daemon to finish them (at most ${wait_seconds}s)"
finished=false
for ((i = 0; i < wait_seconds * 5; i++)); do
  pending=$(sql -At -c "SELECT count(*) FROM inferq.jobs WHERE id >= $first_id AND state IN ('available', 'running')")
  if [[ "$pending" == 0 ]]; then
    finished=true
    break
  fi
  if ! daemon_running; then
    tail -n 30 "$daemon_log" >&2
    die "the daemon exited early: see $daemon_log"
  fi
  sleep 0.2
done
$finished && echo "all done" || echo "still $pending job(s) pending after ${wait_seconds}s" >&2

say "SELECT id, queue, state, attempts, left(result::text, 90) AS result, last_error FROM inferq.jobs"
sql -c "SELECT id, queue, state, attempts, left(result::text, 90) AS result, last_error FROM inferq.jobs WHERE id >= $first_id ORDER BY id"

say "checking that each job ended as it should"
# The fail job ends dead with its own message; every other job succeeds, and
# each model job's result holds its output tensor.
wrong=$(sql -At <<SQL
SELECT id || ' ' || queue || ': ' || state || coalesce(' (' || last_error || ')', '')
  FROM inferq.jobs
 WHERE id >= $first_id
   AND NOT CASE queue
         WHEN 'fail' THEN state = 'dead' AND last_error LIKE '%quickstart: this job fails on purpose%'
         WHEN 'mlp' THEN state = 'succeeded' AND result->'outputs'->0->>'name' = 'y'
         WHEN 'encoder' THEN state = 'succeeded' AND result->'outputs'->0->>'name' = 'embedding'
         ELSE state = 'succeeded'
       END
 ORDER BY id
SQL
)
count=$(sql -At -c "SELECT count(*) FROM inferq.jobs WHERE id >= $first_id")
jobs_ok=false
if [[ -z "$wrong" && "$count" == 12 ]]; then
  jobs_ok=true
  echo "all 12 jobs ended as expected: 11 succeeded, the fail job dead"
else
  echo "jobs that did not end as expected (of $count):" >&2
  printf '  %s\n' "$wrong" >&2
fi

say "inferq status"
"$inferq" status --config "$config"

say "stopping the daemon (SIGTERM)"
stop_daemon
trap - EXIT
if [[ "$daemon_status" == 0 ]]; then
  echo "the daemon shut down cleanly (exit 0)"
else
  echo "the daemon exited with status $daemon_status: see $daemon_log" >&2
fi

say "run it again by hand"
cat <<EOF_HINT
  export INFERQ_DATABASE_URL='$INFERQ_DATABASE_URL'
  $inferq run --config $config          # Ctrl-C or SIGTERM stops it
  psql "\$INFERQ_DATABASE_URL" -c "SELECT inferq.enqueue('echo', '{\"hi\": 1}')"
  $inferq status --config $config
EOF_HINT
if $started_cluster; then
  echo "  scripts/pg-local.sh stop              # stops the private PostgreSQL"
fi

$finished && $jobs_ok && [[ "$daemon_status" == 0 ]]
