#!/usr/bin/env bash
# run.sh - metastore and etcd side by side, on the same workloads, interleaved (issue 7).
#
#   bench/run.sh [--duration S] [--quick] [--no-etcd] [--pin] [--cluster] [--out FILE]
#
# Installs what is missing (the build dependencies through scripts/dev.sh, wrk, etcd-server),
# builds the release binaries, then, for each table, starts a fresh metastore (LMDB, one
# fdatasync per batch) and a fresh etcd 3.4 (/usr/bin/etcd, its default fsync per batch) on
# free loopback ports and measures, one server after the other for each workload:
#   RSS idle, then loading 100k keys of 256 B (c64) and RSS after it;
#   put (10k keys, 256 B) at c16 and c64; linearizable and serializable single-key range, 100-key
#   prefix range and txn (version > 0 ? put), c64 (wrk + bench/kv.lua, a 2 s warm-up first);
#   the same put, range and txn over gRPC, c64 (h2load from nghttp2-client, one fixed request
#   body per workload, latencies from its per-request log);
#   watch fan-out to 100, 1,000 and 10,000 watchers (build-release/bench/watch_bench), and to
#   1,000 watchers over gRPC (watch_bench --grpc).
# Table 1 leaves both CPUs to everybody; table 2 (--pin alone) runs each server on CPU 0
# (etcd with GOMAXPROCS=1) and wrk / watch_bench on CPU 1. Table 3 (--cluster alone) runs a
# 3-member cluster of each on loopback: put c64 through the leader, linearizable and
# serializable range c64 on a follower, then the failover time (kill -9 of the leader until a
# write through a survivor succeeds, 3 trials). Prints markdown tables; --out also
# writes them to FILE. --quick is a smoke test (1 s runs, 10k keys, 100 and 1,000 watchers;
# the 1,000 over gRPC too).
# Every run is bounded (wrk -d, watch_bench --timeout, counted loops).
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=8
QUICK=0
ETCD=1
MODES="shared pinned cluster"
OUT=
usage() {
    echo "usage: bench/run.sh [--duration S] [--quick] [--no-etcd] [--pin] [--cluster]" \
        "[--out FILE]" >&2
    exit 2
}
while [ $# -gt 0 ]; do
    case "$1" in
    --duration) [ $# -ge 2 ] || usage; DURATION=$2; shift 2 ;;
    --quick) QUICK=1; shift ;;
    --no-etcd) ETCD=0; shift ;;
    --pin) MODES=pinned; shift ;;
    --cluster) MODES=cluster; shift ;;
    --out) [ $# -ge 2 ] || usage; OUT=$2; shift 2 ;;
    *) usage ;;
    esac
done
[[ "$DURATION" =~ ^[1-9][0-9]*$ ]] || usage

WARMUP=2
LOAD_KEYS=100000
WATCHERS="100 1000 10000"
WATCH_EVENTS=500000 # events per throughput run on metastore; etcd gets 10x fewer
if [ "$QUICK" = 1 ]; then
    DURATION=1 WARMUP=1 LOAD_KEYS=10000 WATCHERS="100 1000" WATCH_EVENTS=100000
fi
SERVERS=metastore
[ "$ETCD" = 1 ] && SERVERS="etcd metastore"

log() { echo "run.sh [${SECONDS}s]: $*" >&2; }
die() { log "$*"; exit 1; }

# --- setup -----------------------------------------------------------------------------------

install_tools() {
    local p missing=() sudo=""
    local pkgs=(wrk util-linux nghttp2-client)
    [ "$ETCD" = 1 ] && pkgs+=(etcd-server)
    for p in "${pkgs[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" \
            || missing+=("$p")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        [ "$(id -u)" -ne 0 ] && sudo=sudo
        log "installing ${missing[*]}"
        $sudo apt-get update -q
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends \
            "${missing[@]}"
    fi
}

install_tools
scripts/dev.sh build >&2 # build dependencies, then build-release (meson release, no tests)
METASTORE=build-release/metastore
WATCH_BENCH=build-release/bench/watch_bench
ETCD_BIN=/usr/bin/etcd
[ -x "$METASTORE" ] && [ -x "$WATCH_BENCH" ] || die "release build missing $METASTORE"
[ "$ETCD" = 0 ] || [ -x "$ETCD_BIN" ] || die "$ETCD_BIN missing (package etcd-server)"
if [[ "$MODES" == *pinned* ]] && [ "$(nproc)" -lt 2 ]; then
    die "the pinned table needs 2 CPUs, this machine has $(nproc)"
fi
ulimit -n "$(ulimit -Hn)" # 10,000 watch streams on each side

