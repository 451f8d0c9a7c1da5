#!/usr/bin/env bash
# tls.sh - the cost of TLS on the client port, metastore and etcd side by side (issue 15).
#
#   bench/tls.sh [--duration S] [--no-etcd]
#
# For each server (fresh, on free loopback ports; release build of metastore, /usr/bin/etcd),
# listening on one plain and one https client URL with a certificate made here by the openssl
# command (ECDSA P-256, from a test CA; no client certificates, which wrk cannot send):
#   range c64 over plain HTTP (keep-alive), for reference;
#   range c64 over TLS, keep-alive (64 handshakes, then records only);
#   range c64 over TLS with "Connection: close": every request is a new TCP connection and a new
#   full TLS handshake (TLS 1.3, ECDHE P-256 / X25519 and an ECDSA signature on the server), so
#   its rate is the server's handshakes per second (the client's share of the CPU included).
# wrk sends no ALPN, so both servers answer HTTP/1.1 (etcd would pick h2 for curl).
# Prints one markdown table. Every run is bounded (wrk -d, counted loops).
set -euo pipefail
cd "$(dirname "$0")/.."

BENCH=tls
source bench/lib.sh

# A CA and a server certificate for 127.0.0.1.
(
    cd "$WORK"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key \
        -out ca.crt -days 2 -subj /CN=bench-ca 2>/dev/null
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout server.key \
        -out server.csr -subj /CN=server 2>/dev/null
    printf 'subjectAltName=IP:127.0.0.1\n' >server.ext
    openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out server.crt \
        -days 2 -extfile server.ext 2>/dev/null
)

# start NAME: a fresh server; sets PORT (plain), TPORT (https) and SPID.
start() {
    PORT=$(free_port); TPORT=$(free_port)
    spawn "$1" "https://127.0.0.1:$TPORT/health" --cacert "$WORK/ca.crt" -- \
        --listen-client-urls "http://127.0.0.1:$PORT,https://127.0.0.1:$TPORT" \
        --advertise-client-urls "https://127.0.0.1:$TPORT" \
        --cert-file "$WORK/server.crt" --key-file "$WORK/server.key"
}

# wrk_run URL [HEADER]: requests/s and p99 of a range c64 run.
wrk_run() {
    local url=$1
    shift
    wrk -t 2 -c 64 -d "${DURATION}s" --timeout 5s --latency -s bench/kv.lua "$@" "$url" -- range \
        | wrk_figures
}

declare -A R
for s in $SERVERS; do
    start "$s"
    log "$s: load"
    wrk -t 2 -c 64 -d 60s -s bench/kv.lua "http://127.0.0.1:$PORT" -- load 10000 2 >/dev/null
    log "$s: range, plain"
    R[$s,plain]=$(wrk_run "http://127.0.0.1:$PORT")
    log "$s: range over TLS, keep-alive"
    R[$s,tls]=$(wrk_run "https://127.0.0.1:$TPORT")
    log "$s: range over TLS, a handshake per request"
    R[$s,hs]=$(wrk_run "https://127.0.0.1:$TPORT" -H "Connection: close")
    kill "$SPID"; wait "$SPID" 2>/dev/null || true
done

echo "| range c64 | server | req/s | p99 |"
echo "|---|---|---|---|"
for s in $SERVERS; do
    read -r a b <<<"${R[$s,plain]}"
    echo "| plain HTTP, keep-alive | $s | $a | $b |"
    read -r a b <<<"${R[$s,tls]}"
    echo "| TLS, keep-alive | $s | $a | $b |"
    read -r a b <<<"${R[$s,hs]}"
    echo "| TLS, new connection and handshake per request | $s | $a | $b |"
done
