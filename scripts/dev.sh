#!/usr/bin/env bash
# dev.sh - set up, build, run and test metastore on Debian 12.
#
#   scripts/dev.sh start   install what is missing, build (release), start one node on
#                          127.0.0.1:2379 with data in ./default.metastore
#   scripts/dev.sh cluster install what is missing, build (release), start a 3-member cluster
#                          on loopback (clients 2379, 22379, 32379) in the foreground; Ctrl-C
#                          stops all three
#   scripts/dev.sh test    install what is missing (and etcd-server, for the compat suite),
#                          build with ASan+UBSan, run every suite
#   scripts/dev.sh build   install what is missing and build (release) only
#   scripts/dev.sh soak    [runs] [seconds] [backend] [jobs]: fault campaigns with random seeds,
#                          then totals (docs/testing.md)
#   scripts/dev.sh plant   <bug> [runs] [seconds] [backend]: a planted bug, and the first
#                          campaign seed that catches it
#
# Extra arguments after "start" or "cluster" are passed to the server (etcd's flags).
set -euo pipefail
cd "$(dirname "$0")/.."

PKGS=(build-essential meson ninja-build pkg-config python3 libevent-dev libjansson-dev
      liblmdb-dev check libsubunit-dev curl clang-format
      libnghttp2-dev libprotobuf-c-dev protobuf-c-compiler golang-etcd-server-dev)
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO=sudo

# True when Debian package $1 is installed.
installed() {
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"
}

install_pkgs() {
    local missing=()
    for p in "$@"; do
        installed "$p" || missing+=("$p")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        echo "dev.sh: installing ${missing[*]}" >&2
        $SUDO apt-get update -q
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends \
            "${missing[@]}"
    fi
}

install_deps() {
    install_pkgs "${PKGS[@]}"
}

# The compat suite compares answers with Debian's etcd (/usr/bin/etcd, started by the test on
# free loopback ports). The package would start an etcd service on 127.0.0.1:2379, where
# "dev.sh start" serves: install it with service starts refused (policy-rc.d, which both
# invoke-rc.d and deb-systemd-invoke obey), then keep the service from starting at boot.
install_test_deps() {
    install_deps
    install_pkgs etcd-client # etcdctl, for the gRPC compat suite
    installed etcd-server && return 0
    local policy=/usr/sbin/policy-rc.d created=0 rc=0
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null
        $SUDO chmod 755 "$policy"
        created=1
    fi
    install_pkgs etcd-server || rc=$?
    [ "$created" = 1 ] && $SUDO rm -f "$policy"
    [ "$rc" = 0 ] || return "$rc"
    if command -v systemctl >/dev/null; then
        $SUDO systemctl disable etcd.service >/dev/null 2>&1 || true
        [ -d /run/systemd/system ] && { $SUDO systemctl stop etcd.service || true; }
    elif [ -x /etc/init.d/etcd ]; then
        $SUDO /etc/init.d/etcd stop >/dev/null 2>&1 || true
        $SUDO update-rc.d etcd disable >/dev/null 2>&1 || true
    fi
    return 0
}

build_release() {
    if [ ! -f build-release/build.ninja ]; then
        meson setup build-release --buildtype=release -Dtests=false >/dev/null
    fi
    ninja -C build-release
}

build_test() {
    if [ ! -f build-test/build.ninja ]; then
        meson setup build-test --buildtype=debugoptimized -Db_sanitize=address,undefined \
            -Db_lundef=false -Dwerror=true -Dfault_points=true >/dev/null
    fi
    # The fault campaign's crash points and slow disk (test builds only, never shipped).
    grep -q '"name": "fault_points", "value": true' build-test/meson-info/intro-buildoptions.json ||
        meson configure build-test -Dfault_points=true >/dev/null
    ninja -C build-test
}

# Include boundaries of STYLE.md §2.
check_layering() {
    local bad=0
    if grep -rln '#include <lmdb.h>' src include | grep -v 'src/backend/be_lmdb.c$'; then
        echo "layering: <lmdb.h> outside be_lmdb.c" >&2; bad=1
    fi
    if grep -rlE '#include <event2/' src include \
        | grep -vE '^src/(main\.c|http/|server/|peer/|grpc/|gw/)'; then
        echo "layering: <event2/*> outside main.c, http/, server/, peer/, grpc/, gw/" >&2; bad=1
    fi
    if grep -rln '#include <jansson.h>' src include | grep -v '^src/config/cfg.c$'; then
        echo "layering: <jansson.h> outside config/cfg.c" >&2; bad=1
    fi
    if grep -rln '#include <openssl/ssl.h>' src include | grep -v '^src/tls/'; then
        echo "layering: <openssl/ssl.h> outside tls/" >&2; bad=1
    fi
    check_include_order || bad=1
    check_server_order || bad=1
    return $bad
}

