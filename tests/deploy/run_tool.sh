#!/bin/sh
# run_tool.sh DEBIAN_PACKAGE COMMAND [ARGS...]
# Runs COMMAND from PATH. A missing tool fails the test (it is never skipped)
# and names the Debian package that provides it.
package=$1
shift
if ! command -v "$1" >/dev/null 2>&1; then
  echo "$1 not found: install the Debian package $package (scripts/install-deps.sh)" >&2
  exit 1
fi
exec "$@"
