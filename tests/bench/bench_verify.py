#!/usr/bin/env python3
"""Benchmark of --verify (prints figures; never a pass/fail test). Run as root:

    .venv-test/bin/python tests/bench/bench_verify.py [--runs N]     (after bash tests/run set it up)

1. Wall time of the BUILT program's `--verify` in the namespace lab with claw-cage's firewall
   applied, so every LAN and host probe is silently dropped (each waits its full timeout).
   Baselines measured in the same run: the program's own start-up (`--version`), and the time
   the same probes would take one after another (dropped probes x timeout). Target: < 5 s.
2. Where a Docker engine answers: the cost of the container path with the e2e stand-in image,
   on `--network none` so no packet can leave: all probes in one throwaway container (the argv
   --verify uses) against one container per probe started at once (the fallback for an image
   without sh). The probes get an instant answer there; a dropped probe adds probes.PROBE_MS.
   Plus `docker ps` + `docker inspect`, for the whole --verify on the container path.
   (Docker part: hold /work/docker.lock on a shared machine.)
"""

import os
import statistics
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor

HERE = os.path.dirname(os.path.abspath(__file__))
TESTS = os.path.dirname(HERE)
ROOT = os.path.dirname(TESTS)
sys.path.insert(0, TESTS)
sys.path.insert(0, os.path.join(ROOT, "bootstrap"))

from lab import netlab  # noqa: E402
from lab.timing import options, timed  # noqa: E402
from conftest import PYTHON, build_pyz, docker_answers  # noqa: E402
from verify.test_verify_lab import Cage  # noqa: E402
from claw_cage import runner  # noqa: E402
from claw_cage.verify import probes  # noqa: E402


def bench_lab(pyz, runs):
    with netlab.Lab() as lab:
        cage = Cage(lab, pyz)
        try:
            cage.firewall()
            start = [timed(lambda: lab.run_program([PYTHON, pyz, "--version"]))[0]
                     for _ in range(runs)]
            walls, dropped, total, codes = [], 0, 0, set()
            for _ in range(runs):
                took, (code, rows, _) = timed(lambda: cage.verify("--json"))
                walls.append(took)
                codes.add(code)
                probe_rows = [k for k in rows if k.startswith("probe ")]
                total = len(probe_rows)
                dropped = len([k for k in probe_rows if "ETIMEDOUT" in rows[k][1]])
        finally:
            cage.close()
    seq = dropped * probes.PROBE_MS / 1000.0
    med = statistics.median(walls)
    print("1. --verify in the namespace lab, firewall applied (%d runs, exit codes %s)"
          % (runs, sorted(codes)))
    print("   probes: %d, of which silently dropped (ETIMEDOUT): %d; probe timeout %.1f s"
          % (total, dropped, probes.PROBE_MS / 1000.0))
    print("   program start-up (--version):    median %.2f s" % statistics.median(start))
    print("   --verify wall time:              median %.2f s, min %.2f s, max %.2f s"
          % (med, min(walls), max(walls)))
    print("   same probes one after another:   %.1f s (dropped x timeout)" % seq)
    print("   ratio --verify / sequential:     %.2f   target: --verify < 5 s -> %s"
          % (med / seq if seq else float("nan"), "met" if max(walls) < 5 else "NOT MET"))


def bench_docker(count):
    from lab import e2e_support
    if not docker_answers():
        print("2. container path: skipped (no Docker engine answers)")
        return
    if not os.path.exists(e2e_support.BUSYBOX):
        print("2. container path: skipped (no %s to build the stand-in image)"
              % e2e_support.BUSYBOX)
        return
    cleanup = e2e_support.Cleanup()
    try:
        image = e2e_support.StandIn(cleanup).build()
        # --network none: the container has only its own loopback, so no packet can leave;
        # 127.0.0.1:9 refuses at once, so these figures are the cost of the container path.
        plan = [probes.Probe("bench%d" % i, "tcp", ("127.0.0.1", 9), False, "bench")
                for i in range(count)]

        def batch():
            return probes.run_batch(probes.batch_docker_argv("none", image, plan), count,
                                    timeout=60)

        def single(p):
            return probes.run_probe(probes.docker_argv("none", image, p), timeout=60)

        batch_times = [timed(batch) for _ in range(3)]
        assert all(o.reason == "ECONNREFUSED" for o in batch_times[0][1]), batch_times[0][1]
        with ThreadPoolExecutor(max_workers=count) as pool:
            took_single, _ = timed(lambda: list(pool.map(single, plan)))
        b = statistics.median(t for t, _ in batch_times)
        ms = probes.PROBE_MS / 1000.0
        print("2. container path, %d probes (stand-in image, --network none, instant answers)"
              % count)
        print("   one container running all probes (what --verify does): median %.2f s "
              "-> every probe dropped: about %.2f s" % (b, b + ms))
        print("   one container per probe, all at once (the fallback):    %.2f s "
              "-> every probe dropped: about %.2f s" % (took_single, took_single + ms))
        print("   ratio batch / per-probe containers: %.2f" % (b / took_single))
        # The rest of the container path: `docker ps` + `docker inspect` (find_gateway).
        look = [timed(lambda: (runner.run(["docker", "ps", "-q"], check=False, timeout=30),
                               runner.run(["docker", "inspect", image], check=False,
                                          timeout=30)))[0] for _ in range(3)]
        lk = statistics.median(look)
        whole = lk + b + ms
        print("   docker ps + docker inspect: median %.2f s" % lk)
        print("   whole --verify, container path, every LAN probe dropped: about %.2f s "
              "(the other groups run beside it)   target < 5 s -> %s"
              % (whole, "met" if whole < 5 else "NOT MET"))
        print("   the probe container's start has its own deadline (%g s, %s); the command's "
              "cap is %.1f s" % (probes.START_TIMEOUT, probes.START_ENV,
                                 probes.command_timeout()))
    finally:
        for err in cleanup.run():
            print("   cleanup: %s" % err)


def main():
    args = options(__doc__, 5, needs_root=True)
    with tempfile.TemporaryDirectory() as tmp:
        pyz = build_pyz(os.path.join(tmp, "claw-cage.pyz"))
        bench_lab(pyz, args.runs)
        bench_docker(12)


if __name__ == "__main__":
    main()
