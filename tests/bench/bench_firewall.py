#!/usr/bin/env python3
"""Benchmark: applying the rule set in one `iptables-restore -n` transaction per family
against one `iptables` call per rule (sshuttle's way), in the same lab namespace and run.
Prints figures; never a pass/fail test. Needs root (it builds a netlab.Lab).

    python3 tests/bench/bench_firewall.py [--runs N]

Both methods run from a small driver INSIDE the lab's host namespace, so neither pays for
`ip netns exec` per call; between runs the rules are removed again. Also shows the wall time of
the whole built program (`--firewall --no-persist`), Python start-up and state reading included.
"""

import json
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
sys.path.insert(0, os.path.join(ROOT, "bootstrap"))

from lab import netlab  # noqa: E402
from lab.timing import options  # noqa: E402
from claw_cage.firewall import rules  # noqa: E402

DRIVER = r'''
import json, subprocess, sys, time
spec = json.loads(sys.stdin.read())
def run(argv, data=None):
    subprocess.run(argv, input=data, check=True, universal_newlines=True,
                   stdout=subprocess.DEVNULL)
out = {"restore": [], "per_rule": []}
for _ in range(spec["runs"]):
    t = time.perf_counter()
    run(["iptables-restore", "-w", "-n"], spec["restore"])
    out["restore"].append(time.perf_counter() - t)
    run(["iptables-restore", "-w", "-n"], spec["removal"])
    t = time.perf_counter()
    for argv in spec["calls"]:
        run(argv)
    out["per_rule"].append(time.perf_counter() - t)
    run(["iptables-restore", "-w", "-n"], spec["removal"])
print(json.dumps(out))
'''


def main():
    args = options(__doc__, 10, needs_root=True)
    config = rules.default_config()
    restore = rules.render_restore(config, 4, ["-I %s 1 %s" % j for j in rules.jumps(config)])
    removal = rules.render_removal(rules.OWN_CHAINS, ["-D %s %s" % j for j in rules.jumps(config)])
    calls = [["iptables", "-w", "-N", c] for c in rules.OWN_CHAINS]
    for chain, specs in rules.chain_rules(config, 4).items():
        calls += [["iptables", "-w", "-A", chain] + s.split() for s in specs]
    calls += [["iptables", "-w", "-I", parent, "1"] + spec.split()
              for parent, spec in rules.jumps(config)]
    nrules = len(calls) - len(rules.OWN_CHAINS)
    tmp = tempfile.mkdtemp(prefix="bench-firewall-")
    pyz = os.path.join(tmp, "claw-cage.pyz")
    subprocess.run([sys.executable, os.path.join(ROOT, "build.py"), "--out", pyz], check=True,
                   stdout=subprocess.DEVNULL)
    try:
        out, program = measure(args.runs, pyz, restore, removal, calls)
    finally:
        shutil.rmtree(tmp)
    restore_ms = statistics.median(out["restore"]) * 1000
    per_rule_ms = statistics.median(out["per_rule"]) * 1000
    print("IPv4 rule set: %d rules + 2 chains, %d runs, median" % (nrules, args.runs))
    print("  one iptables-restore -n transaction : %8.1f ms" % restore_ms)
    print("  one iptables call per rule          : %8.1f ms" % per_rule_ms)
    print("  ratio restore / per-rule            : %8.3f  (%.0fx faster, and atomic)"
          % (restore_ms / per_rule_ms, per_rule_ms / restore_ms))
    print("  whole program --firewall --no-persist (IPv4+IPv6, start-up, reads, self-check): "
          "%.0f ms" % (statistics.median(program) * 1000))


def measure(runs, pyz, restore, removal, calls):
    """Both methods in the same lab, then the whole program a few times."""
    with netlab.Lab() as lab:
        spec = json.dumps({"runs": runs, "restore": restore, "removal": removal,
                           "calls": calls})
        out = json.loads(lab.exec(lab.host, [sys.executable, "-c", DRIVER], input=spec).stdout)
        program = []
        for _ in range(max(3, runs // 2)):
            t = time.perf_counter()
            proc = lab.firewall(pyz, "--no-persist")
            program.append(time.perf_counter() - t)
            assert proc.returncode == 0, proc.stderr
            lab.firewall(pyz, "--remove")
    return out, program


if __name__ == "__main__":
    main()
