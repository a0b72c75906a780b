#!/usr/bin/env bash
# A private PostgreSQL cluster for the quick start and for trying inferq by
# hand; nothing system-wide is touched but the server user (and, as root,
# the search permission of DIR's parents when that user lacks it).
#
#   scripts/pg-local.sh start|stop|status|url [DIR]
#
#   start   initdb on first use, start the server (a no-op when it runs),
#           create the database `inferq`, print its URL
#   stop    fast shutdown (a no-op when it is not running)
#   status  "running ..." (exit 0) or "not running" (exit 3)
#   url     the libpq URL of database inferq, e.g.
#           postgresql://inferq@/inferq?host=DIR/run&port=54329
#
# DIR defaults to <repo>/.inferq/pg and holds data/ (the cluster), run/ (the
# unix socket) and server.log. The server listens on 127.0.0.1 and on the
# socket, port $INFERQ_PG_PORT (default 54329), trust authentication,
# superuser role `inferq`. PostgreSQL refuses to run as root: as root the
# server runs as $INFERQ_PG_USER (default inferq-pg, a system user made here
# when missing). Server binaries: $INFERQ_PG_BIN (default
# /usr/lib/postgresql/15/bin).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
command=${1:-}
dir=$(realpath -m -- "${2:-$repo/.inferq/pg}")
pg_bin=${INFERQ_PG_BIN:-/usr/lib/postgresql/15/bin}
port=${INFERQ_PG_PORT:-54329}
server_user=${INFERQ_PG_USER:-inferq-pg}
superuser=inferq
database=inferq

data=$dir/data
run=$dir/run
server_log=$dir/server.log

log() { printf 'pg-local: %s\n' "$*"; }
die() {
  printf 'pg-local: %s\n' "$*" >&2
  exit 1
}

usage() { die "usage: $0 start|stop|status|url [DIR]"; }

# Runs a command as the server user (from root) in DIR, where it can be.
as_server() {
  if ((EUID == 0)); then
    (cd "$dir" && setpriv --reuid="$server_user" --regid="$server_user" --clear-groups -- "$@")
  else
    (cd "$dir" && "$@")
  fi
}

ensure_server_user() {
  ((EUID == 0)) || return 0
  getent passwd "$server_user" >/dev/null && return 0
  log "creating system user $server_user to run PostgreSQL (it refuses to run as root)"
  useradd --system --user-group --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin \
    "$server_user" || getent passwd "$server_user" >/dev/null
}

# The server user must be able to walk down to DIR: add the search (x)
# permission for others on each parent that it cannot pass (e.g. /root).
ensure_reachable() {
  ((EUID == 0)) || return 0
  local path=/ part parts
  IFS=/ read -ra parts <<<"${dir#/}"
  for part in "${parts[@]}"; do
    [[ -n "$part" ]] || continue
    if ! setpriv --reuid="$server_user" --regid="$server_user" --clear-groups -- test -x "$path"; then
      log "letting $server_user pass through $path (chmod o+x)"
      chmod o+x "$path"
    fi
    [[ "$path" == / ]] && path=/$part || path=$path/$part
  done
}

# The port of the running server (from postmaster.pid), else the configured one.
current_port() {
  local p
  if p=$(sed -n 4p "$data/postmaster.pid" 2>/dev/null) && [[ "$p" =~ ^[0-9]+$ ]]; then
    printf '%s' "$p"
  else
    printf '%s' "$port"
  fi
}

urlencode() {
  local text=$1 out='' c i
  for ((i = 0; i < ${#text}; i++)); do
    c=${text:i:1}
    case $c in
      [A-Za-z0-9/._~-]) out+=$c ;;
      *) out+=$(printf '%%%02X' "'$c") ;;
    esac
  done
  printf '%s' "$out"
}

url_of() { printf 'postgresql://%s@/%s?host=%s&port=%s' "$superuser" "$1" "$(urlencode "$run")" "$(current_port)"; }

is_running() {
  [[ -f "$data/PG_VERSION" && -d "$dir" ]] || return 1
  as_server "$pg_bin/pg_ctl" status -D "$data" >/dev/null 2>&1
}

start() {
  [[ -x "$pg_bin/postgres" ]] || die "no PostgreSQL server in $pg_bin: run scripts/install-deps.sh (or set INFERQ_PG_BIN)"
  [[ "$dir" != *"'"* ]] || die "DIR must not contain a single quote: $dir"
  # sun_path holds 107 bytes and a NUL.
  local socket="$run/.s.PGSQL.$port"
  ((${#socket} <= 107)) || die "the socket path $socket is too long for PostgreSQL: choose a shorter DIR"

  ensure_server_user
  mkdir -p "$run"
  if ((EUID == 0)); then
    chown "$server_user:" "$dir" "$run"
    [[ -d "$data" ]] && chown -R "$server_user:" "$data"
    [[ -f "$server_log" ]] && chown "$server_user:" "$server_log"
  fi
  chmod 0700 "$run"
  ensure_reachable

  if [[ ! -f "$data/PG_VERSION" ]]; then
    log "initdb $data"
    rm -rf "$data"
    as_server "$pg_bin/initdb" -D "$data" -U "$superuser" -A trust -E UTF8 --no-locale >"$dir/initdb.log" 2>&1 || {
      cat "$dir/initdb.log" >&2
      die "initdb failed"
    }
  fi

  if is_running; then
    log "already running (port $(current_port))"
  else
    log "starting PostgreSQL on 127.0.0.1:$port and $run (log: $server_log)"
    if ! as_server "$pg_bin/pg_ctl" start -D "$data" -l "$server_log" -w -t 60 \
      -o "-p $port -k '$run' -c listen_addresses=127.0.0.1" >/dev/null; then
      tail -n 20 "$server_log" >&2 || true
      die "PostgreSQL did not start (is port $port taken? set INFERQ_PG_PORT)"
    fi
  fi

  if ! pg_isready -q -d "$(url_of postgres)" -t 10; then
    tail -n 20 "$server_log" >&2 || true
    die "the server in $data does not accept connections: see $server_log (or run: $0 stop $dir)"
  fi
  local exists
  exists=$(psql -X -q -v ON_ERROR_STOP=1 -d "$(url_of postgres)" -tAc \
    "SELECT 1 FROM pg_database WHERE datname = '$database'")
  if [[ "$exists" != 1 ]]; then
    log "creating database $database"
    psql -X -q -v ON_ERROR_STOP=1 -d "$(url_of postgres)" -c "CREATE DATABASE $database"
  fi
  log "ready: $(url_of "$database")"
}

stop() {
  if ! is_running; then
    log "not running"
    return 0
  fi
  log "stopping PostgreSQL in $data"
  as_server "$pg_bin/pg_ctl" stop -D "$data" -m fast -w -t 60 >/dev/null
  log "stopped"
}

status() {
  if is_running; then
    printf 'running (pid %s) at %s\n' "$(head -n 1 "$data/postmaster.pid")" "$(url_of "$database")"
  else
    printf 'not running (%s)\n' "$dir"
    exit 3
  fi
}

case $command in
  start) start ;;
  stop) stop ;;
  status) status ;;
  url) url_of "$database"; printf '\n' ;;
  *) usage ;;
esac
