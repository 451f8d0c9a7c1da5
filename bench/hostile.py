#!/usr/bin/env python3
"""hostile.py - the hostile-client attacks of the hardening work, measured.

Each attack starts its own server (the binary given with --bin, on a free 127.0.0.1 port, a fresh
data directory, memory backend unless --backend says otherwise), runs the attack while a polite
client sends one small range every 20 ms on its own connection (a new one each time for
fdlimit, where new clients are what the attack locks out), samples the server's VmRSS every
50 ms, then stops the server by PID and prints one line:

    attack=<name> peak_rss_mb=… polite_p50_ms=… polite_p99_ms=… polite_max_ms=… polite_failed=…

Attacks (every loop is bounded in count and time; traffic goes only to 127.0.0.1):
  pipeline    one 1 MB value, then N pipelined ranges of it on one socket that never reads
  fdlimit     the server under a soft descriptor limit of 1024 (with --hard, a hard one too),
              1,100 idle connections held open; also counts the server's log lines about accept
  watchflood  N watch streams that never read, then a few 1 MB puts on the watched key

    bench/hostile.py --bin build-release/metastore pipeline --requests 1000
    bench/hostile.py --bin build-release/metastore watchflood --streams 5000 --puts 4
    bench/hostile.py --bin build-release/metastore fdlimit
"""
import argparse
import base64
import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return 0.0


def http_post(sock, path, body, timeout=10.0):
    """One request on a keep-alive socket; returns (status, body)."""
    data = body.encode()
    req = (f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
           f"Content-Length: {len(data)}\r\n\r\n").encode() + data
    sock.settimeout(timeout)
    sock.sendall(req)
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed")
        buf += chunk
    head, rest = buf.split(b"\r\n\r\n", 1)
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        k, _, v = line.partition(b":")
        if k.strip().lower() == b"content-length":
            length = int(v.strip())
    while len(rest) < length:
        chunk = sock.recv(max(65536, length - len(rest)))
        if not chunk:
            raise ConnectionError("closed")
        rest += chunk
    return status, rest[:length]


def b64(s):
    return base64.b64encode(s if isinstance(s, bytes) else s.encode()).decode()


class Server:
    def __init__(self, binary, backend, extra=(), soft_nofile=None, hard_nofile=None):
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="hostile-")
        self.log = open(os.path.join(self.dir, "server.log"), "w+")
        url = f"http://127.0.0.1:{self.port}"
        argv = [binary, "--name", "h", "--data-dir", os.path.join(self.dir, "data"),
                "--listen-client-urls", url, "--advertise-client-urls", url,
                "--backend", backend, *extra]

        def limit():
            if soft_nofile:
                hard = hard_nofile or resource.getrlimit(resource.RLIMIT_NOFILE)[1]
                resource.setrlimit(resource.RLIMIT_NOFILE, (soft_nofile, hard))

        self.proc = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT,
                                     preexec_fn=limit)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                    if http_post(s, "/v3/maintenance/status", "{}")[0] == 200:
                        return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("server did not start")

    def log_lines(self, *needles):
        self.log.flush()
        with open(self.log.name, errors="replace") as f:
            return sum(1 for line in f if any(n in line for n in needles))

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


class Polite(threading.Thread):
    """One small range every 20 ms on its own keep-alive connection (or a new connection each
    time, when fresh), latency recorded."""

    def __init__(self, port, fresh):
        super().__init__(daemon=True)
        self.port, self.fresh = port, fresh
        self.lat, self.failed, self.stop_flag = [], 0, False

    def run(self):
        sock = None
        while not self.stop_flag:
            t0 = time.monotonic()
            try:
                if sock is None:
                    sock = socket.create_connection(("127.0.0.1", self.port), timeout=10)
                http_post(sock, "/v3/kv/range", json.dumps({"key": b64("polite")}))
                self.lat.append((time.monotonic() - t0) * 1000)
                if self.fresh:
                    sock.close()
                    sock = None
            except OSError:
                self.failed += 1
                self.lat.append((time.monotonic() - t0) * 1000)
                if sock:
                    sock.close()
                sock = None
            time.sleep(0.02)
        if sock:
            sock.close()