TMP=$(mktemp -d /tmp/metastore-bench.XXXXXX)
declare -A PID PORT
LOADER_PID=
cleanup() {
    local s
    if [ -n "$LOADER_PID" ]; then kill "$LOADER_PID" 2>/dev/null || true; fi
    for s in "${!CPIDS[@]}"; do stop_cluster "$s"; done
    for s in "${!PID[@]}"; do stop_server "$s"; done
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
on_err() { log "failed at line $1: ${2%%$'\n'*}"; }
trap 'on_err $LINENO "$BASH_COMMAND"' ERR

# --- servers ---------------------------------------------------------------------------------

# Two free loopback ports, held together while both are picked so they differ.
free_ports() {
    python3 -c '
import socket
socks = [socket.socket() for _ in range(2)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))'
}

# start_server NAME: a fresh data dir; sets PORT[NAME] and PID[NAME]. SRV_PREFIX pins it.
start_server() {
    local name=$1 client peer
    read -r client peer <<<"$(free_ports)"
    rm -rf "$TMP/$name.data"
    local flags=(--data-dir "$TMP/$name.data"
        --listen-client-urls "http://127.0.0.1:$client"
        --advertise-client-urls "http://127.0.0.1:$client"
        --listen-peer-urls "http://127.0.0.1:$peer"
        --initial-advertise-peer-urls "http://127.0.0.1:$peer"
        --initial-cluster "default=http://127.0.0.1:$peer")
    if [ "$name" = metastore ]; then
        $SRV_PREFIX "$METASTORE" "${flags[@]}" --log-level warn >"$TMP/$name.log" 2>&1 &
    else
        env $SRV_ENV $SRV_PREFIX "$ETCD_BIN" "${flags[@]}" >"$TMP/$name.log" 2>&1 &
    fi
    PID[$name]=$!
    PORT[$name]=$client
    # Ready when a linearizable read answers (etcd has then elected itself).
    local _
    for _ in $(seq 100); do
        if curl -sf -m 2 "http://127.0.0.1:$client/v3/kv/range" -d '{"key":"AA=="}' \
            >/dev/null 2>&1; then
            return 0
        fi
        kill -0 "${PID[$name]}" 2>/dev/null || break
        sleep 0.1
    done
    tail -20 "$TMP/$name.log" >&2
    die "$name did not start"
}

stop_server() {
    local name=$1 pid=${PID[$1]:-} _
    [ -n "$pid" ] || return 0
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 50); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -9 "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    unset "PID[$name]"
}

# start_cluster NAME: three fresh members; PORT[NAME] is member 1's client port, CPORTS[NAME] and
# CPIDS[NAME] list all three. Waits until a linearizable read answers on every member.
declare -A CPORTS CPIDS
start_cluster() {
    local name=$1 i ic="" c p clients=() peers=() pids=() _
    for i in 1 2 3; do
        read -r c p <<<"$(free_ports)"
        clients+=("$c")
        peers+=("$p")
        ic+="${ic:+,}$name$i=http://127.0.0.1:$p"
    done
    for i in 0 1 2; do
        rm -rf "$TMP/$name$i.data"
        local flags=(--name "$name$((i + 1))" --data-dir "$TMP/$name$i.data"
            --listen-client-urls "http://127.0.0.1:${clients[$i]}"
            --advertise-client-urls "http://127.0.0.1:${clients[$i]}"
            --listen-peer-urls "http://127.0.0.1:${peers[$i]}"
            --initial-advertise-peer-urls "http://127.0.0.1:${peers[$i]}"
            --initial-cluster "$ic" --initial-cluster-token "bench-$name")
        if [ "$name" = metastore ]; then
            "$METASTORE" "${flags[@]}" --log-level warn >>"$TMP/$name.log" 2>&1 &
        else
            "$ETCD_BIN" "${flags[@]}" >>"$TMP/$name.log" 2>&1 &
        fi
        pids+=($!)
    done
    CPORTS[$name]="${clients[*]}"
    CPIDS[$name]="${pids[*]}"
    PID[$name]=${pids[0]}
    PORT[$name]=${clients[0]}
    for c in "${clients[@]}"; do
        for _ in $(seq 200); do
            curl -sf -m 2 "http://127.0.0.1:$c/v3/kv/range" -d '{"key":"AA=="}' >/dev/null 2>&1 \
                && break
            sleep 0.1
        done
    done
}

stop_cluster() {
    local name=$1 p _
    for p in ${CPIDS[$name]:-}; do kill "$p" 2>/dev/null || true; done
    for p in ${CPIDS[$name]:-}; do
        for _ in $(seq 50); do
            kill -0 "$p" 2>/dev/null || break
            sleep 0.1
        done
        kill -9 "$p" 2>/dev/null || true
        wait "$p" 2>/dev/null || true
    done
    unset "CPIDS[$name]" "PID[$name]"
}

