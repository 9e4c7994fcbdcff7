#!/usr/bin/env bash
# A throwaway etcd server on 127.0.0.1 for the registry tests.
#
#   source .ci/etcd.sh      # starts it (or reuses it) and exports AOS_TEST_ETCD_URL
#   bash .ci/etcd.sh        # the same, printing the `export` line to paste
#   bash .ci/etcd.sh stop   # stops it and deletes its files
#
# Installs the Debian `etcd-server` package if no `etcd` binary is found (as root), and
# `protobuf-compiler` if `protoc` is missing (the `etcd` feature's client is generated from
# etcd's protobuf files at build time). The server listens on loopback only (client and peer
# ports picked at random among free ones), keeps its data under $AOS_ETCD_DIR (default
# ${TMPDIR:-/tmp}/aos-cluster-etcd) and is stopped by its recorded process id only. Idempotent:
# a server this script started and that still answers is reused. The data is disposable.
#
# With AOS_ETCD_TLS=1 the server also listens with TLS on a third port, with a throwaway CA, a
# server certificate for 127.0.0.1 and a client certificate (generated now by `.ci/certs.sh`
# under $AOS_ETCD_DIR/tls); that port checks
# client certificates (`--client-cert-auth`). AOS_TEST_ETCD_TLS_URL is exported too: the same
# prefix with `?cacert=...&cert=...&key=...`. The plain port and AOS_TEST_ETCD_URL are unchanged.

aos_etcd_say() { echo "etcd.sh: $*" >&2; }

aos_etcd_port_is_free() {
  ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# Whether etcd answers on 127.0.0.1:$1 (its /health endpoint, through bash's own TCP).
aos_etcd_healthy() {
  local reply
  reply="$(
    exec 2>/dev/null
    exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
    printf 'GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' >&3
    timeout 3 cat <&3
  )" || return 1
  case "$reply" in
    *'"health":"true"'* | *'"health": "true"'*) return 0 ;;
    *) return 1 ;;
  esac
}

aos_etcd_install() {
  local packages=()
  command -v etcd >/dev/null 2>&1 || packages+=(etcd-server)
  command -v protoc >/dev/null 2>&1 || packages+=(protobuf-compiler)
  [ "${#packages[@]}" -eq 0 ] && return 0
  if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    aos_etcd_say "missing ${packages[*]}, and cannot install them (need root and apt-get)"
    return 1
  fi
  aos_etcd_say "installing ${packages[*]} from the Debian packages"
  export DEBIAN_FRONTEND=noninteractive
  # The package's own service is not wanted: this script runs its own server.
  if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null; }; then
    aos_etcd_say "apt-get install ${packages[*]} failed"
    return 1
  fi
}

aos_etcd_stop() {
  local base="$1" pid attempt
  if [ -f "$base/pid" ]; then
    pid="$(cat "$base/pid")"
    # Only the process this script started: its command line names our data directory.
    if [ -n "$pid" ] && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "--data-dir $base/data"; then
      kill "$pid" 2>/dev/null || true
      for attempt in $(seq 1 50); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
      done
      kill -9 "$pid" 2>/dev/null || true
    fi
  fi
  rm -rf "$base"
}

