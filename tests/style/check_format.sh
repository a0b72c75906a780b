#!/usr/bin/env bash
# Every C++ file git tracks (and the untracked ones it does not ignore) is
# formatted as .clang-format says, by the pinned clang-format: Debian 12's
# clang-format-14 (another version formats some constructs differently).
#   tests/style/check_format.sh SOURCE_DIR        # check
#   tests/style/check_format.sh SOURCE_DIR --fix  # rewrite the files in place
set -euo pipefail

src=${1:?usage: check_format.sh SOURCE_DIR [--fix]}
fix=${2:-}
tool=clang-format-14
command -v "$tool" >/dev/null || { echo "check_format: $tool is not installed (scripts/install-deps.sh)" >&2; exit 1; }
[[ "$("$tool" --version)" == *" 14.0."* ]] || { echo "check_format: $tool is not version 14.0: $("$tool" --version)" >&2; exit 1; }

cd "$src"
list_sources() {
  if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    git ls-files --cached --others --exclude-standard -- '*.cpp' '*.hpp' '*.h' '*.cu'
  else  # a tree without git (an unpacked archive): its sources, not build trees
    find src tests bench \( -name '*.cpp' -o -name '*.hpp' -o -name '*.h' -o -name '*.cu' \) -print
  fi
}
mapfile -t files < <(list_sources | while read -r f; do [[ -f "$f" ]] && printf '%s\n' "$f"; done)
((${#files[@]} > 0)) || { echo "check_format: no C++ files found under $src" >&2; exit 1; }
if [[ "$fix" == --fix ]]; then
  "$tool" -i "${files[@]}"
  echo "check_format: formatted ${#files[@]} files"
  exit 0
fi
if ! out=$("$tool" --dry-run --Werror "${files[@]}" 2>&1); then
  printf '%s\n' "$out" | grep -E '^[^ ].*: (error|warning):' | cut -d: -f1 | sort -u | sed 's/^/check_format: not formatted: /' >&2
  echo "check_format: run tests/style/check_format.sh $src --fix" >&2
  exit 1
fi
echo "check_format: ${#files[@]} files formatted as .clang-format says ($tool)"
