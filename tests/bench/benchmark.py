#!/usr/bin/env python3
"""Benchmarks for the installer (prints figures; never a pass/fail test).

    python3 tests/bench/benchmark.py [--runs N]

1. Start-up: `python3 dist/claw-cage.pyz --version` against `python3 -c pass`, median of the
   per-pair ratios over N paired runs (target: at most 1.15); and piped, as users run it
   (`cat claw-cage.pyz | python3 - --version`, and `--help`, which unpacks and imports the
   program), against a tiny script piped the same way: CPython reads a piped script at about
   1 ms per KiB, so this figure follows the file's size.
2. Install with each of the three files served with 150 ms of added latency: the real
   installer (parallel fetch) end to end against the shell installer it replaced, which
   fetched the same three files one after another (sequential curl), in rounds (N/4, at
   least 3) of the baseline then the installer: the median of the per-round ratios (target:
   at most 0.6); and the latency's share alone (target: at most 0.5).
3. Size of the built file (budget: 100 KiB, held by tests/pyz/test_size.py).
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


def paired(base, ours, runs):
    """Medians of two commands run in alternation, and the median of the per-pair ratios."""
    for _ in range(3):  # warm the page cache
        base()
        ours()
    pairs = [(base(), ours()) for _ in range(runs)]
    return (statistics.median(b for b, _ in pairs), statistics.median(o for _, o in pairs),
            statistics.median(o / b for b, o in pairs))


def piped(path, *args):
    """`cat PATH | python3 - ARGS` as one timed shell pipeline, as users run it from curl."""
    return lambda: timed_run(["sh", "-c", 'p=$1; shift; cat "$0" | "$p" - "$@"', path, sys.executable]
                             + list(args))


def startup(pyz, runs):
    """Lines of figures: by path, and piped (--version, --help) against a tiny script."""
    python = sys.executable
    lines = []
    base, ours, ratio = paired(lambda: timed_run([python, "-c", "pass"]),
                               lambda: timed_run([python, pyz, "--version"]), runs)
    lines.append("startup by path: python3 -c pass %.1f ms, claw-cage.pyz --version %.1f ms, "
                 "median paired ratio %.3f (target <= 1.15) over %d runs"
                 % (base * 1000, ours * 1000, ratio, runs))
    tiny = os.path.join(os.path.dirname(pyz), "tiny.py")
    with open(tiny, "w") as f:
        f.write("import sys\nsys.exit(0)\n")
    for args in (["--version"], ["--help"]):
        base, ours, ratio = paired(piped(tiny), piped(pyz, *args), runs)
        lines.append("startup piped: cat tiny.py | python3 - %.1f ms, cat claw-cage.pyz | "
                     "python3 - %s %.1f ms, %.1f ms more, median paired ratio %.2f over %d runs"
                     % (base * 1000, " ".join(args), ours * 1000, (ours - base) * 1000, ratio,
                        runs))
    return lines


def install_latency(pyz, docker_bin, runs):
    """Medians over `runs` rounds, each: the baseline, the installer with latency, and the
    installer without; and the median of the per-round ratios installer / baseline."""
    env = dict(os.environ, PATH=docker_bin + os.pathsep + os.environ["PATH"])
    rounds = []
    with ArtifactServer(os.path.join(ROOT, "deploy")) as srv:
        target = tempfile.mkdtemp(prefix="claw-bench-")
        shutil.rmtree(target)
        try:
            for _ in range(runs):
                srv.latency = LATENCY
                # Baseline: the same three files fetched one after another, same server.
                start = time.perf_counter()
                for name in ARTIFACTS:
                    with urllib.request.urlopen(srv.url + "/" + name, timeout=10) as resp:
                        resp.read()
                sequential = time.perf_counter() - start
                # The real installer, end to end (prerequisites, fetch, verify, write).
                installer = timed_run([sys.executable, pyz, "--dir", target, "--source",
                                       srv.url], env=env)
                shutil.rmtree(target)
                # Only the fetch phase's share: subtract a run with no latency.
                srv.latency = 0.0
                no_latency = timed_run([sys.executable, pyz, "--dir", target, "--source",
                                        srv.url], env=env)
                shutil.rmtree(target)
                rounds.append((sequential, installer, no_latency))
        finally:
            shutil.rmtree(target, ignore_errors=True)
    return tuple(statistics.median(r[i] for r in rounds) for i in range(3)) + (
        statistics.median(r[1] / r[0] for r in rounds), len(rounds))


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
        for line in startup(pyz, args.runs):
            print(line)
        seq, inst, nolat, ratio, rounds = install_latency(pyz, docker_bin,
                                                          max(3, args.runs // 4))
        print("install with %d ms latency per file, medians of %d rounds: sequential fetch of "
              "the 3 files %.0f ms; installer end to end %.0f ms, median paired ratio %.2fx "
              "(target <= 0.6); %.0f ms of it without latency; added by latency %.0f ms = %.2f "
              "of the sequential fetch (target <= 0.5)"
              % (LATENCY * 1000, rounds, seq * 1000, inst * 1000, ratio, nolat * 1000,
                 (inst - nolat) * 1000, (inst - nolat) / seq))
        size = os.path.getsize(pyz)
        print("size: dist/claw-cage.pyz %d bytes = %.1f KiB (budget 100 KiB = 102400 bytes)"
              % (size, size / 1024))
    finally:
        shutil.rmtree(out)
        shutil.rmtree(docker_bin)


if __name__ == "__main__":
    main()
