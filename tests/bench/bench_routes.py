#!/usr/bin/env python3
"""Benchmark: the proxy's routes (the BUILT program) against a direct TLS request with the key,
on this machine's 127.0.0.1 (no namespace: a route to a listed loopback upstream,
https://localhost:PORT, the stand-in provider of tests/lab/provider.py with a test CA's
certificate trusted through SSL_CERT_FILE). Prints figures; never a pass/fail.

    python3 tests/bench/bench_routes.py [--runs N]

1. Added latency to the first byte: a new connection and one small request, through the route
   (plain connection to the proxy, which opens verified TLS upstream and adds the key) against
   direct (TLS connection with the key); p50/p99 of the per-pair difference over 50 x N pairs
   (goal p50 <= 2 ms). Also with both connections kept alive (the second request of each).
2. Streamed throughput: 100 MB body through the route against direct TLS, paired runs; ratio
   (goal >= 0.9x). With it, the CPU time each process used per 100 MB (the stand-in provider,
   the proxy, the client), medians: on a bare loopback all three share this machine's CPUs,
   so the route's throughput is bound by the sum, and the proxy's share is its cost.
   2c: the same with the provider sending at most 125 MB/s (a 1 Gbit/s link, the fastest
   uplink a home has), where the link and not this machine's CPUs is the limit.
3. The proxy's VmRSS idle and with 200 concurrent streams open (goal <= 60 MB).
"""

import json
import os
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.dirname(HERE))

from lab.provider import make_certs  # noqa: E402
from lab.timing import options  # noqa: E402

PORT, SIZE = 28443, 100 * 1024 * 1024


def rss_mb(pid):
    with open("/proc/%d/status" % pid) as f:
        return int([l for l in f if l.startswith("VmRSS:")][0].split()[1]) / 1024.0


class Bench:
    def __init__(self, tmp, certs):
        self.sock = os.path.join(tmp, "routes.sock")
        self.tls = ssl.create_default_context(cafile=certs["ca"])

    def direct(self):
        s = socket.create_connection(("127.0.0.1", PORT))
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)   # as the proxy's asyncio does
        s = self.tls.wrap_socket(s, server_hostname="localhost")
        return s, b"Host: localhost\r\nx-api-key: realkey\r\n"

    def route(self):
        s = socket.socket(socket.AF_UNIX)
        s.connect(self.sock)
        return s, b"Host: x\r\nx-api-key: claw-cage-placeholder\r\n"

    def first_byte(self, how, path, keep=False):
        """Seconds from connecting to the first response byte (keep: of a second request)."""
        started = time.perf_counter()
        s, hdrs = how()
        prefix = b"/a" if how == self.route else b""
        req = b"GET " + prefix + path + b" HTTP/1.1\r\n" + hdrs + b"\r\n"
        if keep:
            s.sendall(req)
            _read_response(s)
            started = time.perf_counter()
        s.sendall(req)
        s.recv(1)
        took = time.perf_counter() - started
        s.close()
        return took

    def bulk(self, how, pids, cpu, rate=b""):
        """MB/s of one 100 MB body; appends the CPU seconds of pids and of this process."""
        before = [cpu_seconds(p) for p in pids] + [_own_cpu()]
        s, hdrs = how()
        prefix = b"/a" if how == self.route else b""
        started = time.perf_counter()
        s.sendall(b"GET " + prefix + b"/bulk?n=%d%s HTTP/1.1\r\n" % (SIZE, rate) + hdrs
                  + b"\r\n")
        got = 0
        while got < SIZE:
            data = s.recv(262144)
            if not data:
                break
            got += len(data)
        took = time.perf_counter() - started
        s.close()
        cpu.append([a - b for a, b in zip([cpu_seconds(p) for p in pids] + [_own_cpu()],
                                          before)])
        return got / took / 1e6