# Inside server/, a file calls only files below it (news goes up through struct srv_hooks). The
# order is the list at the top of src/server/srv_int.h, one line per rank; a function defined
# in one file and called in a file of a higher rank fails the check.
check_server_order() {
    python3 - <<'PY'
import glob, os, re, sys
os.chdir("src/server")
head = open("srv_int.h", encoding="utf-8").read()
block = head[head.index("---- the files of server/"):]
block = block[block.index("----", 10) + 4:block.index("*/")]
rank = {}
for line in block.splitlines():
    m = re.match(r"\s*\*\s+([a-z_]+\.c(?:, [a-z_]+\.c)*)", line)
    if m:
        r = len(set(rank.values()))
        for f in m.group(1).split(", "):
            rank[f] = r
bad = 0
files = sorted(glob.glob("*.c"))
for f in files:
    if f not in rank:
        print(f"layering: src/server/{f} is not in srv_int.h's list of files", file=sys.stderr)
        bad = 1
defs = {}
for f in files:
    for m in re.finditer(r"^(?!static)[a-z][a-z_0-9 *]*?\b([a-z][a-z_0-9]*)\(", open(f).read(), re.M):
        defs.setdefault(m.group(1), f)
for f in files:
    src = re.sub(r"/\*.*?\*/", "", open(f).read(), flags=re.S)
    for fn, df in defs.items():
        if df != f and rank.get(df, 99) < rank.get(f, 99) and re.search(r"\b" + fn + r"\(", src):
            print(f"layering: src/server/{f} calls {fn} of {df}, a file above it", file=sys.stderr)
            bad = 1
sys.exit(bad)
PY
}

# The layer order of STYLE.md §2 for every #include "metastore/*.h" between modules: a file of
# module M (src/M/ or the contract header M owns) may include its own module's headers and those
# of lower layers, never a higher or unrelated same-layer module's. A new module or header must
# be added to the tables below.
check_include_order() {
    python3 - <<'PY'
import os, re, sys
layer = {"util": 0, "metrics": 0, "tls": 0, "json": 1, "http": 1, "raft": 1, "wal": 1, "backend": 1,
         "kv": 2, "lease": 2, "watch": 2, "config": 2, "auth": 2, "cluster": 2, "peer": 2,
         "server": 3, "grpc": 4, "gw": 4}
owner = {h: "util" for h in ("arena", "b64", "buf", "clock", "crc32c", "err", "faultpt", "fs",
                             "grow", "log", "mcache", "sha1", "sha256", "skiplist")}
owner.update(metrics="metrics", tls="tls", json="json", http="http", raft="raft", raft_codec="raft",
             wal="wal", snap="wal", be="backend", kv="kv", lease="lease", watch="watch",
             cfg="config", auth="auth", cluster="cluster", peer="peer", srv="server",
             grpc="grpc", gw="gw")
# Same-layer uses that are part of the design: metrics builds on util's buffers, the WAL stores
# raft records and snapshot files hold backend buckets, watch reads kv's history, and cluster
# checks the bootstrap flags of struct cfg (STYLE.md §2).
sideways = {("metrics", "util"), ("wal", "raft"), ("wal", "backend"), ("watch", "kv"),
            ("cluster", "config")}
bad = 0
def check(path, mod):
    global bad
    if mod not in layer:
        print(f"layering: {path}: module {mod} has no layer in dev.sh", file=sys.stderr)
        bad = 1
        return
    for n, line in enumerate(open(path, encoding="utf-8"), 1):
        m = re.match(r'\s*#\s*include\s+"metastore/([a-z0-9_]+)\.h"', line)
        if not m:
            continue
        dep = owner.get(m.group(1))
        if dep is None:
            print(f"layering: {path}:{n}: metastore/{m.group(1)}.h has no owner in dev.sh",
                  file=sys.stderr)
            bad = 1
        elif dep != mod and layer[dep] >= layer[mod] and (mod, dep) not in sideways:
            print(f"layering: {path}:{n}: {mod} (L{layer[mod]}) includes metastore/"
                  f"{m.group(1)}.h of {dep} (L{layer[dep]})", file=sys.stderr)
            bad = 1
for mod in sorted(os.listdir("src")):
    d = os.path.join("src", mod)
    for root, _, files in os.walk(d) if os.path.isdir(d) else ():
        for f in files:
            if f.endswith((".c", ".h")):
                check(os.path.join(root, f), mod)
for f in sorted(os.listdir("include/metastore")):
    h = f[:-2]
    if h not in owner:
        print(f"layering: include/metastore/{f} has no owner in dev.sh", file=sys.stderr)
        bad = 1
    else:
        check(os.path.join("include/metastore", f), owner[h])
sys.exit(bad)
PY
}