# cluster_leader NAME: the index (0-2) of the member that leads, as member 1 (or 2) sees it.
cluster_leader() {
    local name=$1 ports i lead id _
    read -ra ports <<<"${CPORTS[$name]}"
    for _ in $(seq 100); do
        for i in 0 1 2; do
            lead=$(curl -s -m 1 "http://127.0.0.1:${ports[$i]}/v3/maintenance/status" -d '{}' \
                | grep -o '"leader":"[0-9]*"' | tr -dc 0-9) || true
            [ -n "$lead" ] && break
        done
        if [ -n "$lead" ]; then
            for i in 0 1 2; do
                id=$(curl -s -m 1 "http://127.0.0.1:${ports[$i]}/v3/maintenance/status" -d '{}' \
                    | grep -o '"member_id":"[0-9]*"' | tr -dc 0-9) || true
                [ "$id" = "$lead" ] && { echo "$i"; return 0; }
            done
        fi
        sleep 0.1
    done
    die "$name: no leader"
}

# failover NAME: ms from kill -9 of the leader until a put through a survivor succeeds. A put
# sent before the new leader exists is lost with the old one (both servers then answer only
# at their request timeout), so each try gives up after 0.1 s: the figure is exact to about
# 0.12 s (with 0.5 s, as before, it took one of a few values 0.52 s apart).
failover() {
    local name=$1 ports pids l s t0 t1 _
    read -ra ports <<<"${CPORTS[$name]}"
    read -ra pids <<<"${CPIDS[$name]}"
    l=$(cluster_leader "$name")
    s=$(((l + 1) % 3))
    t0=$(date +%s%N)
    kill -9 "${pids[$l]}"
    for _ in $(seq 1500); do
        curl -sf -m 0.1 "http://127.0.0.1:${ports[$s]}/v3/kv/put" \
            -d "{\"key\":\"$(b64 failover)\",\"value\":\"$VALUE\"}" >/dev/null 2>&1 && break
        sleep 0.02
    done
    t1=$(date +%s%N)
    echo $(((t1 - t0) / 1000000))
}

run_cluster_table() {
    local table=cluster s i=0 l ports ms trials
    SRV_PREFIX="" SRV_ENV="" CLI_PREFIX="" THREADS=2
    for s in $SERVERS; do start_cluster "$s"; done
    for s in $SERVERS; do
        read -ra ports <<<"${CPORTS[$s]}"
        l=$(cluster_leader "$s")
        PORT[$s]=${ports[$l]}
        load_keys "$table" "$s"
        load_prefix "$s"
        precheck "$s"
    done
    for s in $(in_turn 0); do
        read -ra ports <<<"${CPORTS[$s]}"
        PORT[$s]=${ports[$(cluster_leader "$s")]}
        bench_kv "$table" "put through the leader, 256 B, c64" 64 put "$s"
    done
    for s in $(in_turn 1); do
        read -ra ports <<<"${CPORTS[$s]}"
        PORT[$s]=${ports[$((($(cluster_leader "$s") + 1) % 3))]}
        bench_kv "$table" "range one key on a follower, linearizable, c64" 64 range "$s"
        bench_kv "$table" "range one key on a follower, serializable, c64" 64 serial "$s"
    done
    for s in $SERVERS; do stop_cluster "$s"; done
    for s in $SERVERS; do
        trials=""
        for i in 1 2 3; do
            start_cluster "$s"
            ms=$(failover "$s")
            trials+="${trials:+ }$ms"
            stop_cluster "$s"
        done
        log "$table: failover on $s: $trials ms"
        result "$table" "time:failover, kill -9 of the leader until a put succeeds (ms, median of 3)" \
            "$s" "$(echo "$trials" | tr ' ' '\n' | sort -n | sed -n 2p)" "" "" "$trials"
        log_summary "$table" "$s"
    done
}

rss_mb() { # VmRSS of a server in MB
    awk '/^VmRSS:/ {printf "%.1f", $2 / 1024}' "/proc/${PID[$1]}/status"
}

# --- requests --------------------------------------------------------------------------------

b64() { printf '%s' "$1" | base64 -w0; }
calc() { awk "BEGIN { print $1 }"; }
VALUE=$(head -c 256 /dev/zero | tr '\0' v | base64 -w0)

