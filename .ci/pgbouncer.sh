#!/usr/bin/env bash
# A throwaway PgBouncer in transaction mode in front of the PostgreSQL of .ci/postgres.sh, for
# the registry's path past max_connections.
#
#   source .ci/pgbouncer.sh      # starts it (after .ci/postgres.sh), exports AOS_TEST_PGBOUNCER_URL
#   bash .ci/pgbouncer.sh stop   # stops it and deletes its files
#
# Installs the Debian `pgbouncer` package if missing (as root), runs it as the `postgres` system
# user when called as root (it refuses to run as root), on loopback only, accepting any user name
# without a password (the server behind it trusts loopback too). Up to 5 000 clients share at most
# 20 server connections.

aos_pgb_say() { echo "pgbouncer.sh: $*" >&2; }

aos_pgb_as_owner() {
  if [ "$(id -u)" -eq 0 ]; then
    (cd / && runuser -u postgres -- "$@")
  else
    (cd / && "$@")
  fi
}

aos_pgb_main() {
  local base="${AOS_PGB_DIR:-${TMPDIR:-/tmp}/aos-cluster-pgbouncer}" port attempt candidate
  if [ "${1:-}" = stop ]; then
    if [ -f "$base/pid" ]; then
      kill "$(cat "$base/pid")" 2>/dev/null || true
    fi
    rm -rf "$base"
    aos_pgb_say "stopped; $base removed"
    return 0
  fi
  local upstream="${AOS_TEST_POSTGRES_URL:-}"
  if [ -z "$upstream" ]; then
    aos_pgb_say "AOS_TEST_POSTGRES_URL is not set: start .ci/postgres.sh first"
    return 1
  fi
  # postgres://user@127.0.0.1:PORT/DB
  local hostport="${upstream#*@}" pg_port db
  hostport="${hostport%%/*}"
  pg_port="${hostport##*:}"
  db="${upstream##*/}"
  db="${db%%\?*}"
  if ! command -v pgbouncer >/dev/null 2>&1; then
    if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
      aos_pgb_say "no pgbouncer, and cannot install it (need root and apt-get)"
      return 1
    fi
    aos_pgb_say "installing PgBouncer from the Debian packages"
    export DEBIAN_FRONTEND=noninteractive
    if ! { apt-get install -y -qq pgbouncer >/dev/null 2>&1 ||
      { apt-get update -qq && apt-get install -y -qq pgbouncer >/dev/null; }; }; then
      aos_pgb_say "apt-get install pgbouncer failed"
      return 1
    fi
  fi
  if [ -f "$base/port" ] && [ -f "$base/pid" ] && kill -0 "$(cat "$base/pid")" 2>/dev/null; then
    port="$(cat "$base/port")"
    aos_pgb_say "reusing PgBouncer on 127.0.0.1:$port"
  else
    [ -f "$base/pid" ] && kill "$(cat "$base/pid")" 2>/dev/null
    rm -rf "$base"
    mkdir -p "$base" || return 1
    port=""
    for attempt in 1 2 3 4 5; do
      candidate=$((44320 + RANDOM % 10000))
      (exec 3<>"/dev/tcp/127.0.0.1/$candidate") 2>/dev/null && continue
      cat >"$base/pgbouncer.ini" <<INI
[databases]
$db = host=127.0.0.1 port=$pg_port dbname=$db user=postgres

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $candidate
unix_socket_dir =
auth_type = any
pool_mode = transaction
max_client_conn = 5000
default_pool_size = 20
max_db_connections = 20
server_reset_query =
ignore_startup_parameters = extra_float_digits
logfile = $base/pgbouncer.log
pidfile = $base/pid
INI
      [ "$(id -u)" -eq 0 ] && chown -R postgres: "$base"
      # One descriptor per client: the soft limit as high as the hard one allows (1 024 by
      # default, below max_client_conn).
      if aos_pgb_as_owner sh -c 'ulimit -n "$(ulimit -Hn)" 2>/dev/null; exec pgbouncer -d "$1"' sh \
        "$base/pgbouncer.ini" >/dev/null 2>&1; then
        for _ in $(seq 50); do
          (exec 3<>"/dev/tcp/127.0.0.1/$candidate") 2>/dev/null && { port="$candidate"; break; }
          sleep 0.1
        done
      fi
      [ -n "$port" ] && break
    done
    if [ -z "$port" ]; then
      aos_pgb_say "PgBouncer did not start; its log:"
      tail -n 20 "$base/pgbouncer.log" >&2 2>/dev/null
      return 1
    fi
    echo "$port" >"$base/port"
    aos_pgb_say "started PgBouncer (transaction mode) on 127.0.0.1:$port in front of 127.0.0.1:$pg_port"
  fi
  export AOS_TEST_PGBOUNCER_URL="postgres://postgres@127.0.0.1:$port/$db"
  aos_pgb_say "AOS_TEST_PGBOUNCER_URL=$AOS_TEST_PGBOUNCER_URL"
}

aos_pgb_main "$@"
aos_pgb_status=$?
unset -f aos_pgb_say aos_pgb_as_owner aos_pgb_main
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  if [ "$aos_pgb_status" -eq 0 ] && [ "${1:-}" != stop ]; then
    echo "export AOS_TEST_PGBOUNCER_URL=$AOS_TEST_PGBOUNCER_URL"
  fi
  exit "$aos_pgb_status"
fi
return "$aos_pgb_status" 2>/dev/null || true
