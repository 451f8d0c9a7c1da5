#!/usr/bin/env bash
# ab.sh - this tree against an earlier commit, single node, side by side in one run.
#
#   bench/ab.sh [--base REV] [--rounds N] [--duration S] [--backend lmdb|memory]
#
# Builds the release binary of this tree (build-release) and of REV (default HEAD~1, built in a
# temporary git worktree), then runs N interleaved rounds (default 5). Each round starts a fresh
# server of each build in turn (LMDB unless --backend memory, a fresh data dir), loads the
# 10,000 keys, warms up for 2 s, and measures put c64 and linearizable range c64 with wrk and
# bench/kv.lua for S seconds each (default 8). Prints the median and range of each build and
# the ratio this/base, as markdown. The regression rule of the project: put c64 and range c64
# stay within 5% of the previous commit. Every run is bounded (wrk -d, counted loops).
set -euo pipefail
cd "$(dirname "$0")/.."

BASE=HEAD~1
ROUNDS=5
DURATION=8
BACKEND=lmdb
usage() {
    echo "usage: bench/ab.sh [--base REV] [--rounds N] [--duration S] [--backend lmdb|memory]" >&2
    exit 2
}
while [ $# -gt 0 ]; do
    case "$1" in
    --base) [ $# -ge 2 ] || usage; BASE=$2; shift 2 ;;
    --rounds) [ $# -ge 2 ] || usage; ROUNDS=$2; shift 2 ;;
    --duration) [ $# -ge 2 ] || usage; DURATION=$2; shift 2 ;;
    --backend) [ $# -ge 2 ] || usage; BACKEND=$2; shift 2 ;;
    *) usage ;;
    esac
done
[[ "$ROUNDS" =~ ^[1-9][0-9]*$ && "$DURATION" =~ ^[1-9][0-9]*$ ]] || usage
[[ "$BACKEND" == lmdb || "$BACKEND" == memory ]] || usage
log() { echo "ab: $*" >&2; }
die() { log "$*"; exit 1; }
command -v wrk >/dev/null || die "wrk is missing (apt-get install wrk)"

BASE_SHA=$(git rev-parse --short "$BASE^{commit}") || die "no such revision: $BASE"
HEAD_SHA=$(git rev-parse --short HEAD)
[ -z "$(git status --porcelain --untracked-files=no)" ] || HEAD_SHA="$HEAD_SHA+changes"
TMP=$(mktemp -d /tmp/metastore-ab.XXXXXX)
PID=
cleanup() {
    [ -n "$PID" ] && { kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; }
    git worktree remove --force "$TMP/base" >/dev/null 2>&1 || true
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

scripts/dev.sh build >&2
git worktree add --detach -q "$TMP/base" "$BASE_SHA"
(cd "$TMP/base" && meson setup build-release --buildtype=release -Dtests=false >/dev/null &&
    ninja -C build-release metastore >&2)
declare -A BIN=([this]=build-release/metastore [base]="$TMP/base/build-release/metastore")

PORT=
# start NAME: a fresh server of that build on free loopback ports, ready when a range answers.
start() {
    local client peer _
    read -r client peer <<<"$(python3 -c '
import socket
s = [socket.socket() for _ in range(2)]
for x in s:
    x.bind(("127.0.0.1", 0))
print(" ".join(str(x.getsockname()[1]) for x in s))')"
    rm -rf "$TMP/data"
    "${BIN[$1]}" --data-dir "$TMP/data" --backend "$BACKEND" --log-level warn \
        --listen-client-urls "http://127.0.0.1:$client" \
        --advertise-client-urls "http://127.0.0.1:$client" \
        --listen-peer-urls "http://127.0.0.1:$peer" \
        --initial-advertise-peer-urls "http://127.0.0.1:$peer" \
        --initial-cluster "default=http://127.0.0.1:$peer" >"$TMP/$1.log" 2>&1 &
    PID=$!
    PORT=$client
    for _ in $(seq 100); do
        curl -sf -m 2 "http://127.0.0.1:$client/v3/kv/range" -d '{"key":"AA=="}' >/dev/null \
            2>&1 && return 0
        kill -0 "$PID" 2>/dev/null || break
        sleep 0.1
    done
    tail -20 "$TMP/$1.log" >&2
    die "$1 did not start"
}
stop() {
    kill "$PID" 2>/dev/null || true
    wait "$PID" 2>/dev/null || true
    PID=
}
# rate SECONDS MODE...: requests per second of one wrk run (2 threads, 64 connections).
rate() {
    local s=$1
    shift
    wrk -t 2 -c 64 -d "${s}s" --timeout 5s -s bench/kv.lua "http://127.0.0.1:$PORT" -- "$@" \
        </dev/null | awk '/^Requests\/sec:/ {printf "%d", $2}'
}

declare -A R
for round in $(seq "$ROUNDS"); do
    for b in base this; do
        start "$b"
        rate 30 load 10000 2 >/dev/null
        rate 2 put >/dev/null
        put=$(rate "$DURATION" put)
        range=$(rate "$DURATION" range)
        stop
        R[$b.put]+="$put "
        R[$b.range]+="$range "
        log "round $round/$ROUNDS $b: put $put/s, range $range/s"
    done
done

# stats "N N N ...": median (min-max)
stats() { tr ' ' '\n' <<<"$1" | sed '/^$/d' | sort -n | awk '{v[NR] = $1}
    END { m = NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2;
          printf "%d %d %d", m, v[1], v[NR] }'; }
echo "| workload ($BACKEND, c64) | base $BASE_SHA, median of $ROUNDS (range) | this $HEAD_SHA, median of $ROUNDS (range) | this / base |"
echo "|---|---:|---:|---:|"
for w in put range; do
    read -r bm blo bhi <<<"$(stats "${R[base.$w]}")"
    read -r tm tlo thi <<<"$(stats "${R[this.$w]}")"
    echo "| $w | $bm/s ($blo–$bhi) | $tm/s ($tlo–$thi) | $(awk "BEGIN { printf \"%.2f\", $tm / $bm }")× |"
done