# call NAME PATH BODY: the answer's body; aborts on anything but HTTP 200.
call() {
    local out code
    out=$(curl -s -m 10 -w '\n%{http_code}' "http://127.0.0.1:${PORT[$1]}$2" -d "$3") \
        || die "$1: $2 failed (curl)"
    code=${out##*$'\n'}
    out=${out%$'\n'*}
    [ "$code" = 200 ] || die "$1: $2 $3 -> HTTP $code: $out"
    printf '%s' "$out"
}

# expect NAME PATH BODY PATTERN: one request by curl, whose answer must contain PATTERN.
expect() {
    local out
    out=$(call "$1" "$2" "$3")
    [[ "$out" == *"$4"* ]] || die "$1: $2 $3 -> $out (expected $4)"
}

# The 100 keys of the prefix range: pfx/000 .. pfx/099.
load_prefix() {
    local i
    for i in $(seq -f '%03g' 0 99); do
        call "$1" /v3/kv/put "{\"key\":\"$(b64 "pfx/$i")\",\"value\":\"$VALUE\"}" >/dev/null
    done
}

# One request of each workload by curl, with the bodies bench/kv.lua sends.
precheck() {
    local k
    k=$(b64 key00042)
    expect "$1" /v3/kv/put "{\"key\":\"$k\",\"value\":\"$VALUE\"}" '"revision"'
    expect "$1" /v3/kv/range "{\"key\":\"$k\"}" '"count":"1"'
    expect "$1" /v3/kv/range "{\"key\":\"$k\",\"serializable\":true}" '"count":"1"'
    expect "$1" /v3/kv/range "{\"key\":\"$(b64 pfx/)\",\"range_end\":\"$(b64 pfx0)\"}" \
        '"count":"100"'
    expect "$1" /v3/kv/txn "{\"compare\":[{\"key\":\"$k\",\"target\":\"VERSION\",\
\"result\":\"GREATER\",\"version\":\"0\"}],\"success\":[{\"request_put\":{\"key\":\"$k\",\
\"value\":\"$VALUE\"}}]}" '"succeeded":true'
}

key_count() { # keys key00000.. on a server
    call "$1" /v3/kv/range "{\"key\":\"$(b64 key)\",\"range_end\":\"$(b64 kez)\",\"count_only\":true}" \
        | { grep -o '"count":"[0-9]*"' || true; } | tr -dc 0-9
}

# --- wrk -------------------------------------------------------------------------------------

# wrk_run NAME SECONDS CONNS OUTFILE ARGS...: one wrk run of bench/kv.lua (ARGS after --).
wrk_run() {
    local name=$1 secs=$2 conns=$3 out=$4
    shift 4
    $CLI_PREFIX wrk -t "$THREADS" -c "$conns" -d "${secs}s" --timeout 5s --latency \
        -s bench/kv.lua "http://127.0.0.1:${PORT[$name]}" -- "$@" </dev/null >"$out" 2>&1 \
        || { cat "$out" >&2; die "$name: wrk failed"; }
}

# wrk_figures FILE: "req/s p50_ms p99_ms errors" from wrk's report; errors counts non-2xx
# answers, socket errors and answers kv.lua's check found unexpected.
wrk_figures() {
    awk '
    function ms(v) {
        if (v ~ /us$/) return v / 1000
        if (v ~ /ms$/) return v + 0
        if (v ~ /m$/) return v * 60000
        if (v ~ /s$/) return v * 1000
        return v
    }
    /^Requests\/sec:/ { rps = $2 }
    /^ +50% / { p50 = ms($2) }
    /^ +99% / { p99 = ms($2) }
    /Non-2xx or 3xx responses:/ { err += $NF }
    /Socket errors:/ { gsub(/,/, ""); err += $4 + $6 + $8 + $10 }
    /^check: answers=/ { split($3, u, "="); err += u[2] }
    END { printf "%s %s %s %d\n", rps, p50, p99, err }' "$1"
}

# result TABLE WORKLOAD SERVER VALUE P50 P99 NOTE: one line of $TMP/results (tab-separated).
result() {
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$@" >>"$TMP/results"
}

# bench_kv TABLE WORKLOAD CONNS MODE SERVER: warm-up (checked), then the measured run.
bench_kv() {
    local table=$1 workload=$2 conns=$3 mode=$4 name=$5 rps p50 p99 err note=""
    log "$table: $workload on $name"
    wrk_run "$name" "$WARMUP" "$conns" "$TMP/warm" "$mode" check
    read -r rps p50 p99 err <<<"$(wrk_figures "$TMP/warm")"
    if [ "$err" != 0 ]; then
        grep -E 'Non-2xx|Socket errors|check:' "$TMP/warm" >&2 || true
        die "$name: $workload: $err bad answers in the warm-up"
    fi
    wrk_run "$name" "$DURATION" "$conns" "$TMP/wrk" "$mode"
    read -r rps p50 p99 err <<<"$(wrk_figures "$TMP/wrk")"
    if [ "$err" != 0 ]; then
        note="$err errors"
        log "$name: $workload: $err non-2xx answers or socket errors"
        grep -E 'Non-2xx|Socket errors' "$TMP/wrk" >&2 || true
    fi
    result "$table" "$workload" "$name" "$rps" "$p50" "$p99" "$note"
}

# load_keys TABLE SERVER: keys 0..LOAD_KEYS-1 by wrk (c64), until the server counts them all.
load_keys() {
    local table=$1 name=$2 start end n=0 rps p50 p99 err note="" _
    log "$table: loading $LOAD_KEYS keys into $name"
    start=$(date +%s.%N)
    $CLI_PREFIX wrk -t "$THREADS" -c 64 -d 300s --timeout 5s --latency -s bench/kv.lua \
        "http://127.0.0.1:${PORT[$name]}" -- load "$LOAD_KEYS" "$THREADS" >"$TMP/load" 2>&1 &
    LOADER_PID=$!
    # wrk keeps its threads' -d even when all of them stopped, so stop it once all keys are in.
    for _ in $(seq 1500); do
        n=$(key_count "$name")
        n=${n:-0} # etcd and metastore leave out a zero count
        [ "$n" -ge "$LOAD_KEYS" ] && break
        kill -0 "$LOADER_PID" 2>/dev/null || break
        sleep 0.2
    done
    end=$(date +%s.%N)
    kill -INT "$LOADER_PID" 2>/dev/null || true
    wait "$LOADER_PID" || true
    LOADER_PID=
    read -r rps p50 p99 err <<<"$(wrk_figures "$TMP/load")"
    rps=$(calc "$n / ($end - $start)")
    [ "$n" -ge "$LOAD_KEYS" ] || note="only $n keys loaded"
    [ "$err" = 0 ] || note="${note:+$note, }$err errors"
    [ -z "$note" ] || log "$name: load: $note"
    result "$table" "load $((LOAD_KEYS / 1000))k keys, 256 B, c64" "$name" "$rps" "$p50" "$p99" \
        "$note"
    result "$table" "mem:RSS after loading $((LOAD_KEYS / 1000))k keys of 256 B (MB)" "$name" \
        "$(rss_mb "$name")" "" "" ""
}

# --- gRPC (h2load) ---------------------------------------------------------------------------

# grpc_body KIND FILE: one gRPC request message (5-byte prefix + protobuf) for h2load -d:
# put key00042 = 256 B; range key00042; txn version(key00042) > 0 ? put key00042.
grpc_body() {
    python3 - "$1" "$2" <<'PY'
import struct, sys
def varint(n):
    out = b""
    while True:
        b, n = n & 0x7f, n >> 7
        if n:
            out += bytes([b | 0x80])
        else:
            return out + bytes([b])
def field(num, payload):
    return varint(num << 3 | 2) + varint(len(payload)) + payload
def vfield(num, v):
    return varint(num << 3) + varint(v)
key, value = b"key00042", b"v" * 256
put = field(1, key) + field(2, value)
msg = {
    "put": put,
    "range": field(1, key),
    # Compare{result GREATER(1), target VERSION(0), key, version 0}; success: RequestOp.put
    "txn": field(1, vfield(1, 1) + field(3, key) + vfield(4, 0)) + field(2, field(2, put)),
}[sys.argv[1]]
open(sys.argv[2], "wb").write(struct.pack(">BI", 0, len(msg)) + msg)
PY
}

# h2load_run NAME SECONDS CONNS KIND OUTFILE LOGFILE: one h2load run of a unary KV method.
h2load_run() {
    local name=$1 secs=$2 conns=$3 kind=$4 out=$5 logf=$6 method
    case "$kind" in put) method=Put ;; range) method=Range ;; txn) method=Txn ;; esac
    grpc_body "$kind" "$TMP/grpc.body"
    rm -f "$logf" # h2load appends to its log file: one run's samples only
    $CLI_PREFIX h2load -t "$THREADS" -c "$conns" -m 1 -D "$secs" -d "$TMP/grpc.body" \
        -H 'content-type: application/grpc' -H 'te: trailers' --log-file="$logf" \
        "http://127.0.0.1:${PORT[$name]}/etcdserverpb.KV/$method" </dev/null >"$out" 2>&1 \
        || { cat "$out" >&2; die "$name: h2load failed"; }
}

