#!/usr/bin/env bash
# auth.sh - the cost of authentication, metastore and etcd side by side (issue 15).
#
#   bench/auth.sh [--duration S] [--no-etcd]
#
# For each server (fresh, on free loopback ports; release build of metastore, /usr/bin/etcd):
#   put and range c64 without auth; then root and a user "bench" with READWRITE on every key,
#   auth enabled, and the same put and range c64 with the user's token on every request;
#   finally the range c64 again while 50 authentications per second run beside it (each a
#   bcrypt check at cost 10), to show whether logins hold up reads (p99).
# Prints one markdown table. Every run is bounded (wrk -d, counted loops).
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=8
ETCD=1
while [ $# -gt 0 ]; do
    case "$1" in
    --duration) DURATION=$2; shift 2 ;;
    --no-etcd) ETCD=0; shift ;;
    *) echo "usage: bench/auth.sh [--duration S] [--no-etcd]" >&2; exit 2 ;;
    esac
done

log() { echo "auth.sh [${SECONDS}s]: $*" >&2; }
scripts/dev.sh build >&2
METASTORE=build-release/metastore
WORK=$(mktemp -d /tmp/ms-auth-bench.XXXXXX)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }

# start NAME: a fresh server; sets PORT and SPID.
start() {
    local name=$1 cport pport
    cport=$(free_port); pport=$(free_port)
    local args=(--data-dir "$WORK/$name" --listen-client-urls "http://127.0.0.1:$cport"
        --advertise-client-urls "http://127.0.0.1:$cport" --listen-peer-urls "http://127.0.0.1:$pport"
        --initial-advertise-peer-urls "http://127.0.0.1:$pport"
        --initial-cluster "default=http://127.0.0.1:$pport")
    if [ "$name" = etcd ]; then
        /usr/bin/etcd "${args[@]}" >"$WORK/$name.log" 2>&1 &
    else
        "$METASTORE" "${args[@]}" --log-level warn >"$WORK/$name.log" 2>&1 &
    fi
    SPID=$!
    PIDS+=("$SPID")
    PORT=$cport
    for _ in $(seq 200); do
        curl -sf "http://127.0.0.1:$PORT/health" >/dev/null 2>&1 && return 0
        sleep 0.05
    done
    log "$name did not start"; exit 1
}

post() { curl -sf -X POST "http://127.0.0.1:$PORT/v3/$1" -d "$2" ${3:+-H "Authorization: $3"}; }

# wrk_rps MODE [TOKEN]: requests/s and p99 (ms) of a c64 run.
wrk_run() {
    local mode=$1 tok=${2:-} out
    out=$(KV_TOKEN=$tok wrk -t 2 -c 64 -d "${DURATION}s" --timeout 5s --latency -s bench/kv.lua \
        "http://127.0.0.1:$PORT" -- "$mode")
    local rps p99
    rps=$(echo "$out" | awk '/Requests\/sec/ {printf "%d", $2}')
    p99=$(echo "$out" | awk '$1=="99%" {print $2}')
    echo "$rps $p99"
}

# logins N: N authentications at 50 per second (bounded: N / 50 s plus one answer each).
logins() {
    python3 - "$PORT" "$1" <<'PY'
import http.client, sys, time
port, n = int(sys.argv[1]), int(sys.argv[2])
c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
t0 = time.monotonic()
for i in range(n):
    c.request("POST", "/v3/auth/authenticate", '{"name":"bench","password":"benchpw"}')
    r = c.getresponse(); r.read()
    delay = t0 + (i + 1) / 50 - time.monotonic()
    if delay > 0:
        time.sleep(delay)
PY
}

declare -A R
SERVERS=metastore
[ "$ETCD" = 1 ] && SERVERS="etcd metastore"
for s in $SERVERS; do
    start "$s"
    log "$s: load"
    KV_TOKEN= wrk -t 2 -c 64 -d 60s -s bench/kv.lua "http://127.0.0.1:$PORT" -- load 10000 2 >/dev/null
    log "$s: put and range without auth"
    R[$s,put]=$(wrk_run put); R[$s,range]=$(wrk_run range)
    post auth/user/add '{"name":"root","password":"rootpw"}' >/dev/null
    post auth/user/grant '{"user":"root","role":"root"}' >/dev/null
    post auth/user/add '{"name":"bench","password":"benchpw"}' >/dev/null
    post auth/role/add '{"name":"all"}' >/dev/null
    post auth/role/grant '{"name":"all","perm":{"permType":"READWRITE","key":"AA==","range_end":"AA=="}}' >/dev/null
    post auth/user/grant '{"user":"bench","role":"all"}' >/dev/null
    post auth/enable '{}' >/dev/null
    TOK=$(post auth/authenticate '{"name":"bench","password":"benchpw"}' | sed 's/.*"token":"\([^"]*\)".*/\1/')
    log "$s: put and range with a token"
    R[$s,aput]=$(wrk_run put "$TOK"); R[$s,arange]=$(wrk_run range "$TOK")
    log "$s: range while 50 logins/s run"
    logins $((DURATION * 50 + 50)) &
    LP=$!
    R[$s,lrange]=$(wrk_run range "$TOK")
    wait $LP
    kill "$SPID"; wait "$SPID" 2>/dev/null || true
done

echo "| c64 | server | put req/s | put p99 | range req/s | range p99 |"
echo "|---|---|---|---|---|---|"
for s in $SERVERS; do
    read -r a b <<<"${R[$s,put]}"; read -r c d <<<"${R[$s,range]}"
    echo "| no auth | $s | $a | $b | $c | $d |"
    read -r a b <<<"${R[$s,aput]}"; read -r c d <<<"${R[$s,arange]}"
    echo "| token on every request | $s | $a | $b | $c | $d |"
    read -r c d <<<"${R[$s,lrange]}"
    echo "| token, 50 logins/s beside | $s | | | $c | $d |"
done
