"""Shared plumbing of the benchmark scripts (tests/bench/): their command line and timers.

Benchmarks print figures (ratios against a baseline measured in the same run); they never pass
or fail, so nothing here asserts.
"""

import argparse
import os
import subprocess
import sys
import time


def options(doc, default_runs, needs_root=False):
    """Parse the one option every benchmark takes (--runs N); refuse to start without root when
    the benchmark builds network namespaces."""
    p = argparse.ArgumentParser(description=doc.splitlines()[0])
    p.add_argument("--runs", type=int, default=default_runs)
    args = p.parse_args()
    if needs_root and os.geteuid() != 0:
        sys.exit("%s: needs root (network namespaces)" % os.path.basename(sys.argv[0]))
    return args


def timed(fn):
    """(seconds, fn()) on the monotonic high-resolution clock."""
    started = time.perf_counter()
    result = fn()
    return time.perf_counter() - started, result


def timed_run(argv, **kw):
    """Seconds one command takes to run to completion (its output thrown away; it must exit 0)."""
    seconds, _ = timed(lambda: subprocess.run(argv, stdout=subprocess.DEVNULL,
                                              stderr=subprocess.DEVNULL, check=True, **kw))
    return seconds
