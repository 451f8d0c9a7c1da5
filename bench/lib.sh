# lib.sh - what bench/auth.sh and bench/tls.sh share, sourced with BENCH set to the script's
# name (after `set -euo pipefail` and the cd to the repository): the options --duration S and
# --no-etcd, the release build, a work directory removed and the servers stopped on exit, free
# loopback ports, a server started and waited for, and wrk's figures.

DURATION=8
ETCD=1
while [ $# -gt 0 ]; do
    case "$1" in
    --duration) DURATION=$2; shift 2 ;;
    --no-etcd) ETCD=0; shift ;;
    *) echo "usage: bench/$BENCH.sh [--duration S] [--no-etcd]" >&2; exit 2 ;;
    esac
done
SERVERS=metastore
[ "$ETCD" = 1 ] && SERVERS="etcd metastore"

log() { echo "$BENCH.sh [${SECONDS}s]: $*" >&2; }
scripts/dev.sh build >&2
METASTORE=build-release/metastore
WORK=$(mktemp -d "/tmp/ms-$BENCH-bench.XXXXXX")
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }

# spawn NAME HEALTH_URL CURL_ARGS... -- SERVER_ARGS...: a fresh etcd or metastore with its data in
# the work directory, its peer URL on a free port, up once HEALTH_URL answers; sets SPID.
spawn() {
    local name=$1 health=$2 pport curl_args=()
    shift 2
    while [ "$1" != -- ]; do curl_args+=("$1"); shift; done
    shift
    pport=$(free_port)
    local args=(--data-dir "$WORK/$name" --listen-peer-urls "http://127.0.0.1:$pport"
        --initial-advertise-peer-urls "http://127.0.0.1:$pport"
        --initial-cluster "default=http://127.0.0.1:$pport" "$@")
    if [ "$name" = etcd ]; then
        /usr/bin/etcd "${args[@]}" >"$WORK/$name.log" 2>&1 &
    else
        "$METASTORE" "${args[@]}" --log-level warn >"$WORK/$name.log" 2>&1 &
    fi
    SPID=$!
    PIDS+=("$SPID")
    for _ in $(seq 200); do
        curl -sf "${curl_args[@]}" "$health" >/dev/null 2>&1 && return 0
        sleep 0.05
    done
    log "$name did not start"; exit 1
}

# wrk_figures: "requests/s p99" from wrk --latency's output on stdin.
wrk_figures() {
    local out rps p99
    out=$(cat)
    rps=$(echo "$out" | awk '/Requests\/sec/ {printf "%d", $2}')
    p99=$(echo "$out" | awk '$1=="99%" {print $2}')
    echo "$rps $p99"
}
