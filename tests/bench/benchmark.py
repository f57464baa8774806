#!/usr/bin/env python3
"""Benchmarks for the installer (prints figures; never a pass/fail test).

    python3 tests/bench/benchmark.py [--runs N]

1. Start-up: `python3 dist/claw-cage.pyz --version` against `python3 -c pass`, median of the
   per-pair ratios over N paired runs (target: at most 1.15); and the same piped, as users run
   it (`python3 - --version < claw-cage.pyz`), bounded by CPython reading all of stdin first.
2. Install with each of the three files served with 150 ms of added latency: the real
   installer (parallel fetch) against fetching the same three files one after another in the
   same run (target: at most 0.5 of it).
3. Size of the built file (target: under 80 KiB).
"""

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
TESTS = os.path.dirname(HERE)
ROOT = os.path.dirname(TESTS)
sys.path.insert(0, TESTS)

from lab.artifact_server import ArtifactServer  # noqa: E402
from lab.timing import options, timed_run  # noqa: E402

ARTIFACTS = ("docker-compose.yml", ".env.example", "iptables-rules.sh")
LATENCY = 0.150


def startup(pyz, runs, piped=False):
    """Medians of `python3 -c pass` and of the pyz's --version, run by path or (piped=True)
    as users run it from curl: `python3 - --version < claw-cage.pyz`, where CPython reads and
    compiles all of standard input first."""
    python = sys.executable

    def ours():
        if not piped:
            return timed_run([python, pyz, "--version"])
        with open(pyz, "rb") as f:
            return timed_run([python, "-", "--version"], stdin=f)
    ratios, base, mine = [], [], []
    for _ in range(3):  # warm the page cache
        timed_run([python, "-c", "pass"])
        ours()
    for _ in range(runs):
        b = timed_run([python, "-c", "pass"])
        o = ours()
        base.append(b)
        mine.append(o)
        ratios.append(o / b)
    return statistics.median(base), statistics.median(mine), statistics.median(ratios)


def install_latency(pyz, docker_bin):
    env = dict(os.environ, PATH=docker_bin + os.pathsep + os.environ["PATH"])
    with ArtifactServer(os.path.join(ROOT, "deploy")) as srv:
        srv.latency = LATENCY
        # Baseline: the same three files fetched one after another, same server, same run.
        start = time.perf_counter()
        for name in ARTIFACTS:
            with urllib.request.urlopen(srv.url + "/" + name, timeout=10) as resp:
                resp.read()
        sequential = time.perf_counter() - start
        # The real installer, end to end (prerequisites, fetch, verify, write).
        target = tempfile.mkdtemp(prefix="claw-bench-")
        shutil.rmtree(target)
        try:
            installer = timed_run([sys.executable, pyz, "--dir", target, "--source", srv.url],
                              env=env)
            # Only the fetch phase's share: subtract a run with no latency.
            srv.latency = 0.0
            shutil.rmtree(target)
            no_latency = timed_run([sys.executable, pyz, "--dir", target, "--source", srv.url],
                               env=env)
        finally:
            shutil.rmtree(target, ignore_errors=True)
    return sequential, installer, no_latency


def fake_docker():
    """The installer asks docker only for versions; on a machine without Compose v2 a
    stand-in answers, so the benchmark measures the installer and not the machine."""
    d = tempfile.mkdtemp(prefix="claw-bench-bin-")
    path = os.path.join(d, "docker")
    with open(path, "w") as f:
        f.write('#!/bin/sh\n[ "$1 $2" = "compose version" ] && '
                '{ echo "Docker Compose version v2.29.1"; exit 0; }\n'
                '[ "$1" = "info" ] && { echo 27.3.1; exit 0; }\nexit 1\n')
    os.chmod(path, 0o755)
    return d


def main():
    args = options(__doc__, 40)
    out = tempfile.mkdtemp(prefix="claw-bench-dist-")
    pyz = os.path.join(out, "claw-cage.pyz")
    subprocess.run([sys.executable, os.path.join(ROOT, "build.py"), "--out", pyz], check=True,
                   stdout=subprocess.DEVNULL)
    docker_bin = fake_docker()
    try:
        base, ours, ratio = startup(pyz, args.runs)
        print("startup by path: python3 -c pass %.1f ms, claw-cage.pyz --version %.1f ms, "
              "median paired ratio %.3f (target <= 1.15) over %d runs"
              % (base * 1000, ours * 1000, ratio, args.runs))
        base, ours, ratio = startup(pyz, args.runs, piped=True)
        print("startup piped: python3 -c pass %.1f ms, python3 - --version < claw-cage.pyz "
              "%.1f ms, median paired ratio %.3f over %d runs (bounded by reading stdin)"
              % (base * 1000, ours * 1000, ratio, args.runs))
        seq, inst, nolat = install_latency(pyz, docker_bin)
        print("install with %d ms latency per file: sequential fetch of the 3 files %.0f ms; "
              "installer end to end %.0f ms (%.0f ms of it without latency); added by "
              "latency %.0f ms = %.2f of the sequential fetch (target <= 0.5)"
              % (LATENCY * 1000, seq * 1000, inst * 1000, nolat * 1000,
                 (inst - nolat) * 1000, (inst - nolat) / seq))
        size = os.path.getsize(pyz)
        print("size: dist/claw-cage.pyz %d bytes = %.1f KiB (target < 80 KiB)"
              % (size, size / 1024))
    finally:
        shutil.rmtree(out)
        shutil.rmtree(docker_bin)


if __name__ == "__main__":
    main()