check_format() {
    local files
    files=$(find src include tests -name '*.[ch]' -not -path 'tests/fuzz/corpus/*')
    # shellcheck disable=SC2086
    clang-format --dry-run --Werror $files
}

# Sum Check's per-suite "Checks: N, Failures: F, Errors: E" lines into one closing line.
summarize() {
    python3 - "$1" <<'PY'
import json, re, sys
checks = fails = 0
suites = bad_suites = skipped = 0
for line in open(sys.argv[1]):
    t = json.loads(line)
    suites += 1
    if t.get("result") == "SKIP":
        skipped += 1
    elif t.get("result") not in ("OK", "EXPECTEDFAIL"):
        bad_suites += 1
    for m in re.finditer(r"Checks: (\d+), Failures: (\d+), Errors: (\d+)", t.get("stdout", "") or ""):
        c, f, e = map(int, m.groups())
        checks += c
        fails += f + e
print(f"suites: {suites - bad_suites - skipped} passed, {bad_suites} failed, {skipped} skipped")
print(f"checks: {checks - fails} passed, {fails} failed")
PY
}

cmd=${1:-}
shift || true
case "$cmd" in
start)
    install_deps
    build_release
    exec ./build-release/metastore --name default --data-dir ./default.metastore \
        --listen-client-urls http://127.0.0.1:2379 \
        --advertise-client-urls http://127.0.0.1:2379 "$@"
    ;;
cluster)
    # Three members on loopback (clients on 2379, 22379, 32379; peers on 2380, 22380, 32380),
    # data in ./cluster.metastore/<name>, in the foreground: Ctrl-C stops all three.
    install_deps
    build_release
    ic=infra1=http://127.0.0.1:2380,infra2=http://127.0.0.1:22380,infra3=http://127.0.0.1:32380
    pids=()
    stop_all() {
        trap - INT TERM
        for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
        wait
    }
    trap stop_all INT TERM
    mkdir -p cluster.metastore
    for i in 1 2 3; do
        port=$([ "$i" = 1 ] && echo 2379 || echo "${i}2379")
        peer=$((port + 1))
        ./build-release/metastore --name "infra$i" --data-dir "cluster.metastore/infra$i" \
            --listen-client-urls "http://127.0.0.1:$port" \
            --advertise-client-urls "http://127.0.0.1:$port" \
            --listen-peer-urls "http://127.0.0.1:$peer" \
            --initial-advertise-peer-urls "http://127.0.0.1:$peer" \
            --initial-cluster "$ic" --initial-cluster-token metastore-dev-cluster "$@" &
        pids+=($!)
    done
    wait -n || true
    stop_all
    ;;
build)
    install_deps
    build_release
    ;;
test)
    install_test_deps
    check_layering
    check_format
    build_test
    rc=0
    ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1 \
        meson test -C build-test --print-errorlogs --num-processes 2 "$@" ||
        rc=$?
    summarize build-test/meson-logs/testlog.json
    exit $rc
    ;;
