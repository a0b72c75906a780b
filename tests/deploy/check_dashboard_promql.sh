#!/bin/sh
# check_dashboard_promql.sh SOURCE_DIR WORK_DIR
# promtool parses every expression of deploy/grafana/inferq.json (written as
# recording rules by check_deploy.py promql). Missing tools fail the test.
set -eu
here=$(dirname "$0")
for tool in python3:python3 promtool:prometheus; do
  if ! command -v "${tool%%:*}" >/dev/null 2>&1; then
    echo "${tool%%:*} not found: install the Debian package ${tool#*:} (scripts/install-deps.sh)" >&2
    exit 1
  fi
done
mkdir -p "$2"
python3 "$here/check_deploy.py" promql "$1" >"$2/dashboard-promql.yml"
promtool check rules "$2/dashboard-promql.yml"
