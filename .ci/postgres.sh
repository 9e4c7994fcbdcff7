#!/usr/bin/env bash
# A throwaway PostgreSQL server on 127.0.0.1 for the registry tests.
#
#   source .ci/postgres.sh      # starts it (or reuses it) and exports AOS_TEST_POSTGRES_URL
#   bash .ci/postgres.sh        # the same, printing the `export` line to paste
#   bash .ci/postgres.sh stop   # stops it and deletes its files
#
# With AOS_PG_TLS=1 the server also speaks TLS with a certificate generated now (a throwaway CA
# and a server certificate for 127.0.0.1 and localhost, under $AOS_PG_DIR/tls, by the openssl
# command-line tool, installed from Debian if missing), and AOS_TEST_POSTGRES_TLS_URL is exported
# too: the same database with `sslmode=verify-full&sslrootcert=<the CA>`. Plain connections keep
# working, so AOS_TEST_POSTGRES_URL is unchanged. No key is kept anywhere but that directory.
#
# Installs the Debian `postgresql` package if no server binaries are found (as root), runs the
# server as the `postgres` system user when called as root (PostgreSQL refuses to run as root),
# listens on loopback only with trust authentication, and keeps its data under
# $AOS_PG_DIR (default ${TMPDIR:-/tmp}/aos-cluster-postgres). Idempotent: a server this script
# started and that still answers is reused. Durability is switched off: the data is disposable.

aos_pg_say() { echo "postgres.sh: $*" >&2; }

aos_pg_bindir() {
  local dir
  for dir in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
    if [ -x "$dir/initdb" ] && [ -x "$dir/pg_ctl" ] && [ -x "$dir/postgres" ]; then
      echo "$dir"
      return 0
    fi
  done
  if command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1; then
    dirname "$(readlink -f "$(command -v pg_ctl)")"
    return 0
  fi
  return 1
}

# Runs a command as the server's owner: `postgres` when we are root, ourselves otherwise. From /,
# since the postgres user may not be allowed into the caller's working directory.
aos_pg_as_owner() {
  if [ "$(id -u)" -eq 0 ]; then
    if command -v runuser >/dev/null 2>&1; then
      (cd / && runuser -u postgres -- "$@")
    else
      (cd / && su -s /bin/sh postgres -c "$(printf '%q ' "$@")")
    fi
  else
    (cd / && "$@")
  fi
}

aos_pg_port_is_free() {
  ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}


aos_pg_stop() {
  local base="$1" bin
  if bin="$(aos_pg_bindir)" && [ -f "$base/data/PG_VERSION" ]; then
    aos_pg_as_owner "$bin/pg_ctl" -D "$base/data" -m fast -w stop >/dev/null 2>&1 || true
  fi
  rm -rf "$base"
}

