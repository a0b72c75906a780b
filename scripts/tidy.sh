#!/usr/bin/env bash
# clang-tidy on the C++ files changed since a base commit, every warning an
# error: the pinned clang-tidy-14 (Debian 12's; another version has other
# checks and other findings) with the checks in .clang-tidy.
#   scripts/tidy.sh              # the files changed since .ci/tidy-base
#   scripts/tidy.sh BASE         # the files changed since BASE (HEAD~3, main...)
#   scripts/tidy.sh --all        # every file (before moving .ci/tidy-base)
#   scripts/tidy.sh -p DIR ...   # compile commands from DIR (default build/)
# Environment: INFERQ_TIDY_BUILD_DIR (as -p), INFERQ_TIDY_JOBS (files checked
# at once; default: the number of CPUs).
#
# The build tree only needs configuring (scripts/build.sh, or cmake -S . -B
# build -G Ninja): its compile_commands.json gives each file's flags, and no
# file needs a generated header. GCC-only warning flags in it (a sanitizer
# tree's -Wno-maybe-uninitialized) are ignored. A sanitizer tree works too;
# CI uses build-asan/.
#
# Which files: the .cpp files under src/, tests/ and bench/ that are in
# compile_commands.json and were added, copied, modified or renamed between
# BASE and HEAD (git diff BASE...HEAD: since their merge base) or since HEAD in
# the working tree, and for each such header the .cpp of the same name beside
# it. Warnings in src/ headers that a checked file includes count too
# (.clang-tidy's HeaderFilterRegex).
#
# Why .ci/tidy-base is the default: CI runs on a clean clone of main after each
# batch of commits, with no pull-request branch to diff against, and HEAD~N
# would skip files whenever a batch has more than N commits. Diffing against
# a fixed commit checks every file changed since, however many commits a
# batch has. At .ci/tidy-base's commit plus the one that added this script,
# every src/ file is clean; tests/ and bench/ files are not yet (about 60
# findings, and 6 test files clang 14 cannot compile: lambdas that capture
# structured bindings), so the first change to one of them cleans that file.
# It needs the clone's history back to that commit (not a shallow clone). The
# list grows as main moves on; when the check gets slow, or after .clang-tidy
# turns a check on, run scripts/tidy.sh --all (about 12 minutes on 2 CPUs),
# fix what it reports, commit, and write that commit's id into .ci/tidy-base.
set -euo pipefail

caller=$PWD
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
tool=clang-tidy-14
build=${INFERQ_TIDY_BUILD_DIR:-$repo/build}
jobs=${INFERQ_TIDY_JOBS:-$(nproc)}
base=
all=false
while (($# > 0)); do
  case $1 in
    -p) build=${2:?tidy: -p needs a build directory}; shift 2 ;;
    --all) all=true; shift ;;
    -h | --help) sed -n '2,10p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "tidy: unknown option $1 (see scripts/tidy.sh --help)" >&2; exit 2 ;;
    *) [[ -z "$base" ]] || { echo "tidy: one BASE only" >&2; exit 2; }; base=$1; shift ;;
  esac
done

command -v "$tool" >/dev/null || { echo "tidy: $tool is not installed (scripts/install-deps.sh)" >&2; exit 1; }
[[ "$("$tool" --version)" == *"version 14.0."* ]] || { echo "tidy: $tool is not version 14.0: $("$tool" --version)" >&2; exit 1; }
[[ "$build" == /* ]] || build=$caller/$build  # relative to where it was run
[[ -d "$build" ]] || { echo "tidy: no build directory $build (configure one: cmake -S . -B build -G Ninja)" >&2; exit 1; }
build=$(cd "$build" && pwd)
db=$build/compile_commands.json
[[ -f "$db" ]] || { echo "tidy: no $db (configure with CMake and Ninja: cmake -S . -B build -G Ninja)" >&2; exit 1; }

# The files compile_commands.json compiles, relative to this tree.
mapfile -t compiled < <(python3 - "$db" "$repo" <<'EOF'
import json, os, sys
db, repo = sys.argv[1], os.path.realpath(sys.argv[2])
for entry in json.load(open(db)):
    path = os.path.realpath(os.path.join(entry["directory"], entry["file"]))
    if path.startswith(repo + os.sep):
        print(os.path.relpath(path, repo))
EOF
)
((${#compiled[@]} > 0)) || { echo "tidy: $db compiles no file of $repo (a build tree of another checkout?)" >&2; exit 1; }
declare -A in_db=()
for f in "${compiled[@]}"; do
  [[ "$f" =~ ^(src|tests|bench)/.*\.cpp$ ]] && in_db[$f]=1
done

if $all; then
  what="every file"
  mapfile -t changed < <(printf '%s\n' "${!in_db[@]}" | sort)
else
  if [[ -z "$base" ]]; then
    base=$(grep -Ev '^[[:space:]]*(#|$)' .ci/tidy-base | head -n1 | tr -d '[:space:]')
    [[ -n "$base" ]] || { echo "tidy: .ci/tidy-base holds no commit id" >&2; exit 1; }
  fi
  git rev-parse -q --verify "$base^{commit}" >/dev/null || {
    echo "tidy: $base is not a commit of this clone (a shallow clone? git fetch --unshallow)" >&2
    exit 1
  }
  merge_base=$(git merge-base "$base" HEAD) || { echo "tidy: $base and HEAD have no common ancestor" >&2; exit 1; }
  what="the files changed since $base ($(git rev-parse --short "$merge_base")...HEAD and the working tree)"
  # Committed since the merge base, uncommitted, and untracked (not ignored).
  mapfile -t changed < <({
    git diff --name-only --diff-filter=ACMR "$merge_base" HEAD --
    git diff --name-only --diff-filter=ACMR HEAD --
    git ls-files --others --exclude-standard
  } | sort -u)
fi

files=()
declare -A picked=()
for f in "${changed[@]}"; do
  case $f in
    *.hpp | *.h) f=${f%.*}.cpp ;;
  esac
  if [[ -n "${in_db[$f]:-}" && -z "${picked[$f]:-}" && -f "$f" ]]; then
    picked[$f]=1
    files+=("$f")
  fi
done

if ((${#files[@]} == 0)); then
  echo "tidy: nothing changed: no C++ file of compile_commands.json among $what, nothing to check"
  exit 0
fi

echo "tidy: $tool on ${#files[@]} files, $what, with $db ($jobs at once):"
start=$SECONDS
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
# One log per file, so that parallel runs do not interleave their reports.
printf '%s\0' "${files[@]}" | TOOL=$tool BUILD=$build OUT=$out xargs -0 -r -n1 -P "$jobs" bash -c '
  log=$OUT/$(printf %s "$1" | tr / _)
  "$TOOL" -p "$BUILD" --quiet --warnings-as-errors="*" --extra-arg=-Wno-unknown-warning-option "$1" >"$log" 2>&1 ||
    touch "$log.failed"' _ || true

failed=0
for f in "${files[@]}"; do
  log=$out/$(printf %s "$f" | tr / _)
  if [[ -e "$log.failed" ]]; then
    failed=$((failed + 1))
    echo "  FAILED $f"
    grep -Ev '^[0-9]+ warnings?( and [0-9]+ errors?)? generated\.$' "$log" | sed 's/^/    /'
  else
    echo "  ok     $f"
  fi
done
elapsed=$((SECONDS - start))
if ((failed > 0)); then
  echo "tidy: $failed of ${#files[@]} files have clang-tidy warnings (each one an error) (${elapsed}s)" >&2
  exit 1
fi
echo "tidy: ${#files[@]} files clean (${elapsed}s)"
