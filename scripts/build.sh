#!/usr/bin/env bash
# Configures (Ninja, RelWithDebInfo) and builds everything.
#   scripts/build.sh [BUILD_DIR] [extra cmake args...]
# BUILD_DIR defaults to build/ in the repository; a relative one is taken
# from the current directory. Extra arguments go to the configure step,
# e.g. scripts/build.sh build-asan -DINFERQ_SANITIZE=address
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build_dir=${1:-$repo/build}
if (($# > 0)); then shift; fi

log() { printf 'build: %s\n' "$*"; }

if ! command -v cmake >/dev/null || ! command -v ninja >/dev/null; then
  log "cmake and ninja are needed: run scripts/install-deps.sh first" >&2
  exit 1
fi

# A tree configured with another generator cannot be reused by Ninja.
if [[ -f "$build_dir/CMakeCache.txt" ]] && ! grep -q '^CMAKE_GENERATOR:INTERNAL=Ninja$' "$build_dir/CMakeCache.txt"; then
  log "$build_dir was configured with another generator: starting it afresh"
  rm -rf "$build_dir"
fi

log "configuring $build_dir"
cmake -S "$repo" -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo "$@"
log "building $build_dir"
cmake --build "$build_dir"
log "built $build_dir"
