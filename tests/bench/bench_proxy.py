#!/usr/bin/env python3
"""Benchmark: the egress proxy (the BUILT program, `--proxy`) in the proxy lab
(tests/lab/proxylab.py). Prints figures; never a pass/fail. Needs root.

    python3 tests/bench/bench_proxy.py [--runs N]

1. Throughput: 100 MB from the "internet" server (203.0.113.10, behind a veth) to a client in
   the proxy's namespace, through a CONNECT tunnel of the proxy (client -> 127.0.0.1:3128)
   against the same client reading it directly, paired runs; ratio of throughputs (goal >= 0.8).
   Measured twice: on the bare veth, where both paths are bound by this machine's CPUs (the
   proxy path is two TCP connections in the kernel where the direct one is one), and with the
   "internet" link shaped to 1 Gbit/s (tc tbf on its veth), the fastest uplink a home has.
2. Added latency: connect + one small request to the first response byte, through the proxy
   (CONNECT, 200, request) against direct (connect, request); p50 and p99 of the per-pair
   difference over 100 x N pairs (goal: p50 <= 1 ms); and the CPU time charged to the proxy
   process per connection (its Python, and the kernel's network work done in its context:
   on a veth, a connect() or send() runs the receiving side's stack too).
3. Memory: the proxy's VmRSS idle and with 500 open tunnels (goal <= 60 MB).
4. 10,000 sequential connections (CONNECT + request + close): open descriptors and VmRSS after
   1,000 and after 10,000 (goal: no growth).

The load average is printed with the figures: on a busy host every extra process wake-up
(the proxy is one more hop than a direct copy) waits for a CPU, which shows in 1. and 2.
"""

import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.dirname(HERE))

from lab.proxylab import WAN, ProxyLab, read_head  # noqa: E402
from lab.timing import options  # noqa: E402

SIZE = 100 * 1024 * 1024
HOSTS = [(WAN, "allowed.test")]


def status_kb(pid, key="VmRSS"):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return -1


