#!/usr/bin/env bash
# The GPU check: run on a bare GPU host (x86-64, NVIDIA driver, CUDA Toolkit,
# CMake, ninja, a C++ compiler, and PyTorch 2.x in python3, whose wheel holds
# a CUDA libtorch) with no package registry. Prepare it here first:
#
#   scripts/gpu-bundle.sh        # -> .gpu-bundle.tar.xz (supervisor, PostgreSQL, libraries)
#
# then, on the GPU host, from a copy of the repository holding that file:
#
#   scripts/gpu-check.sh         # or: scripts/gpu-check.sh --cpu (a rehearsal without a GPU)
#
# It builds inferq-executor there against that libtorch (INFERQ_EXECUTOR_ONLY,
# INFERQ_CUDA=ON), starts a throwaway PostgreSQL from the bundle as an
# unprivileged user, and runs scripts/gpu_check.py, which prints one line per
# check (CUDA results equal CPU, a real device-side assert, a real CUDA OOM,
# NVML series, idle exit freeing GPU memory, e2e vs raw throughput at batch
# 1, 32 and 256) and a 'N passed, N failed, N skipped' line. Exit 0 when no
# check failed. Everything goes under $INFERQ_GPU_WORK (default
# /tmp/inferq-gpu-check), removed first. PYTHON picks the interpreter.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
device=cuda:0
quick=()
case "${1:-}" in
  --cpu) device=cpu quick=(--quick) ;;
  "") ;;
  -h | --help) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  *) echo "usage: scripts/gpu-check.sh [--cpu]" >&2; exit 2 ;;
esac
work=${INFERQ_GPU_WORK:-/tmp/inferq-gpu-check}
bundle_archive=${INFERQ_GPU_BUNDLE:-$repo/.gpu-bundle.tar.xz}
pg_user=${INFERQ_PG_USER:-inferq-pg}
port=54339
start=$SECONDS
log() { printf 'gpu-check: %s\n' "$*"; }
die() { log "$*" >&2; exit 1; }

[[ -f "$bundle_archive" ]] || die "no $bundle_archive: run scripts/gpu-bundle.sh on the build machine and bring it along"
python=${PYTHON:-}
if [[ -z "$python" ]]; then
  for p in python3 /usr/bin/python3; do
    if command -v "$p" >/dev/null && "$p" -c 'import torch' 2>/dev/null; then python=$(command -v "$p"); break; fi
  done
fi
[[ -n "$python" ]] || die "no python3 with torch found (set PYTHON)"

rm -rf "$work"
mkdir -p "$work/bundle"
tar -C "$work/bundle" -xJf "$bundle_archive"
bundle=$work/bundle
pgbin=$bundle/pg/usr/lib/postgresql/15/bin

