#!/usr/bin/env python3
"""Benchmark of --backup (prints figures; never a pass/fail test). Run as root, under the lock:

    flock /tmp/claw-cage-docker.lock .venv-test/bin/python tests/bench/bench_backup.py [--mb 200] [--runs 2]

A deployment of the e2e stand-in (tests/e2e/test_e2e_backup.py's, removed afterwards) with a
state volume of --mb megabytes (half random bytes, half text), then, in the same run:
  - the baseline: a plain `tar | gzip` of the same volume (the volume read-only in a container
    of the same image, tar to stdout, GNU gzip -6 on the host, into a file);
  - the BUILT program's `--backup` (OpenClaw's archive through the stand-in's `openclaw backup
    create --verify`, the auth-profile key, the install files, the manifest, written and
    fsynced under a temporary name, then linked);
  - its drill on the archive just written, `--restore ARCHIVE --check` (read whole and checked,
    OpenClaw's `backup verify` and `backup restore --target` into scratch volumes, counted,
    removed).
Goals: --backup <= 1.2 x the baseline; the drill <= 1.5 x --backup.
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TESTS = os.path.dirname(HERE)
ROOT = os.path.dirname(TESTS)
sys.path.insert(0, TESTS)
sys.path.insert(0, os.path.join(TESTS, "e2e"))

from conftest import build_pyz, docker_answers  # noqa: E402
from lab import e2e_support as e2e  # noqa: E402
from lab.e2e_support import sh  # noqa: E402
import test_e2e_backup as eb  # noqa: E402


def baseline(out):
    with open(out, "wb") as f:
        tar = subprocess.Popen(["docker", "run", "--rm", "--network", "none", "-v",
                                eb.DATA + ":/v:ro", "--user", "0", "--entrypoint", "tar",
                                eb.IMAGE, "-cf", "-", "-C", "/v", "."], stdout=subprocess.PIPE)
        gz = subprocess.run(["gzip", "-6"], stdin=tar.stdout, stdout=f, check=True)
        tar.stdout.close()
        assert tar.wait() == 0 and gz.returncode == 0


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--mb", type=int, default=200)
    p.add_argument("--runs", type=int, default=2)
    a = p.parse_args()
    if os.geteuid() != 0 or not docker_answers():
        sys.exit("bench_backup: needs root and a Docker daemon")
    problems = e2e.preflight(18789)
    if problems:
        sys.exit("bench_backup: claw-cage objects exist here: %s" % problems)
    home = tempfile.mkdtemp(prefix="claw-bench-backup-")
    cleanup = e2e.Cleanup()
    try:
        pyz = build_pyz(os.path.join(home, "claw-cage.pyz"))
        standin = e2e.StandIn(cleanup)
        standin.build()
        standin.tag_as(eb.IMAGE)
        d = eb.Deployment(home, pyz)
        res = d.install(d.source)
        assert res.returncode == 0, res.stderr
        cleanup.push("volumes", lambda: [sh(["docker", "volume", "rm", v], check=False)
                                         for v in eb.extra_volumes()])
        cleanup.push("down", d.compose, "down", "-v", "--timeout", "5", check=False)
        d.compose("up", "-d", "--pull", "never")
        d.wait_healthy()
        half = a.mb * 1000000 // 2
        d.exec('cd "$HOME/.openclaw" && head -c %d /dev/urandom > random.bin && '
               'i=0; while [ $i -lt %d ]; do echo "line $i of a session transcript with '
               'some words in it"; i=$((i+1)); done > text.jsonl' % (half, half // 50))
        size = sh(["docker", "run", "--rm", "-v", eb.DATA + ":/v:ro", "--entrypoint", "du",
                   eb.IMAGE, "-sm", "/v"]).stdout.split()[0]
        base, ours, drills, sizes = [], [], [], {}
        for i in range(a.runs):
            out = os.path.join(home, "plain-%d.tar.gz" % i)
            t = time.monotonic()
            baseline(out)
            base.append(time.monotonic() - t)
            sizes["plain"] = os.path.getsize(out)
            os.unlink(out)
            t = time.monotonic()
            res = d.program("--backup", "--to", os.path.join(home, "b%d" % i))
            ours.append(time.monotonic() - t)
            assert res.returncode == 0, res.stdout + res.stderr
            b = os.path.join(home, "b%d" % i)
            sizes["backup"] = sum(os.path.getsize(os.path.join(b, f)) for f in os.listdir(b))
            t = time.monotonic()
            res = d.program("--restore", os.path.join(b, os.listdir(b)[0]), "--check")
            drills.append(time.monotonic() - t)
            assert res.returncode == 0, res.stdout + res.stderr
            shutil.rmtree(b)
        mb, mo = statistics.median(base), statistics.median(ours)
        print("state volume: %s MB (half random, half text), %d runs" % (size, a.runs))
        print("plain tar | gzip -6 : median %.2f s  (%s)  archive %.1f MB"
              % (mb, ", ".join("%.2f" % x for x in base), sizes["plain"] / 1e6))
        print("claw-cage --backup  : median %.2f s  (%s)  archive %.1f MB"
              % (mo, ", ".join("%.2f" % x for x in ours), sizes["backup"] / 1e6))
        print("ratio --backup / plain: %.2fx (goal <= 1.2x)" % (mo / mb))
        md = statistics.median(drills)
        print("--restore --check   : median %.2f s  (%s)"
              % (md, ", ".join("%.2f" % x for x in drills)))
        print("ratio drill / --backup: %.2fx (goal <= 1.5x)" % (md / mo))
    finally:
        errors = cleanup.run()
        shutil.rmtree(home, ignore_errors=True)
        if errors:
            print("cleanup errors: %s" % errors)


if __name__ == "__main__":
    main()
