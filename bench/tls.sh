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

DURATION=8
ETCD=1
while [ $# -gt 0 ]; do
    case "$1" in
    --duration) DURATION=$2; shift 2 ;;
    --no-etcd) ETCD=0; shift ;;
    *) echo "usage: bench/tls.sh [--duration S] [--no-etcd]" >&2; exit 2 ;;
    esac
done

log() { echo "tls.sh [${SECONDS}s]: $*" >&2; }
scripts/dev.sh build >&2
METASTORE=build-release/metastore
WORK=$(mktemp -d /tmp/ms-tls-bench.XXXXXX)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT

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

free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }

# start NAME: a fresh server; sets PORT (plain), TPORT (https) and SPID.
start() {
    local name=$1 pport
    PORT=$(free_port); TPORT=$(free_port); pport=$(free_port)
    local args=(--data-dir "$WORK/$name"
        --listen-client-urls "http://127.0.0.1:$PORT,https://127.0.0.1:$TPORT"
        --advertise-client-urls "https://127.0.0.1:$TPORT" --listen-peer-urls "http://127.0.0.1:$pport"
        --initial-advertise-peer-urls "http://127.0.0.1:$pport"
        --initial-cluster "default=http://127.0.0.1:$pport"
        --cert-file "$WORK/server.crt" --key-file "$WORK/server.key")
    if [ "$name" = etcd ]; then
        /usr/bin/etcd "${args[@]}" >"$WORK/$name.log" 2>&1 &
    else
        "$METASTORE" "${args[@]}" --log-level warn >"$WORK/$name.log" 2>&1 &
    fi
    SPID=$!
    PIDS+=("$SPID")
    for _ in $(seq 200); do
        curl -sf --cacert "$WORK/ca.crt" "https://127.0.0.1:$TPORT/health" >/dev/null 2>&1 && return 0
        sleep 0.05
    done
    log "$name did not start"; exit 1
}

# wrk_run URL [HEADER]: requests/s and p99 of a range c64 run.
wrk_run() {
    local url=$1 out
    shift
    out=$(wrk -t 2 -c 64 -d "${DURATION}s" --timeout 5s --latency -s bench/kv.lua "$@" "$url" -- range)
    local rps p99
    rps=$(echo "$out" | awk '/Requests\/sec/ {printf "%d", $2}')
    p99=$(echo "$out" | awk '$1=="99%" {print $2}')
    echo "$rps $p99"
}

declare -A R
SERVERS=metastore
[ "$ETCD" = 1 ] && SERVERS="etcd metastore"
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
