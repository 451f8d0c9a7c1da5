#!/usr/bin/env bash
# watch_fanout.sh - watch fan-out benchmark: N watchers (100, 1,000, 10,000; one stream each)
# on one key, M puts to it.
#
#   bench/watch_fanout.sh [--reps R] [--etcd] [--watchers "100 1000 10000"]
#
# For each N, with a fresh server (memory backend, so the disk does not set the pace):
#   throughput  puts as fast as 8 connections x 16 in flight allow: events delivered per
#               second, and the latency under that saturation (mostly queueing)
#   latency     puts paced so that N x rate = 50,000 events/s offered (at least 1 put/s):
#               delivery latency percentiles (put sent -> event read by the client)
#   memory      server VmRSS with the N streams open minus before, per watcher
# Each figure is the median of R runs (default 3). --etcd runs the same against Debian's
# etcd 3.4 (/usr/bin/etcd) for comparison, with 10x fewer puts (it is that much slower).
# Everything runs on 127.0.0.1; the client shares the machine with the server, so its own
# CPU use is part of what is measured.
set -euo pipefail
cd "$(dirname "$0")/.."

REPS=3
ETCD=0
SIZES="100 1000 10000"
while [ $# -gt 0 ]; do
    case "$1" in
    --reps) REPS=$2; shift 2 ;;
    --etcd) ETCD=1; shift ;;
    --watchers) SIZES=$2; shift 2 ;;
    *) echo "usage: $0 [--reps R] [--etcd] [--watchers \"100 1000 10000\"]" >&2; exit 2 ;;
    esac
done

if [ ! -f build-release/build.ninja ]; then
    meson setup build-release --buildtype=release -Dtests=false >/dev/null
fi
ninja -C build-release >/dev/null
BENCH=build-release/bench/watch_bench
ulimit -n "$(ulimit -Hn)"

TMP=$(mktemp -d /tmp/watch-fanout.XXXXXX)
SERVER_PID=
cleanup() {
    if [ -n "$SERVER_PID" ]; then kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; fi
    rm -rf "$TMP"
}
trap cleanup EXIT

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# start_server metastore|etcd -> sets PORT and SERVER_PID
start_server() {
    rm -rf "$TMP/data"
    PORT=$(free_port)
    if [ "$1" = metastore ]; then
        build-release/metastore --data-dir "$TMP/data" --backend memory \
            --listen-client-urls "http://127.0.0.1:$PORT" \
            --advertise-client-urls "http://127.0.0.1:$PORT" --log-level warn \
            --max-watchers 100000 >"$TMP/server.log" 2>&1 &
    else
        local peer
        peer=$(free_port)
        /usr/bin/etcd --data-dir "$TMP/data" --listen-client-urls "http://127.0.0.1:$PORT" \
            --advertise-client-urls "http://127.0.0.1:$PORT" \
            --listen-peer-urls "http://127.0.0.1:$peer" \
            --initial-advertise-peer-urls "http://127.0.0.1:$peer" \
            --initial-cluster "default=http://127.0.0.1:$peer" >"$TMP/server.log" 2>&1 &
    fi
    SERVER_PID=$!
    for _ in $(seq 100); do
        curl -sf "http://127.0.0.1:$PORT/version" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    echo "server did not start" >&2
    cat "$TMP/server.log" >&2
    exit 1
}

stop_server() {
    kill "$SERVER_PID"
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=
}

# field NAME FILE: the value of NAME=value in the bench output
field() {
    grep -o "$1=[0-9.]*" "$2" | head -1 | cut -d= -f2
}

median() {
    sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : int((a[NR/2]+a[NR/2+1])/2)}'
}

run_one() { # server N -> appends one line of figures to $TMP/res
    local server=$1 n=$2 puts rate lat_puts
    puts=$((3000000 / n))
    [ "$server" = etcd ] && puts=$((puts / 10))
    [ "$puts" -lt 20 ] && puts=20
    rate=$((50000 / n))
    [ "$rate" -lt 1 ] && rate=1
    lat_puts=$((rate * 5))
    [ "$lat_puts" -lt 5 ] && lat_puts=5
    start_server "$server"
    $BENCH --port "$PORT" --watchers "$n" --puts "$puts" --conns 8 --window 16 \
        --pid "$SERVER_PID" --timeout 600 >"$TMP/tp"
    stop_server
    start_server "$server"
    $BENCH --port "$PORT" --watchers "$n" --puts "$lat_puts" --rate "$rate" --conns 16 \
        --window 1 --timeout 600 >"$TMP/lat"
    stop_server
    echo "$(field events_per_sec "$TMP/tp") $(field p99 "$TMP/tp") $(field p50 "$TMP/lat") \
$(field p99 "$TMP/lat") $(field rss_per_watcher_bytes "$TMP/tp") $rate" >>"$TMP/res"
}

servers=metastore
[ "$ETCD" = 1 ] && servers="metastore etcd"
printf "%-9s %8s %14s %16s %14s %14s %12s\n" server watchers "events/s" "sat. p99 ms" \
    "paced p50 ms" "paced p99 ms" "RSS/watcher"
for server in $servers; do
    for n in $SIZES; do
        : >"$TMP/res"
        for _ in $(seq "$REPS"); do
            run_one "$server" "$n"
        done
        col() { awk -v c="$1" '{print $c}' "$TMP/res" | median; }
        printf "%-9s %8d %14s %16.1f %14.1f %14.1f %10s B   (paced at %s puts/s)\n" "$server" "$n" \
            "$(col 1)" "$(echo "$(col 2) / 1000" | bc -l)" "$(echo "$(col 3) / 1000" | bc -l)" \
            "$(echo "$(col 4) / 1000" | bc -l)" "$(col 5)" "$(col 6)"
    done
done