# The torch the executor is built against is python's own.
read -r torch_version torch_cuda torch_abi torch_prefix < <("$python" -c '
import torch, torch.utils
print(torch.__version__, torch.version.cuda or "none", int(torch._C._GLIBCXX_USE_CXX11_ABI), torch.utils.cmake_prefix_path)')
log "python $python, torch $torch_version (CUDA $torch_cuda), CMake package in $torch_prefix"
# Debian's libraries (yaml-cpp, std::string in the plugin's interface) use the
# new libstdc++ ABI; a torch built with the old one cannot share them.
((torch_abi == 1)) || die "torch $torch_version was built with _GLIBCXX_USE_CXX11_ABI=0; inferq needs a torch built with the C++11 ABI (PyTorch 2.7 or later wheels)"
if [[ "$device" == cuda:* ]]; then
  [[ "$torch_cuda" != none ]] || die "torch $torch_version has no CUDA; run with --cpu for a rehearsal"
  "$python" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' || die "torch sees no GPU"
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | sed 's/^/gpu-check: gpu: /'
  cuda_flag=ON
  # NVML for the GPU series, where the driver's libraries are not on the default path.
  for d in /usr/local/nvidia/lib64 /usr/local/nvidia/lib /usr/lib/x86_64-linux-gnu; do
    [[ -e $d/libnvidia-ml.so.1 ]] && export LD_LIBRARY_PATH=$d${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH} && break
  done
else
  cuda_flag=OFF
fi

log "building inferq-executor against torch $torch_version (INFERQ_CUDA=$cuda_flag)"
export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0}
# C++17 first (what CI builds); a libtorch whose headers need C++20 gets it.
build_executor() {
  rm -rf "$work/build"
  cmake -S "$repo" -B "$work/build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DINFERQ_EXECUTOR_ONLY=ON \
    -DINFERQ_CUDA=$cuda_flag -DINFERQ_WERROR=OFF -DCMAKE_CXX_STANDARD="$1" \
    -DCMAKE_PREFIX_PATH="$torch_prefix;$bundle/dev/usr" >"$work/cmake.log" 2>&1 ||
    { tail -40 "$work/cmake.log"; die "cmake failed (log: $work/cmake.log)"; }
  cmake --build "$work/build" --target inferq-executor -j "$(nproc)" >"$work/build-c++$1.log" 2>&1
}
if ! build_executor 17; then
  log "the C++17 build failed (its end below); trying C++20"
  tail -15 "$work/build-c++17.log"
  build_executor 20 || { tail -60 "$work/build-c++20.log"; die "build failed (log: $work/build-c++20.log)"; }
fi
grep '^-- inferq-executor' "$work/cmake.log" | sed 's/^-- /gpu-check: /'
log "built in $((SECONDS - start)) s"

# PostgreSQL refuses to run as root: an unprivileged user runs it.
as_pg=()
if ((EUID == 0)); then
  id "$pg_user" >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin "$pg_user"
  chmod 755 "$work"
  mkdir -p "$work/pg" && chown "$pg_user" "$work/pg"
  as_pg=(setpriv --reuid="$pg_user" --regid="$(id -g "$pg_user")" --clear-groups)
  db_user=$pg_user
else
  mkdir -p "$work/pg"
  db_user=$(id -un)
fi
chmod -R a+rX "$bundle"
"${as_pg[@]}" env TZ=UTC "$pgbin/initdb" -D "$work/pg/data" -U "$db_user" --auth=trust -E UTF8 --locale=C.UTF-8 \
  >"$work/initdb.log" 2>&1 || { cat "$work/initdb.log"; die "initdb failed"; }
"${as_pg[@]}" env TZ=UTC "$pgbin/pg_ctl" -D "$work/pg/data" -l "$work/pg/server.log" -w \
  -o "-c listen_addresses='' -k $work/pg -p $port -c fsync=off -c synchronous_commit=off -c max_connections=200" \
  start >/dev/null || { cat "$work/pg/server.log"; die "PostgreSQL did not start"; }
trap '"${as_pg[@]}" "$pgbin/pg_ctl" -D "$work/pg/data" -m fast stop >/dev/null 2>&1 || true' EXIT
dsn="postgresql:///inferq?host=$work/pg&port=$port&user=$db_user"
"$pgbin/psql" -X -q -d "postgresql:///postgres?host=$work/pg&port=$port&user=$db_user" -c 'CREATE DATABASE inferq'
INFERQ_DATABASE_URL=$dsn "$bundle/bin/inferq" migrate >"$work/migrate.log" 2>&1 ||
  { cat "$work/migrate.log"; die "inferq migrate failed"; }
log "PostgreSQL 15 from the bundle is up; schema migrated ($((SECONDS - start)) s)"

rc=0
"$python" "$repo/scripts/gpu_check.py" --inferq "$bundle/bin/inferq" --executor "$work/build/src/inferq-executor" \
  --psql "$pgbin/psql" --dsn "$dsn" --work "$work" --repo "$repo" --device "$device" "${quick[@]}" || rc=$?
log "done in $((SECONDS - start)) s"
exit $rc