aos_pg_main() {
  local base="${AOS_PG_DIR:-${TMPDIR:-/tmp}/aos-cluster-postgres}"
  local db=aos_test bin port attempt tls_opts=""
  local want_tls="${AOS_PG_TLS:-0}"

  if [ "${1:-}" = stop ]; then
    aos_pg_stop "$base"
    aos_pg_say "stopped; $base removed"
    return 0
  fi

  if ! bin="$(aos_pg_bindir)"; then
    if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
      aos_pg_say "no PostgreSQL server binaries, and cannot install them (need root and apt-get)"
      return 1
    fi
    aos_pg_say "installing PostgreSQL from the Debian packages"
    export DEBIAN_FRONTEND=noninteractive
    if ! { apt-get update -qq && apt-get install -y -qq postgresql >/dev/null; }; then
      aos_pg_say "apt-get install postgresql failed"
      return 1
    fi
    if ! bin="$(aos_pg_bindir)"; then
      aos_pg_say "postgresql is installed but initdb/pg_ctl/postgres are not under /usr/lib/postgresql/*/bin"
      return 1
    fi
  fi
  if [ "$(id -u)" -eq 0 ] && ! id postgres >/dev/null 2>&1; then
    aos_pg_say "running as root but there is no 'postgres' system user to run the server"
    return 1
  fi

  # Reuse the server from an earlier run if it still answers (and speaks TLS when asked to).
  if [ "$want_tls" = 1 ] && [ -f "$base/port" ] && [ ! -f "$base/tls/ca.pem" ]; then
    aos_pg_say "the running server has no TLS; restarting it with TLS"
    rm -f "$base/port"
  fi
  if [ -f "$base/port" ]; then
    port="$(cat "$base/port")"
    if "$bin/pg_isready" -q -h 127.0.0.1 -p "$port" -t 5; then
      aos_pg_say "reusing the server on 127.0.0.1:$port"
    else
      port=""
    fi
  fi

  if [ -z "${port:-}" ]; then
    aos_pg_stop "$base"
    mkdir -p "$base/socket" || return 1
    if [ "$want_tls" = 1 ]; then
      bash "$(dirname "${BASH_SOURCE[0]}")/certs.sh" "$base/tls" "aos-cluster CI PostgreSQL CA" server || return 1
      tls_opts="-c ssl=on -c ssl_cert_file=$base/tls/server.pem -c ssl_key_file=$base/tls/server.key"
    fi
    if [ "$(id -u)" -eq 0 ]; then
      chown -R postgres: "$base" || return 1
    fi
    if ! aos_pg_as_owner "$bin/initdb" -D "$base/data" -U postgres --auth=trust -E UTF8 --no-locale \
      >"$base/initdb.log" 2>&1; then
      aos_pg_say "initdb failed:"
      cat "$base/initdb.log" >&2
      return 1
    fi
    port=""
    for attempt in 1 2 3 4 5; do
      local candidate=$((54320 + RANDOM % 10000))
      aos_pg_port_is_free "$candidate" || continue
      if aos_pg_as_owner "$bin/pg_ctl" -D "$base/data" -l "$base/server.log" -w -t 60 \
        -o "-h 127.0.0.1 -p $candidate -k $base/socket -c fsync=off -c synchronous_commit=off -c full_page_writes=off $tls_opts" \
        start >/dev/null 2>&1; then
        port="$candidate"
        break
      fi
    done
    if [ -z "$port" ]; then
      aos_pg_say "the server did not start; its log:"
      tail -n 30 "$base/server.log" >&2 2>/dev/null
      return 1
    fi
    echo "$port" >"$base/port"
    aos_pg_say "started PostgreSQL $("$bin/postgres" --version | awk '{print $3}') on 127.0.0.1:$port (data in $base)"
  fi

  if ! "$bin/psql" -h 127.0.0.1 -p "$port" -U postgres -d postgres -tAq \
    -c "SELECT 1 FROM pg_database WHERE datname = '$db'" | grep -q 1; then
    if ! "$bin/createdb" -h 127.0.0.1 -p "$port" -U postgres "$db"; then
      aos_pg_say "createdb $db failed"
      return 1
    fi
  fi

  export AOS_TEST_POSTGRES_URL="postgres://postgres@127.0.0.1:$port/$db"
  aos_pg_say "AOS_TEST_POSTGRES_URL=$AOS_TEST_POSTGRES_URL"
  if [ "$want_tls" = 1 ]; then
    export AOS_TEST_POSTGRES_TLS_URL="$AOS_TEST_POSTGRES_URL?sslmode=verify-full&sslrootcert=$base/tls/ca.pem"
    aos_pg_say "AOS_TEST_POSTGRES_TLS_URL=$AOS_TEST_POSTGRES_TLS_URL"
  fi
}

aos_pg_main "$@"
aos_pg_status=$?
unset -f aos_pg_say aos_pg_bindir aos_pg_as_owner aos_pg_port_is_free aos_pg_stop aos_pg_main
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  # Executed rather than sourced: hand the variable over as text.
  if [ "$aos_pg_status" -eq 0 ] && [ "${1:-}" != stop ]; then
    echo "export AOS_TEST_POSTGRES_URL=$AOS_TEST_POSTGRES_URL"
    if [ -n "${AOS_TEST_POSTGRES_TLS_URL:-}" ]; then
      echo "export AOS_TEST_POSTGRES_TLS_URL='$AOS_TEST_POSTGRES_TLS_URL'"
    fi
  fi
  exit "$aos_pg_status"
fi
return "$aos_pg_status"
