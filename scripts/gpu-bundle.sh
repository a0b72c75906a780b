#!/usr/bin/env bash
# Prepares, on this Debian 12 machine, what scripts/gpu-check.sh needs on a
# bare GPU host that has no package registry: one archive,
# .gpu-bundle.tar.xz at the repository root (ignored by git), holding
#   bin/inferq         the supervisor, built here (it never loads libtorch)
#   pg/                postgresql-15 and postgresql-client-15, extracted from
#                      their .debs (binaries find share/ relative to bin/)
#   lib/               every shared library those binaries need that is not
#                      glibc or the compiler's runtime (copied from this
#                      system, as ldd resolves them)
#   dev/usr/           yaml-cpp and nlohmann_json headers, libraries and CMake
#                      packages, to build inferq-executor there against the
#                      host's own CUDA libtorch
# Usage: scripts/gpu-bundle.sh [BUILD_DIR]   (default build/; builds `inferq`)
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build_dir=${1:-$repo/build}
out=$repo/.gpu-bundle.tar.xz
arch=x86_64-linux-gnu
log() { printf 'gpu-bundle: %s\n' "$*"; }

"$repo/scripts/install-deps.sh"
[[ -f "$build_dir/build.ninja" ]] || "$repo/scripts/build.sh" "$build_dir"
cmake --build "$build_dir" --target inferq

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/bin" "$stage/lib" "$stage/pg" "$stage/dev/usr/include" "$stage/dev/usr/lib/$arch/cmake" \
  "$stage/dev/usr/share/cmake" "$stage/debs"

cp "$build_dir/src/inferq" "$stage/bin/"
log "fetching the PostgreSQL .debs"
chmod 777 "$stage/debs"  # apt downloads as _apt
download() { (cd "$stage/debs" && apt-get download -q postgresql-15 postgresql-client-15 >/dev/null); }
# Package lists may be missing or stale where install-deps had nothing to do.
download || { apt-get update -q >/dev/null && download; }
for deb in "$stage"/debs/*.deb; do dpkg-deb -x "$deb" "$stage/pg"; done
# No JIT (its LLVM is 100 MB; the server then runs with jit off), no docs.
rm -rf "$stage/debs" "$stage/pg/usr/share/doc" "$stage/pg/usr/share/man" "$stage/pg/usr/share/locale" \
  "$stage/pg/usr/share/postgresql/15/man" "$stage/pg/usr/lib/postgresql/15/lib/bitcode" \
  "$stage/pg/usr/lib/postgresql/15/lib/llvmjit"*
pgbin=$stage/pg/usr/lib/postgresql/15/bin

# Libraries the host has in its own, newer versions (glibc and the GCC
# runtime are backward compatible); everything else travels.
keep_host='^(linux-vdso|libc|libm|libdl|librt|libpthread|libresolv|ld-linux-x86-64|libstdc\+\+|libgcc_s)\.so'
for binary in "$stage/bin/inferq" "$pgbin/postgres" "$pgbin/initdb" "$pgbin/pg_ctl" "$pgbin/psql" \
  "$stage/pg/usr/lib/postgresql/15/lib/"*.so; do
  ldd "$binary" | awk '$2 == "=>" && $3 ~ /^\// { print $1, $3 }' | while read -r name path; do
    [[ "$name" =~ $keep_host ]] && continue
    [[ -e "$stage/lib/$name" ]] || cp -L "$path" "$stage/lib/$name"
  done
done

# Debug symbols stay here; the archive must fit in what a device run carries.
find "$stage/bin" "$stage/lib" "$stage/pg" -type f \( -name '*.so*' -o -perm -u+x \) -exec sh -c \
  'file -b "$1" | grep -q ELF && strip --strip-debug "$1"' _ {} \;
# DT_RPATH (not RUNPATH: it also serves the libraries' own dependencies)
# points every binary at lib/, so nothing needs LD_LIBRARY_PATH, which the
# executors built there would inherit.
patchelf --force-rpath --set-rpath '$ORIGIN/../lib' "$stage/bin/inferq"
for binary in "$pgbin"/*; do
  [[ -f "$binary" ]] && file -b "$binary" | grep -q ELF && patchelf --force-rpath --set-rpath '$ORIGIN/../../../../../../lib' "$binary"
done
for lib in "$stage/pg/usr/lib/postgresql/15/lib/"*.so "$stage/lib/"*.so*; do
  patchelf --force-rpath --set-rpath "\$ORIGIN/$(realpath --relative-to="$(dirname "$lib")" "$stage/lib")" "$lib"
done

# The executor's build dependencies besides torch (the host has CMake,
# ninja, a compiler, CUDA and PyTorch).
cp -a /usr/include/yaml-cpp /usr/include/nlohmann "$stage/dev/usr/include/"
cp -a /usr/lib/$arch/libyaml-cpp.so* "$stage/dev/usr/lib/$arch/"
cp -a /usr/lib/$arch/cmake/yaml-cpp "$stage/dev/usr/lib/$arch/cmake/"
cp -a /usr/share/cmake/nlohmann_json "$stage/dev/usr/share/cmake/"

log "packing $(du -sh "$stage" | cut -f1) into $out"
tar -C "$stage" -cJf "$out" .
log "wrote $out ($(du -h "$out" | cut -f1)); carry it with scripts/gpu-check.sh"