def cpu_seconds(pid):
    """User + system CPU time the process has used."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _own_cpu():
    t = os.times()
    return t.user + t.system


def _read_response(s):
    buf = b""
    while b"\r\n\r\n" not in buf:
        buf += s.recv(65536)
    head, body = buf.split(b"\r\n\r\n", 1)
    n = int([l for l in head.split(b"\r\n") if l.lower().startswith(b"content-length:")][0]
            .split(b":")[1])
    while len(body) < n:
        body += s.recv(65536)


def pcts(values):
    values = sorted(values)
    return statistics.median(values) * 1000, values[int(len(values) * 0.99) - 1] * 1000


def main():
    args = options(__doc__, 5)
    tmp = tempfile.mkdtemp(prefix="ccroutes-bench-")
    pyz = os.path.join(tmp, "claw-cage.pyz")
    subprocess.run([sys.executable, os.path.join(ROOT, "build.py"), "--out", pyz], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
    os.makedirs(os.path.join(tmp, "certs"))
    certs = make_certs(os.path.join(tmp, "certs"), ["localhost"])
    os.makedirs(os.path.join(tmp, "keys"))
    with open(os.path.join(tmp, "keys", "K"), "w") as f:
        f.write("realkey")
    prov = subprocess.Popen([sys.executable, os.path.join(os.path.dirname(HERE), "lab",
                                                          "provider.py"),
                             os.path.join(tmp, "provider.jsonl"),
                             "127.0.0.1:%d:%s:%s" % ((PORT,) + certs["good"])],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            universal_newlines=True)
    prov.stdout.readline()
    b = Bench(tmp, certs)
    cfg = {"routes": [{"name": "a", "upstream": "https://localhost:%d" % PORT, "key": "K",
                       "auth": "x-api-key"}], "routes_listen": ["unix:" + b.sock],
           "keys_dir": os.path.join(tmp, "keys"), "max_conns": 1024,
           "log": os.path.join(tmp, "proxy.log")}
    with open(os.path.join(tmp, "proxy.json"), "w") as f:
        json.dump(cfg, f)
    proxy = subprocess.Popen([sys.executable, pyz, "--proxy", "--config",
                              os.path.join(tmp, "proxy.json")], stderr=subprocess.PIPE,
                             env=dict(os.environ, SSL_CERT_FILE=certs["ca"]),
                             universal_newlines=True)
    proxy.stderr.readline()
    print("load average at start: %.2f, %.2f, %.2f (%d CPUs)"
          % (os.getloadavg() + (os.cpu_count(),)))
    try:
        for keep in (False, True):
            diffs = [b.first_byte(b.route, b"/v1/models", keep)
                     - b.first_byte(b.direct, b"/v1/models", keep) for _ in range(50 * args.runs)]
            print("1%s. added latency to first byte (%s): p50 %.3f ms, p99 %.3f ms (goal p50 "
                  "<= 2 ms)" % ("b" if keep else "", "connections kept alive" if keep else
                                "new connections", *pcts(diffs)))
        pids, cpu_d, cpu_r = (prov.pid, proxy.pid), [], []
        pairs = [(b.bulk(b.direct, pids, cpu_d), b.bulk(b.route, pids, cpu_r))
                 for _ in range(args.runs)]
        ratio = statistics.median(r / d for d, r in pairs)
        print("2. 100 MB streamed: direct %.0f MB/s, through the route %.0f MB/s: ratio %.2fx "
              "(goal >= 0.9x; median of %d pairs)" % (statistics.median(d for d, _ in pairs),
                                                      statistics.median(r for _, r in pairs),
                                                      ratio, args.runs))
        for name, cpu in (("direct", cpu_d), ("route", cpu_r)):
            print("2%s. CPU per 100 MB, %s: provider %.0f ms, proxy %.0f ms, client %.0f ms"
                  % ("a" if name == "direct" else "b", name,
                     *(statistics.median(c[i] for c in cpu) * 1000 for i in range(3))))
        link = b"&rate=125"
        pairs = [(b.bulk(b.direct, pids, [], link), b.bulk(b.route, pids, [], link))
                 for _ in range(args.runs)]
        print("2c. the same with the provider sending at most 125 MB/s (a 1 Gbit/s link): direct "
              "%.0f MB/s, through the route %.0f MB/s: ratio %.2fx (goal >= 0.9x)"
              % (statistics.median(d for d, _ in pairs), statistics.median(r for _, r in pairs),
                 statistics.median(r / d for d, r in pairs)))
        idle, streams = rss_mb(proxy.pid), []
        for _ in range(200):
            s, hdrs = b.route()
            s.sendall(b"GET /a/sse?n=3&gap=3000 HTTP/1.1\r\n" + hdrs + b"\r\n")
            streams.append(s)
        for s in streams:
            buf = b""
            while b"event 0" not in buf:
                buf += s.recv(4096)
        print("3. proxy VmRSS: idle %.1f MB, with 200 concurrent streams %.1f MB (goal <= 60 MB)"
              % (idle, rss_mb(proxy.pid)))
        for s in streams:
            s.close()
    finally:
        proxy.terminate()
        prov.kill()
    print("load average at end: %.2f, %.2f, %.2f" % os.getloadavg())


if __name__ == "__main__":
    main()
