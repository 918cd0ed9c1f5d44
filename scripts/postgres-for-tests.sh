#!/usr/bin/env bash
# A throwaway PostgreSQL server for the store's tests: a fresh cluster in a temp directory, on a private port,
# reachable from 127.0.0.1 only, without a password, and tuned for speed, not durability (fsync off).
#
#   eval "$(scripts/postgres-for-tests.sh start)"   # prints: export CHILDGRAPH_TEST_POSTGRES_URL=postgres://...
#   cargo test --workspace                          # the store's tests now run on SQLite and on PostgreSQL
#   scripts/postgres-for-tests.sh stop              # stops the server and removes its directory
#
# `halt` stops the server at once, as a crash or an outage would, keeping its data; `resume` starts it again on
# that data. The gateway's outage test uses them on a server of its own, started with CHILDGRAPH_PG_DURABLE=1 so
# that a commit survives the crash (synchronous_commit on; fsync stays off, as only the server process dies).
#
# CHILDGRAPH_PG_PORT (55432) and CHILDGRAPH_PG_DIR (/tmp/childgraph-pg-PORT) say where it runs. When no server
# binaries are found, Debian's postgresql package is installed (with sudo when not root). PostgreSQL refuses to run
# as root: run as root, the server runs as the postgres user.
set -euo pipefail

port=${CHILDGRAPH_PG_PORT:-55432}
dir=${CHILDGRAPH_PG_DIR:-/tmp/childgraph-pg-$port}
url="postgres://postgres@127.0.0.1:$port/postgres"

log() { echo "$*" >&2; }

# The server binaries: Debian keeps them off PATH, one directory per major version; the newest is taken.
bindir() {
  local d
  for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
    if [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ]; then
      echo "$d"
      return 0
    fi
  done
  if command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1; then
    dirname "$(command -v initdb)"
    return 0
  fi
  return 1
}

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

install_server() {
  log "installing PostgreSQL from Debian's packages"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql >&2
}

# Runs a command as the server's owner, from its directory (which that user can enter, unlike root's working one).
as_owner() {
  if [ "$(id -u)" -eq 0 ]; then
    (cd "$dir" && runuser -u postgres -- "$@")
  else
    (cd "$dir" && "$@")
  fi
}

running() {
  [ -f "$dir/data/postmaster.pid" ] && as_owner "$1/pg_ctl" -D "$dir/data" status >/dev/null 2>&1
}

start() {
  local bin
  bin=$(bindir) || { install_server; bin=$(bindir); }
  if [ "$(id -u)" -eq 0 ] && ! id postgres >/dev/null 2>&1; then
    useradd --system --user-group --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin postgres
  fi
  if running "$bin"; then
    log "PostgreSQL is already running on port $port, in $dir"
  else
    rm -rf "$dir"
    mkdir -p "$dir"
    if [ "$(id -u)" -eq 0 ]; then chown postgres: "$dir"; fi
    if ! as_owner "$bin/initdb" -D "$dir/data" -U postgres -A trust -E UTF8 --locale=C >"$dir/initdb.log" 2>&1; then
      cat "$dir/initdb.log" >&2
      exit 1
    fi
    launch "$bin"
    log "PostgreSQL $("$bin/postgres" --version | awk '{print $3}') is running on port $port, in $dir"
  fi
  echo "export CHILDGRAPH_TEST_POSTGRES_URL=$url"
}

# Starts the server on the cluster in $dir.
launch() {
  local options="-p $port -k $dir -c listen_addresses=127.0.0.1 -c max_connections=200"
  options+=" -c fsync=off -c full_page_writes=off"
  if [ "${CHILDGRAPH_PG_DURABLE:-0}" != 1 ]; then options+=" -c synchronous_commit=off"; fi
  if ! as_owner "$1/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 -o "$options" start >&2; then
    cat "$dir/server.log" >&2
    exit 1
  fi
}

halt() {
  local bin
  bin=$(bindir)
  as_owner "$bin/pg_ctl" -D "$dir/data" -m immediate -w stop >&2
}

resume() {
  local bin
  bin=$(bindir)
  [ -d "$dir/data" ] || { log "no cluster in $dir: run start first"; exit 1; }
  running "$bin" || launch "$bin"
}

stop() {
  local bin
  if [ -d "$dir/data" ] && bin=$(bindir) && running "$bin"; then
    as_owner "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >&2
  fi
  rm -rf "$dir"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  halt) halt ;;
  resume) resume ;;
  *)
    log "usage: $0 start|stop|halt|resume"
    exit 2
    ;;
esac