# h2load_figures OUT LOG: "req/s p50_ms p99_ms errors"; errors: requests not answered 2xx
# (a gRPC error would still be HTTP 200: grpc_check sends each request through etcdctl first).
h2load_figures() {
    local rps err p50 p99
    rps=$(awk '/^finished in/ {gsub(/,/, ""); print $4}' "$1")
    err=$(awk '/^requests:/ {gsub(/,/, ""); print $10 + $12 + $14}' "$1")
    read -r p50 p99 < <(awk -F'\t' '{print $3}' "$2" | sort -n \
        | awk '{v[NR] = $1} END { if (NR) printf "%s %s\n", v[int(NR * 0.5) + 1] / 1000,
            v[int(NR * 0.99) + 1] / 1000; else print "0 0" }')
    echo "$rps $p50 $p99 ${err:-0}"
}

# grpc_check NAME: each workload's request once through etcdctl, which reports gRPC errors.
grpc_check() {
    local e=(env ETCDCTL_API=3 etcdctl --endpoints "http://127.0.0.1:${PORT[$1]}")
    "${e[@]}" put key00042 "$(head -c 256 /dev/zero | tr '\0' v)" >/dev/null \
        || die "$1: gRPC put failed"
    local out
    out=$("${e[@]}" get key00042 --print-value-only 2>&1) && grep -q '^v*$' <<<"$out" \
        || die "$1: gRPC range failed: $out"
    out=$(printf 'version("key00042") > "0"\n\nput key00042 v\n\n\n' | "${e[@]}" txn -i 2>&1) \
        && grep -q SUCCESS <<<"$out" || die "$1: gRPC txn failed: $out"
}

