#!/usr/bin/env bash
# The whole test suite from a clean clone: installs the Debian packages,
# builds build/, then runs ctest. Extra arguments go to ctest, e.g.
#   scripts/test.sh -L unit        # only the fast tests
#   scripts/test.sh -R claim       # tests whose name matches
# The pg and integration tests start their own throwaway PostgreSQL clusters.
# INFERQ_BUILD_DIR overrides the build directory (default build/).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build_dir=${INFERQ_BUILD_DIR:-$repo/build}

"$repo/scripts/install-deps.sh"
"$repo/scripts/build.sh" "$build_dir"
printf 'test: running ctest in %s\n' "$build_dir"
ctest --test-dir "$build_dir" --output-on-failure -j2 "$@"