def measure(name, srv, attack, seconds, fresh=False):
    polite = Polite(srv.port, fresh)
    polite.start()
    peak = rss_mb(srv.proc.pid)
    done = threading.Event()
    worker = threading.Thread(target=lambda: (attack(), done.set()), daemon=True)
    worker.start()
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        peak = max(peak, rss_mb(srv.proc.pid))
        time.sleep(0.05)
    polite.stop_flag = True
    polite.join(15)
    lat = sorted(polite.lat) or [0.0]
    pct = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))]
    return (f"attack={name} peak_rss_mb={peak:.0f} polite_p50_ms={pct(0.5):.1f} "
            f"polite_p99_ms={pct(0.99):.1f} polite_max_ms={lat[-1]:.1f} "
            f"polite_n={len(polite.lat)} polite_failed={polite.failed}")


def put_big(port, key, size):
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        st, _ = http_post(s, "/v3/kv/put",
                          json.dumps({"key": b64(key), "value": b64(os.urandom(size))}), 30)
        return st


def attack_pipeline(args):
    srv = Server(args.bin, args.backend, args.server_flag)
    held = []
    try:
        put_big(srv.port, "big", 1 << 20)
        req = json.dumps({"key": b64("big")}).encode()
        one = (b"POST /v3/kv/range HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(req)
               + req)

        def attack():
            s = socket.create_connection(("127.0.0.1", srv.port))
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            held.append(s)
            s.settimeout(args.seconds)
            try:
                s.sendall(one * args.requests)
            except OSError:
                pass

        print(measure(f"pipeline({args.requests})", srv, attack, args.seconds), flush=True)
    finally:
        for s in held:
            s.close()
        srv.stop()


def attack_fdlimit(args):
    raise_own_nofile(4096)
    srv = Server(args.bin, args.backend, args.server_flag, soft_nofile=1024,
                 hard_nofile=1024 if args.hard else None)
    held = []
    try:
        def attack():
            for _ in range(args.connections):
                try:
                    held.append(socket.create_connection(("127.0.0.1", srv.port), timeout=5))
                except OSError:
                    break

        name = f"fdlimit({args.connections}{', hard 1024' if args.hard else ''})"
        line = measure(name, srv, attack, args.seconds, fresh=True)
        print(f"{line} held={len(held)} "
              f"fd_log_lines={srv.log_lines('descriptors', 'accept')}", flush=True)
    finally:
        for s in held:
            s.close()
        srv.stop()


def attack_watchflood(args):
    raise_own_nofile(args.streams + 1024)
    srv = Server(args.bin, args.backend, args.server_flag)
    held = []
    try:
        body = json.dumps({"create_request": {"key": b64("hot")}}).encode()
        req = (b"POST /v3/watch HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body)
               + body)

        def attack():
            for _ in range(args.streams):
                try:
                    s = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                    s.sendall(req)
                    held.append(s)
                except OSError:
                    break
            for _ in range(args.puts):
                try:
                    put_big(srv.port, "hot", 1 << 20)
                except OSError:
                    pass

        line = measure(f"watchflood({args.streams}x{args.puts})", srv, attack, args.seconds)
        print(f"{line} streams={len(held)}", flush=True)
    finally:
        for s in held:
            s.close()
        srv.stop()


def raise_own_nofile(n):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < n:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(n, hard), hard))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin", required=True, help="the metastore binary")
    ap.add_argument("--backend", default="memory", choices=["memory", "lmdb"])
    ap.add_argument("--seconds", type=float, default=15.0, help="how long to watch (default 15)")
    ap.add_argument("--server-flag", action="append", default=[],
                    help="one more flag for the server (repeat for several)")
    sub = ap.add_subparsers(dest="attack", required=True)
    p = sub.add_parser("pipeline")
    p.add_argument("--requests", type=int, default=1000)
    f = sub.add_parser("fdlimit")
    f.add_argument("--connections", type=int, default=1100)
    f.add_argument("--hard", action="store_true",
                   help="the hard limit is 1024 too, so the server cannot raise its own")
    w = sub.add_parser("watchflood")
    w.add_argument("--streams", type=int, default=5000)
    w.add_argument("--puts", type=int, default=4)
    args = ap.parse_args()
    {"pipeline": attack_pipeline, "fdlimit": attack_fdlimit,
     "watchflood": attack_watchflood}[args.attack](args)


if __name__ == "__main__":
    sys.exit(main())