# bench_grpc TABLE WORKLOAD CONNS KIND SERVER: warm-up (its errors abort), then the measured run.
bench_grpc() {
    local table=$1 workload=$2 conns=$3 kind=$4 name=$5 rps p50 p99 err note=""
    log "$table: $workload on $name"
    h2load_run "$name" "$WARMUP" "$conns" "$kind" "$TMP/h2" "$TMP/h2.log"
    read -r rps p50 p99 err <<<"$(h2load_figures "$TMP/h2" "$TMP/h2.log")"
    [ "$err" = 0 ] || { cat "$TMP/h2" >&2; die "$name: $workload: $err bad answers in the warm-up"; }
    h2load_run "$name" "$DURATION" "$conns" "$kind" "$TMP/h2" "$TMP/h2.log"
    read -r rps p50 p99 err <<<"$(h2load_figures "$TMP/h2" "$TMP/h2.log")"
    if [ "$err" != 0 ]; then
        note="$err errors"
        log "$name: $workload: $err requests failed"
    fi
    result "$table" "$workload" "$name" "$rps" "$p50" "$p99" "$note"
}

# --- watch -----------------------------------------------------------------------------------

watch_field() { grep -o "$1=[0-9.]*" "$2" | head -1 | cut -d= -f2; }

# bench_watch TABLE N SERVER [grpc]: events/s (as fast as 8 x 16 in flight allow) and RSS per
# watcher, then delivery latency with puts paced at 50,000 events/s offered. Through the
# gateway, etcd gets 10 times fewer puts (it delivers 10-30 times fewer events per second);
# over gRPC, where it is faster, as many as metastore.
bench_watch() {
    local table=$1 n=$2 name=$3 door=${4:-} puts rate paced eps="" p50="" p99="" per="" note=""
    local flags=() over=""
    [ "$door" = grpc ] && flags=(--grpc) over=" over gRPC"
    log "$table: watch fan-out to $n watchers$over on $name"
    puts=$((WATCH_EVENTS / n))
    [ "$name" = etcd ] && [ "$door" != grpc ] && puts=$((puts / 10))
    [ "$puts" -ge 10 ] || puts=10
    rate=$((50000 / n))
    [ "$rate" -ge 1 ] || rate=1
    paced=$rate # one second's worth
    [ "$paced" -ge 5 ] || paced=5
    if $CLI_PREFIX "$WATCH_BENCH" "${flags[@]}" --port "${PORT[$name]}" --watchers "$n" \
        --puts "$puts" --conns 8 --window 16 --pid "${PID[$name]}" --timeout 60 >"$TMP/watch" 2>&1; then
        eps=$(watch_field events_per_sec "$TMP/watch")
        per=$(watch_field rss_per_watcher_bytes "$TMP/watch")
    else
        note="throughput run failed: $(tail -1 "$TMP/watch")"
    fi
    if $CLI_PREFIX "$WATCH_BENCH" "${flags[@]}" --port "${PORT[$name]}" --watchers "$n" \
        --puts "$paced" --rate "$rate" --conns 16 --window 1 --timeout 60 >"$TMP/watch" 2>&1; then
        p50=$(calc "$(watch_field p50 "$TMP/watch") / 1000")
        p99=$(calc "$(watch_field p99 "$TMP/watch") / 1000")
    else
        note="${note:+$note; }paced run failed: $(tail -1 "$TMP/watch")"
    fi
    [ -z "$note" ] || log "$name: watch $n$over: $note"
    result "$table" "watch:$n:$rate${door:+:$door}" "$name" "$eps" "$p50" "$p99" "$note"
    [ -z "$per" ] || per=$(calc "$per / 1024")
    result "$table" "mem:RSS per watcher, $n watchers$over (KB)" "$name" "$per" "" "" ""
}

# --- one table -------------------------------------------------------------------------------