def fds(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


class Client:
    def __init__(self, lab):
        self.lab = lab

    def sock(self):
        s = self.lab.socket_in(self.lab.p)
        s.settimeout(30)
        return s

    def open(self, via_proxy, port=80):
        s = self.sock()
        if via_proxy:
            s.connect(("127.0.0.1", 3128))
            s.sendall(b"CONNECT allowed.test:%d HTTP/1.1\r\nHost: allowed.test\r\n\r\n" % port)
            status, _ = read_head(s)
            assert status == 200, status
        else:
            s.connect((WAN, port))
        return s


def drain(s, buf):
    """Read until the peer closes; bytes read."""
    view, total = memoryview(buf), 0
    while True:
        n = s.recv_into(view)
        if not n:
            return total
        total += n


def throughput(client, runs):
    buf = bytearray(1 << 20)
    ratios, direct, proxied = [], [], []
    for i in range(runs):
        pair = {}
        for via in ((False, True) if i % 2 else (True, False)):
            s = client.open(via)
            t = time.perf_counter()
            s.sendall(b"GET /bytes/%d HTTP/1.1\r\nHost: allowed.test\r\n\r\n" % SIZE)
            got = drain(s, buf)
            pair[via] = time.perf_counter() - t
            s.close()
            assert got > SIZE, got
        direct.append(SIZE / pair[False] / 1e6)
        proxied.append(SIZE / pair[True] / 1e6)
        ratios.append(pair[False] / pair[True])
    return statistics.median(direct), statistics.median(proxied), statistics.median(ratios)


def first_byte(client, via):
    t = time.perf_counter()
    s = client.open(via)
    s.sendall(b"GET / HTTP/1.1\r\nHost: allowed.test\r\n\r\n")
    s.recv(1)
    elapsed = time.perf_counter() - t
    s.close()
    return elapsed


def cpu_seconds(pid):
    """User + system CPU time the process has used."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def latency(client, proxy, pairs):
    """(p50 ms, p99 ms) of the added time to first byte, and the CPU time charged to the
    proxy process per connection, in microseconds."""
    for _ in range(20):   # warm up
        first_byte(client, True)
        first_byte(client, False)
    added = []
    cpu = cpu_seconds(proxy.pid)
    for _ in range(pairs):
        added.append(first_byte(client, True) - first_byte(client, False))
    cpu = cpu_seconds(proxy.pid) - cpu
    added.sort()
    return (added[len(added) // 2] * 1000, added[min(len(added) - 1, int(len(added) * 0.99))]
            * 1000, cpu / pairs * 1e6)


def tunnels(client, proxy, n):
    idle = status_kb(proxy.pid)
    held = [client.open(True, 443) for _ in range(n)]
    time.sleep(0.5)
    loaded = status_kb(proxy.pid)
    for s in held:
        s.close()
    return idle, loaded


def sequential(client, proxy, n):
    marks = {}
    for i in range(1, n + 1):
        s = client.open(True)
        s.sendall(b"GET / HTTP/1.1\r\nHost: allowed.test\r\n\r\n")
        while s.recv(65536):
            pass
        s.close()
        if i in (1000, n):
            time.sleep(0.5)   # let the last connections finish on the proxy's side
            marks[i] = (fds(proxy.pid), status_kb(proxy.pid))
    return marks


def main():
    args = options(__doc__, 9, needs_root=True)
    out = tempfile.mkdtemp(prefix="ccpx-bench-")
    pyz = os.path.join(out, "claw-cage.pyz")
    subprocess.run([sys.executable, os.path.join(ROOT, "build.py"), "--out", pyz], check=True,
                   stdout=subprocess.DEVNULL, cwd=ROOT)
    print("load average at start: %.2f, %.2f, %.2f (%d CPUs)" % (os.getloadavg() + (os.cpu_count(),)))
    with ProxyLab(HOSTS) as lab:
        proxy = lab.start_proxy(pyz, {"listen": ["127.0.0.1:3128"], "allow": ["allowed.test"],
                                      "ports": [80, 443], "max_conns": 1024,
                                      "log": os.path.join(lab.tmp, "bench.log")})
        client = Client(lab)
        d, p, ratio = throughput(client, args.runs)
        print("1. 100 MB transfer: direct %.0f MB/s, through the proxy %.0f MB/s: "
              "ratio %.2fx (goal >= 0.8x; median of %d pairs)" % (d, p, ratio, args.runs))
        # the internet link at 1 Gbit/s: the server's side of the veth sends no faster
        lab.exec(lab.w, ["tc", "qdisc", "add", "dev", "up0", "root", "tbf", "rate", "1gbit",
                         "burst", "1mb", "latency", "50ms"])
        d, p, ratio = throughput(client, args.runs)
        lab.exec(lab.w, ["tc", "qdisc", "del", "dev", "up0", "root"])
        print("1b. the same with the internet link at 1 Gbit/s: direct %.0f MB/s, through the "
              "proxy %.0f MB/s: ratio %.2fx (goal >= 0.8x)" % (d, p, ratio))
        p50, p99, cpu = latency(client, proxy, 100 * args.runs)
        print("2. added latency to first byte (CONNECT + request vs direct): p50 %.3f ms, "
              "p99 %.3f ms (goal p50 <= 1 ms); CPU charged to the proxy: %.0f us a connection"
              % (p50, p99, cpu))
        idle, loaded = tunnels(client, proxy, 500)
        print("3. proxy VmRSS: idle %.1f MB, with 500 open tunnels %.1f MB (goal <= 60 MB)"
              % (idle / 1024, loaded / 1024))
        marks = sequential(client, proxy, 10000)
        (f1, r1), (f2, r2) = marks[1000], marks[10000]
        print("4. 10,000 sequential connections: after 1,000: %d fds, %.1f MB; after 10,000: "
              "%d fds, %.1f MB (growth: %+d fds, %+.1f MB; goal: none)"
              % (f1, r1 / 1024, f2, r2 / 1024, f2 - f1, (r2 - r1) / 1024))
        proxy.stop()
    print("load average at end: %.2f, %.2f, %.2f" % os.getloadavg())
    os.unlink(pyz)
    os.rmdir(out)


if __name__ == "__main__":
    main()