aos_etcd_main() {
  local base="${AOS_ETCD_DIR:-${TMPDIR:-/tmp}/aos-cluster-etcd}"
  local port="" peer attempt candidate tls_port="" client_urls

  if [ "${1:-}" = stop ]; then
    aos_etcd_stop "$base"
    aos_etcd_say "stopped; $base removed"
    return 0
  fi

  aos_etcd_install || return 1

  if [ -f "$base/port" ]; then
    port="$(cat "$base/port")"
    tls_port="$(cat "$base/tls_port" 2>/dev/null)"
    if [ "${AOS_ETCD_TLS:-0}" = 1 ] && [ -z "$tls_port" ]; then
      port=""
    elif aos_etcd_healthy "$port"; then
      aos_etcd_say "reusing the server on 127.0.0.1:$port"
    else
      port=""
    fi
  fi

  if [ -z "$port" ]; then
    aos_etcd_stop "$base"
    mkdir -p "$base" || return 1
    local tls_flags=()
    if [ "${AOS_ETCD_TLS:-0}" = 1 ]; then
      bash "$(dirname "${BASH_SOURCE[0]}")/certs.sh" "$base/tls" "aos-cluster CI etcd CA" server client || return 1
      tls_flags=(--cert-file "$base/tls/server.pem" --key-file "$base/tls/server.key"
        --client-cert-auth --trusted-ca-file "$base/tls/ca.pem")
    fi
    for attempt in 1 2 3 4 5; do
      candidate=$((23790 + RANDOM % 10000))
      peer=$((candidate + 1))
      aos_etcd_port_is_free "$candidate" && aos_etcd_port_is_free "$peer" || continue
      client_urls="http://127.0.0.1:$candidate"
      tls_port=""
      if [ "${#tls_flags[@]}" -gt 0 ]; then
        tls_port=$((candidate + 2))
        aos_etcd_port_is_free "$tls_port" || continue
        client_urls="$client_urls,https://127.0.0.1:$tls_port"
      fi
      rm -rf "$base/data"
      # setsid: the server outlives this shell (CI stops it through `stop`).
      setsid etcd --name aos-ci --data-dir "$base/data" \
        --listen-client-urls "$client_urls" \
        --advertise-client-urls "$client_urls" "${tls_flags[@]}" \
        --listen-peer-urls "http://127.0.0.1:$peer" \
        --initial-advertise-peer-urls "http://127.0.0.1:$peer" \
        --initial-cluster "aos-ci=http://127.0.0.1:$peer" \
        --initial-cluster-state new --unsafe-no-fsync \
        >"$base/server.log" 2>&1 </dev/null &
      echo $! >"$base/pid"
      local waited
      for waited in $(seq 1 100); do
        if aos_etcd_healthy "$candidate"; then
          port="$candidate"
          break
        fi
        kill -0 "$(cat "$base/pid")" 2>/dev/null || break
        sleep 0.1
      done
      [ -n "$port" ] && break
      kill "$(cat "$base/pid")" 2>/dev/null || true
    done
    if [ -z "$port" ]; then
      aos_etcd_say "the server did not start; its log:"
      tail -n 30 "$base/server.log" >&2 2>/dev/null
      return 1
    fi
    echo "$port" >"$base/port"
    [ -n "$tls_port" ] && echo "$tls_port" >"$base/tls_port"
    aos_etcd_say "started etcd $(etcd --version 2>/dev/null | awk 'NR == 1 {print $3}') on 127.0.0.1:$port (data in $base)"
  fi

  export AOS_TEST_ETCD_URL="etcd://127.0.0.1:$port/aos-test"
  aos_etcd_say "AOS_TEST_ETCD_URL=$AOS_TEST_ETCD_URL"
  if [ -n "$tls_port" ]; then
    local tls="$base/tls"
    export AOS_TEST_ETCD_TLS_URL="etcd://127.0.0.1:$tls_port/aos-test?cacert=$tls/ca.pem&cert=$tls/client.pem&key=$tls/client.key"
    aos_etcd_say "AOS_TEST_ETCD_TLS_URL=$AOS_TEST_ETCD_TLS_URL"
  fi
}

aos_etcd_main "$@"
aos_etcd_status=$?
unset -f aos_etcd_say aos_etcd_port_is_free aos_etcd_healthy aos_etcd_install aos_etcd_stop aos_etcd_main
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  # Executed rather than sourced: hand the variable over as text.
  if [ "$aos_etcd_status" -eq 0 ] && [ "${1:-}" != stop ]; then
    echo "export AOS_TEST_ETCD_URL=$AOS_TEST_ETCD_URL"
    [ -n "${AOS_TEST_ETCD_TLS_URL:-}" ] && echo "export AOS_TEST_ETCD_TLS_URL='$AOS_TEST_ETCD_TLS_URL'"
  fi
  exit "$aos_etcd_status"
fi
return "$aos_etcd_status"