# in_turn I: the servers in the order for the I-th workload (alternating, so drift in the
# background load falls on both alike).
in_turn() {
    if [ $(($1 % 2)) = 0 ]; then echo "$SERVERS"; else echo "$SERVERS" | tr ' ' '\n' | tac; fi
}

run_table() {
    local table=$1 s i=0 n spec
    if [ "$table" = pinned ]; then
        SRV_PREFIX="taskset -c 0" SRV_ENV="GOMAXPROCS=1" CLI_PREFIX="taskset -c 1" THREADS=1
    else
        SRV_PREFIX="" SRV_ENV="" CLI_PREFIX="" THREADS=2
    fi
    for s in $SERVERS; do start_server "$s"; done
    for s in $SERVERS; do
        result "$table" "mem:RSS idle, empty data dir (MB)" "$s" "$(rss_mb "$s")" "" "" ""
    done
    for s in $(in_turn 0); do load_keys "$table" "$s"; done
    for s in $SERVERS; do
        load_prefix "$s"
        precheck "$s"
    done
    while read -r n mode spec; do
        i=$((i + 1))
        for s in $(in_turn "$i"); do bench_kv "$table" "$spec" "$n" "$mode" "$s"; done
    done <<EOF
16 put put, 10k keys, 256 B, c16
64 put put, 10k keys, 256 B, c64
64 range range one key, linearizable, c64
64 serial range one key, serializable, c64
64 prefix range 100 keys (prefix), c64
64 txn txn (version > 0 ? put), c64
EOF
    for s in $SERVERS; do grpc_check "$s"; done
    while read -r n kind spec; do
        i=$((i + 1))
        for s in $(in_turn "$i"); do bench_grpc "$table" "$spec" "$n" "$kind" "$s"; done
    done <<EOF
64 put gRPC put, one key, 256 B, c64
64 range gRPC range one key, linearizable, c64
64 txn gRPC txn (version > 0 ? put), c64
EOF
    stop_servers "$table"
    # Fresh servers for each fan-out, so that RSS per watcher is not memory freed earlier.
    for n in $WATCHERS; do
        i=$((i + 1))
        for s in $SERVERS; do start_server "$s"; done
        for s in $(in_turn "$i"); do bench_watch "$table" "$n" "$s"; done
        stop_servers "$table"
    done
    i=$((i + 1))
    for s in $SERVERS; do start_server "$s"; done
    for s in $(in_turn "$i"); do bench_watch "$table" 1000 "$s" grpc; done
    stop_servers "$table"
}

stop_servers() {
    local s
    for s in $SERVERS; do
        stop_server "$s"
        log_summary "$1" "$s"
    done
}

# log_summary TABLE SERVER: how many warnings and errors the server logged, and the commonest.
log_summary() {
    # etcd 3.4 logs "date time W | pkg: text"; metastore logs JSON lines ("level":"warn").
    # Left out: etcd's warnings at every start (capnslog, simple token) and at stop (grpc).
    local re=' [WEC] \| |"level":"(warn|error)"|WARNING|panic|fatal'
    local usual="--logger=capnslog|simple token is not|addrConn.createTransport failed"
    grep -E "$re" "$TMP/$2.log" | grep -vE -e "$usual" \
        | sed -E 's/^[0-9/-]+ [0-9:.]+ //; s/"ts":"[^"]*",//; s/[0-9]+/N/g' \
        | sort | uniq -c | sort -rn >"$TMP/logsum" || true
    [ -s "$TMP/logsum" ] || return 0
    log "$1: $2 logged $(awk '{n += $1} END {print n}' "$TMP/logsum") warnings or errors;" \
        "the commonest (numbers as N):"
    head -5 "$TMP/logsum" | cut -c1-200 >&2
}

# --- report ----------------------------------------------------------------------------------

T0=$(date +%s)
LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
: >"$TMP/results"
for m in $MODES; do
    if [ "$m" = cluster ]; then run_cluster_table; else run_table "$m"; fi
done
ELAPSED=$(($(date +%s) - T0))

machine() {
    local ev=""
    [ "$ETCD" = 1 ] && ev=$("$ETCD_BIN" --version | awk '/^etcd Version/ {print $3}')
    printf 'date=%s\nnproc=%s\ncpu=%s\nkernel=%s\nload=%s\nload0=%s\netcd=%s\ncommit=%s\n' \
        "$(date -u '+%Y-%m-%d %H:%M UTC')" "$(nproc)" \
        "$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)" "$(uname -sr)" \
        "$(cut -d' ' -f1-3 /proc/loadavg)" "$LOAD0" "$ev" \
        "$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
}
machine >"$TMP/machine"
printf 'duration=%s\nwarmup=%s\nelapsed=%s\nquick=%s\n' "$DURATION" "$WARMUP" "$ELAPSED" \
    "$QUICK" >>"$TMP/machine"

