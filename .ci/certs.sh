#!/usr/bin/env bash
# Throwaway certificates for the CI's TLS services, 2 days valid, by the openssl command-line tool
# (installed from Debian if missing, as root).
#
#   bash .ci/certs.sh DIR "CA NAME" server [client]
#
# writes DIR/ca.pem (the CA's key is deleted at once), DIR/server.pem and DIR/server.key (for
# 127.0.0.1 and localhost), and with `client` DIR/client.pem and DIR/client.key (a client
# certificate of the same CA). Keys are mode 600. Says what failed on stderr and exits non-zero.

set -u
dir="$1"
ca_name="$2"
shift 2

if ! command -v openssl >/dev/null 2>&1; then
  if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "certs.sh: the openssl command is missing (and cannot be installed)" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  { apt-get update -qq && apt-get install -y -qq openssl >/dev/null; } || exit 1
fi
mkdir -p "$dir" || exit 1
(
  cd "$dir" || exit 1
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -subj "/CN=$ca_name" -keyout ca.key -out ca.pem \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" || exit 1
  for who in "$@"; do
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
      -subj "/CN=aos-cluster CI $who" -keyout "$who.key" -out "$who.csr" || exit 1
    # etcd's gRPC gateway dials etcd's own TLS port with the server's certificate as its client
    # certificate: a server certificate is for client authentication too.
    usage="${who}Auth"
    [ "$who" = server ] && usage="serverAuth,clientAuth"
    printf '%s\n' "subjectAltName=IP:127.0.0.1,DNS:localhost" "basicConstraints=critical,CA:FALSE" \
      "keyUsage=critical,digitalSignature" "extendedKeyUsage=$usage" >"$who.ext"
    openssl x509 -req -in "$who.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
      -extfile "$who.ext" -out "$who.pem" || exit 1
    chmod 600 "$who.key"
  done
  rm -f ca.key ./*.csr ./*.ext ca.srl
) >"$dir.log" 2>&1 || {
  echo "certs.sh: generating the certificates in $dir failed:" >&2
  cat "$dir.log" >&2
  exit 1
}
