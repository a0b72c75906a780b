#!/usr/bin/env bash
# The systemd unit, checked the way systemd itself reads it (systemd-analyze
# works offline, without systemd as PID 1):
#   - `systemd-analyze security --offline=true` scores 2.0 or better;
#   - `systemd-analyze verify` is clean on the unit as `cmake --install`
#     installs it into a scratch root, next to the binaries it starts (and
#     fails once the ExecStart binary is not executable: the check can fail);
#   - TimeoutStopSec leaves the daemon its shutdown_grace plus the time to
#     write results, and WatchdogSec is well above the poll interval.
# Usage: check_unit.sh SOURCE_DIR BUILD_DIR UNIT_DIR
set -euo pipefail

src=$1 build=$2 unitdir=$3
unit=$src/systemd/inferq.service
fail() { printf 'check_unit: FAIL: %s\n' "$*" >&2; exit 1; }
say() { printf 'check_unit: %s\n' "$*"; }

command -v systemd-analyze >/dev/null || fail "systemd-analyze not found (apt-get install systemd)"

# 1. Exposure score.
report=$(systemd-analyze security --offline=true --no-pager "$unit" 2>&1) || true
score=$(printf '%s\n' "$report" | sed -n 's/.*Overall exposure level for inferq.service: \([0-9.]*\).*/\1/p')
[[ -n "$score" ]] || fail "no exposure level in: $report"
say "systemd-analyze security --offline=true: exposure $score"
awk -v s="$score" 'BEGIN { exit !(s <= 2.0) }' || fail "exposure $score is above 2.0:
$report"
systemd-analyze security --offline=true --threshold=20 --no-pager "$unit" >/dev/null 2>&1 ||
  fail "systemd-analyze security --threshold=20 failed"

# 2. verify, against an installed tree.
root=$(mktemp -d "${INFERQ_TEST_TMP:-/tmp}/inferq-unit-XXXXXX")
trap 'rm -rf "$root"' EXIT
DESTDIR=$root cmake --install "$build" >"$root.install.log" 2>&1 || { cat "$root.install.log"; rm -f "$root.install.log"; fail "cmake --install failed"; }
rm -f "$root.install.log"
installed=$root$unitdir/inferq.service
[[ -f "$installed" ]] || fail "the unit was not installed at $unitdir"
exec_start=$(sed -n 's/^ExecStart=\([^ ]*\).*/\1/p' "$installed")
[[ -x "$root$exec_start" ]] || fail "ExecStart=$exec_start is not installed"
# The units inferq.service pulls in (sysinit.target, ...) come from the host.
mkdir -p "$root/lib/systemd/system"
cp -a --no-clobber /lib/systemd/system/. "$root/lib/systemd/system/"
# So does the shell that ExecReload= runs.
mkdir -p "$root/bin"
cp -L /bin/sh "$root/bin/sh"
out=$(systemd-analyze verify --root="$root" inferq.service 2>&1) || fail "systemd-analyze verify failed: $out"
[[ -z "$out" ]] || fail "systemd-analyze verify is not clean: $out"
say "systemd-analyze verify: clean (ExecStart=$exec_start)"
chmod a-x "$root$exec_start"
if out=$(systemd-analyze verify --root="$root" inferq.service 2>&1); then
  fail "verify passed with a non-executable ExecStart, so it checks nothing: $out"
fi
[[ "$out" == *"is not executable"* ]] || fail "unexpected verify output: $out"

# 3. Timeouts against the daemon's defaults (config/inferq.example.yaml).
usec() { systemd-analyze timespan "$1" | sed -n 's/^ *μs: //p'; }
yaml_value() { sed -n "s/^ *$1: *\([^ #]*\).*/\1/p" "$src/config/inferq.example.yaml" | head -1; }
grace=$(usec "$(yaml_value shutdown_grace)")
poll=$(usec "$(yaml_value poll_interval)")
stop=$(usec "$(sed -n 's/^TimeoutStopSec=//p' "$unit")")
watchdog=$(usec "$(sed -n 's/^WatchdogSec=//p' "$unit")")
[[ -n "$grace" && -n "$poll" && -n "$stop" && -n "$watchdog" ]] || fail "cannot read the timeouts"
# The daemon needs shutdown_grace, then up to 10s for its last writes.
((stop >= grace + 15000000)) || fail "TimeoutStopSec ($stop us) must exceed shutdown_grace ($grace us) + 15s"
# Ticks are poll_interval apart, plus statements bounded by 30s each.
((watchdog >= poll + 60000000)) || fail "WatchdogSec ($watchdog us) must exceed poll_interval + 60s"
grep -qx 'Type=notify' "$unit" || fail "Type=notify missing"
grep -qx 'NotifyAccess=main' "$unit" || fail "NotifyAccess=main missing"
say "TimeoutStopSec $((stop / 1000000))s > shutdown_grace $((grace / 1000000))s + 15s; WatchdogSec $((watchdog / 1000000))s"
say "ok"