python3 - "$TMP/results" "$TMP/machine" >"$TMP/report.md" <<'PY'
import sys

rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1])]
info = dict(l.rstrip("\n").split("=", 1) for l in open(sys.argv[2]) if "=" in l)

def num(v):
    try:
        return float(v)
    except ValueError:
        return None

def count(v):
    x = num(v)
    return "" if x is None else f"{x:,.0f}"

def ms(v):
    x = num(v)
    if x is None:
        return ""
    if x >= 10000:
        return "≥ 10 s" # watch_bench's histogram ends at 10 s
    if x >= 100:
        return f"{x:,.0f} ms"
    return f"{x:.2g} ms" if x < 1 else f"{x:.3g} ms"

def ratio(a, b):
    a, b = num(a), num(b)
    if a is None or not b:
        return ""
    r = a / b
    return f"{r:.2f}×" if r < 10 else f"{r:.1f}×"

def label(w):
    if w.startswith("watch:"):
        _, n, rate, *door = w.split(":")
        over = " over gRPC" if door == ["grpc"] else ""
        return (f"watch fan-out{over}, {int(n):,} watchers: events/s; delivery p50/p99 at "
                f"{int(rate):,} puts/s")
    return w

tables, figures = [], {}
for table, w, server, value, p50, p99, note in rows:
    if table not in tables:
        tables.append(table)
    figures.setdefault(table, {}).setdefault(w, {})[server] = (value, p50, p99, note)

out = []
print_ = out.append
print_(f"Run of {info['date']}: {info['nproc']} vCPUs ({info['cpu']}), {info['kernel']}, "
       f"load average {info['load0']} at the start, {info['load']} at the end; etcd {info['etcd'] or '(not run)'}, "
       f"metastore {info['commit']}; wrk runs of {info['duration']} s after a "
       f"{info['warmup']} s warm-up; {int(info['elapsed']) // 60} min "
       f"{int(info['elapsed']) % 60} s in all" + (" (--quick)" if info["quick"] == "1" else "")
       + ".")
titles = {
    "shared": "Both servers and the load generator share all CPUs",
    "pinned": "Server on CPU 0 (etcd with GOMAXPROCS=1), wrk and watch_bench on CPU 1",
    "cluster": "3-member clusters on loopback (both share all CPUs with wrk)",
}
notes = []
for table in tables:
    f = figures[table]
    print_("")
    print_(f"#### {titles[table]}")
    print_("")
    print_("| workload | etcd req/s | etcd p50 | etcd p99 | metastore req/s | metastore p50 "
           "| metastore p99 | metastore/etcd |")
    print_("|---|---:|---:|---:|---:|---:|---:|---|")
    for w, by in f.items():
        if w.startswith("mem:") or w.startswith("time:"):
            continue
        e = by.get("etcd", ("", "", "", ""))
        m = by.get("metastore", ("", "", "", ""))
        r = ratio(m[0], e[0])
        p99 = ratio(m[2], e[2])
        if p99 and num(e[2]) >= 10000:
            p99 = "≤ " + p99 # etcd's p99 is at least the 10 s shown
        if r and p99:
            r += f" (p99 {p99})"
        print_(f"| {label(w)} | {count(e[0])} | {ms(e[1])} | {ms(e[2])} | {count(m[0])} "
               f"| {ms(m[1])} | {ms(m[2])} | {r} |")
        for server, fig in (("etcd", e), ("metastore", m)):
            if fig[3] and not w.startswith("time:"):
                notes.append(f"{table}, {label(w)}, {server}: {fig[3]}")
    for kind, head in (("mem:", "memory (VmRSS)"), ("time:", "time")):
        ws = [w for w in f if w.startswith(kind)]
        if not ws:
            continue
        print_("")
        print_(f"| {head} | etcd | metastore | metastore/etcd |")
        print_("|---|---:|---:|---|")
        for w in ws:
            by = f[w]
            e = by.get("etcd", ("", "", "", ""))
            m = by.get("metastore", ("", "", "", ""))
            fmt = lambda v: "" if num(v) is None else f"{num(v):,.1f}"
            ex = lambda fig: f" ({fig[3]})" if kind == "time:" and fig[3] else ""
            print_(f"| {w[len(kind):]} | {fmt(e[0])}{ex(e)} | {fmt(m[0])}{ex(m)} "
                   f"| {ratio(m[0], e[0])} |")
if notes:
    print_("")
    print_("Flagged:")
    for n in notes:
        print_(f"* {n}")
print("\n".join(out))
PY

cat "$TMP/report.md"
if [ -n "$OUT" ]; then
    cp "$TMP/report.md" "$OUT"
    log "tables written to $OUT"
fi
