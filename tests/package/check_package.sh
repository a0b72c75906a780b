#!/usr/bin/env bash
# The Debian package as CPack builds it from this build tree: its metadata
# (name, version, computed Depends, Recommends, conffiles, maintainer
# scripts), its contents, and the files unpacked into a scratch root: in
# their places, the binaries running, the unit verified against them.
# Maintainer scripts are not run here (they need root and a real system);
# README, "Operating inferq", says how the package installs with apt.
# Usage: check_package.sh SOURCE_DIR BUILD_DIR VERSION PREFIX CONFIG_DIR UNIT_DIR
set -euo pipefail

src=$1 build=$2 version=$3 prefix=$4 confdir=$5 unitdir=$6
fail() { printf 'check_package: FAIL: %s\n' "$*" >&2; exit 1; }
say() { printf 'check_package: %s\n' "$*"; }

work=$(mktemp -d "${INFERQ_TEST_TMP:-/tmp}/inferq-package-XXXXXX")
trap 'rm -rf "$work"' EXIT

# 1. Build the .deb (into the scratch directory, not the build tree).
cpack -G DEB -B "$work/out" --config "$build/CPackConfig.cmake" >"$work/cpack.log" 2>&1 ||
  { cat "$work/cpack.log"; fail "cpack failed"; }
debs=("$work"/out/inferq_*.deb)
((${#debs[@]} == 1)) && [[ -f "${debs[0]}" ]] || fail "expected one inferq_*.deb, got: ${debs[*]}"
deb=${debs[0]}
say "built $(basename "$deb") ($(stat -c %s "$deb") bytes)"

# 2. Metadata.
field() { dpkg-deb -f "$deb" "$1"; }
[[ "$(field Package)" == inferq ]] || fail "Package: $(field Package)"
[[ "$(field Version)" == "$version"-* ]] || fail "Version $(field Version) is not $version-N"
depends=$(field Depends)
say "Depends: $depends"
for dep in adduser libc6 libstdc++6 libpqxx libyaml-cpp libspdlog; do
  [[ "$depends" == *"$dep"* ]] || fail "Depends lacks $dep (dpkg-shlibdeps did not run?): $depends"
done
[[ "$(field Recommends)" == *postgresql-client* ]] || fail "Recommends: $(field Recommends)"
dpkg-deb -e "$deb" "$work/control"
grep -qx "$confdir/inferq.yaml" "$work/control/conffiles" || fail "the config is not a conffile"
for script in postinst prerm postrm; do
  [[ -x "$work/control/$script" ]] || fail "no executable $script"
  sh -n "$work/control/$script" || fail "$script: syntax error"
done
grep -q 'adduser --quiet --system --group --home /var/lib/inferq' "$work/control/postinst" ||
  fail "postinst does not create the inferq system user"
grep -q '\[ -d /run/systemd/system \]' "$work/control/postinst" ||
  fail "postinst must reload systemd only when it runs"

# 3. Contents.
dpkg-deb -c "$deb" | awk '{print $NF}' | sed 's|^\./|/|; s|/$||' >"$work/contents"
for path in "$prefix/bin/inferq" "$prefix/bin/inferq-executor" "$confdir/inferq.yaml" \
  "$prefix/share/inferq/migrations" "$prefix/share/inferq/models" "$unitdir/inferq.service" \
  "$prefix/share/doc/inferq/README.md"; do
  grep -qx "$path" "$work/contents" || fail "$path is not in the package:
$(cat "$work/contents")"
done
for m in "$src"/migrations/*.sql; do
  grep -qx "$prefix/share/inferq/migrations/$(basename "$m")" "$work/contents" || fail "$(basename "$m") missing"
done

# 4. Unpacked into a scratch root.
root=$work/root
dpkg-deb -x "$deb" "$root"
for m in "$src"/migrations/*.sql; do
  cmp -s "$m" "$root$prefix/share/inferq/migrations/$(basename "$m")" || fail "$(basename "$m") differs"
done
cmp -s "$src/config/inferq.example.yaml" "$root$confdir/inferq.yaml" || fail "the config is not the example"
[[ -d "$root$prefix/share/inferq/models" ]] || fail "no models directory"
for bin in inferq inferq-executor; do
  out=$("$root$prefix/bin/$bin" --version) || fail "$bin --version failed"
  [[ "$out" == "$bin $version" ]] || fail "$bin --version said: $out"
done
say "inferq and inferq-executor --version: $version"
exec_start=$(sed -n 's/^ExecStart=\([^ ]*\).*/\1/p' "$root$unitdir/inferq.service")
[[ "$exec_start" == "$prefix/bin/inferq" ]] || fail "ExecStart=$exec_start"
grep -q -- "--config $confdir/inferq.yaml" "$root$unitdir/inferq.service" || fail "the unit does not name $confdir"
if command -v systemd-analyze >/dev/null; then
  mkdir -p "$root/lib/systemd/system"
  cp -a --no-clobber /lib/systemd/system/. "$root/lib/systemd/system/"
  mkdir -p "$root/bin"
  cp -L /bin/sh "$root/bin/sh"  # ExecReload='s shell comes from the host too
  out=$(systemd-analyze verify --root="$root" inferq.service 2>&1) || fail "verify: $out"
  [[ -z "$out" ]] || fail "verify is not clean: $out"
  say "systemd-analyze verify on the unpacked package: clean"
fi
say "ok"
