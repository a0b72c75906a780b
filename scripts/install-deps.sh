#!/usr/bin/env bash
# Installs every Debian 12 package inferq needs to build, test and run.
# Idempotent: when all are installed already it only says so (no apt-get).
# Runs as root, or through sudo otherwise. Add packages to PACKAGES below.
set -euo pipefail

PACKAGES=(
  # toolchain
  build-essential cmake ninja-build pkg-config git
  # the pinned formatter (tests/style/check_format.sh) and linter (scripts/tidy.sh)
  clang-format-14 clang-tidy-14
  # libraries
  libpqxx-dev libyaml-cpp-dev libspdlog-dev libfmt-dev doctest-dev
  libcpp-httplib-dev prometheus-cpp-dev nlohmann-json3-dev
  libtorch-dev libopenblas0-pthread
  # the tests export TorchScript models from Python, as users do (same 1.13.1
  # as libtorch-dev; run with /usr/bin/python3)
  python3-torch python3-torchvision
  # a real Prometheus server and promtool for the scrape test
  prometheus
  # PostgreSQL for the quick start and the tests
  postgresql-15 postgresql-client-15
  # a real PgBouncer for the pooling tests (the harness starts it; the
  # package's own service is not used)
  pgbouncer
  # setpriv, flock (util-linux), pgrep/ps (procps), useradd (passwd)
  util-linux procps passwd
  # promtool (prometheus) and python3 for the deploy/ checks (tests/deploy)
  prometheus python3
  # packaging and the unit's tests: systemd-analyze and systemd.pc (systemd,
  # used offline: no systemd as PID 1 needed), cpack's dpkg-shlibdeps
  # (dpkg-dev) and file, adduser for the package's postinst
  systemd dpkg-dev file adduser
  # scripts/gpu-bundle.sh: binaries that find their libraries beside them
  patchelf xz-utils
)

log() { printf 'install-deps: %s\n' "$*"; }

missing=()
for package in "${PACKAGES[@]}"; do
  status=$(dpkg-query -W -f='${db:Status-Status}' "$package" 2>/dev/null || true)
  [[ "$status" == installed ]] || missing+=("$package")
done

if ((${#missing[@]} == 0)); then
  log "all ${#PACKAGES[@]} packages are installed"
  exit 0
fi

if ((EUID == 0)); then
  as_root=()
elif command -v sudo >/dev/null 2>&1; then
  as_root=(sudo)
else
  log "missing packages: ${missing[*]}" >&2
  log "run this script as root, or install sudo" >&2
  exit 1
fi

export DEBIAN_FRONTEND=noninteractive
log "installing: ${missing[*]}"
"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" </dev/null
log "done"