soak)
    # scripts/dev.sh soak [runs] [seconds] [backend] [jobs]: fault campaigns with random seeds
    # (tests/fault/test_fault.c), jobs at a time (default 1), backend lmdb, memory or both (the
    # default: runs alternate); then the totals. METASTORE_FAULT_TARGET=etcd runs them against
    # Debian's etcd instead. A failing run's log stays in build-test/soak/ and its seed replays
    # it: METASTORE_FAULT_SEED=<seed> (see docs/testing.md).
    install_test_deps
    build_test
    runs=${1:-100}
    secs=${2:-60}
    be=${3:-both}
    jobs=${4:-1}
    mkdir -p build-test/soak
    log=build-test/soak/summary.txt
    : >"$log"
    soak_one() { # $1: run number
        local seed b out
        seed=$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')
        b=$be
        [ "$be" = both ] && { [ $(($1 % 2)) = 0 ] && b=lmdb || b=memory; }
        out="build-test/soak/run-$seed.log"
        if METASTORE_BIN=build-test/metastore METASTORE_FAULT_SEED="$seed" \
            METASTORE_FAULT_RUN_MS=$((secs * 1000)) METASTORE_TEST_BACKEND="$b" \
            METASTORE_FAULT_POINTS=1 \
            timeout $((secs + 600)) build-test/tests/fault/test_fault >"$out" 2>&1; then
            echo "pass $seed $b $(grep -h '^fault summary:' "$out")" >>"$log"
            rm -f "$out"
        else
            echo "FAIL $seed $b $(grep -h '^fault summary:' "$out")" >>"$log"
        fi
        echo "run $1/$runs: $(grep " $seed " "$log" | cut -c1-4) seed $seed ($b)"
    }
    for i in $(seq "$runs"); do
        soak_one "$i" &
        while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do sleep 1; done
    done
    wait
    python3 - "$log" <<'PY'
import re, sys
tot, runs, failed = {}, 0, []
for line in open(sys.argv[1]):
    if not line.strip():
        continue
    runs += 1
    verdict, seed = line.split()[:2]
    if verdict == "FAIL":
        failed.append(seed)
    for k, v in re.findall(r"(\w+)=(\d+)", line):
        tot[k] = tot.get(k, 0) + int(v)
print(f"soak: {runs} runs, {len(failed)} failed {failed[:20]}")
print(f"register operations {tot.get('ops', 0)}: acknowledged {tot.get('ack', 0)}, "
      f"indeterminate {tot.get('info', 0)}")
skip = ("ops", "ack", "info", "undecided")
print("faults: " + ", ".join(f"{k} {v}" for k, v in tot.items()
                             if not k.startswith("v_") and k not in skip))
print("violations: " + ", ".join(f"{k[2:]} {v}" for k, v in tot.items() if k.startswith("v_")) +
      f"; undecided histories {tot.get('undecided', 0)}")
PY
    [ -z "$(grep '^FAIL' "$log")" ]
    ;;
plant)
    # scripts/dev.sh plant <bug> [runs] [seconds] [backend]: build the server with one planted bug
    # (-Dplant=<bug>: ack_before_fsync, follower_local_reads, follower_lease_expiry,
    # skip_readindex_quorum, double_apply) in build-plant-<bug>, then run fault campaigns with
    # seeds 1, 2, ... until one catches it (the harness must: the first catching seed is the
    # answer) or runs are spent (exit status 1: the harness missed the bug).
    install_test_deps
    bug=${1:?usage: scripts/dev.sh plant <bug> [runs] [seconds]}
    runs=${2:-20}
    secs=${3:-20}
    be=${4:-lmdb}
    dir=build-plant-$bug
    if [ ! -f "$dir/build.ninja" ]; then
        meson setup "$dir" --buildtype=debugoptimized -Dwerror=true -Dfault_points=true \
            -Dplant="$bug" >/dev/null
    fi
    ninja -C "$dir" metastore tests/fault/test_fault
    for seed in $(seq "$runs"); do
        out="$dir/plant-$seed.log"
        if METASTORE_BIN="$dir/metastore" METASTORE_FAULT_SEED="$seed" METASTORE_FAULT_POINTS=1 \
            METASTORE_FAULT_RUN_MS=$((secs * 1000)) METASTORE_TEST_BACKEND="$be" \
            timeout $((secs + 600)) "$dir/tests/fault/test_fault" >"$out" 2>&1; then
            echo "plant $bug: seed $seed passed (not caught)"
        elif found=$(grep -h '^fault summary:' "$out" | grep -o 'v_[a-z_]*=[1-9][0-9]*'); then
            echo "plant $bug: caught by seed $seed: $(echo $found) (log: $out)"
            exit 0
        else
            echo "plant $bug: seed $seed failed without a violation (log: $out)"
        fi
    done
    echo "plant $bug: not caught in $runs runs" >&2
    exit 1
    ;;
*)
    echo "usage: scripts/dev.sh start|cluster|test|build|soak|plant [args]" >&2
    exit 2
    ;;
esac
