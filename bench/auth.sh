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

BENCH=auth
source bench/lib.sh

# start NAME: a fresh server; sets PORT and SPID.
start() {
    PORT=$(free_port)
    spawn "$1" "http://127.0.0.1:$PORT/health" -- --listen-client-urls "http://127.0.0.1:$PORT" \
        --advertise-client-urls "http://127.0.0.1:$PORT"
}

post() { curl -sf -X POST "http://127.0.0.1:$PORT/v3/$1" -d "$2" ${3:+-H "Authorization: $3"}; }

# wrk_run MODE [TOKEN]: requests/s and p99 (ms) of a c64 run.
wrk_run() {
    local mode=$1 tok=${2:-}
    KV_TOKEN=$tok wrk -t 2 -c 64 -d "${DURATION}s" --timeout 5s --latency -s bench/kv.lua \
        "http://127.0.0.1:$PORT" -- "$mode" | wrk_figures
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
