#!/usr/bin/env python3
"""Benchmark: re-applying claw-cage's firewall (the BUILT program, Python start-up, reads,
both families, both anchors, self-check included) against the hardening guide's 8-rule
DOCKER-USER script, in the same lab namespace (tests/lab/netlab.py). Prints figures; never a
pass/fail. Needs root.

    python3 tests/bench/bench_firewall.py [--runs N]

The guide's script: the hardening guide's step 4, eight DOCKER-USER rules (ESTABLISHED RETURN,
the subnet RETURN, five range DROPs, RETURN), applied the way the shell iptables-rules.sh that
claw-cage replaced applies its rules so a re-run is idempotent: each rule deleted if present,
then appended - one `iptables` call per step, IPv4 only, one anchor, no check. Both run through `ip netns exec` the same way.

The program runs with /usr/bin/python3 when there is one: `sudo python3` finds that one
(sudo's secure_path), and a development interpreter may pay for its own site-packages at each
start (the pyenv one here imports certifi through a .pth file: 80 ms before any of our code).
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
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.dirname(HERE))

from lab import netlab  # noqa: E402

GUIDE_RULES = [
    "-m conntrack --ctstate ESTABLISHED,RELATED -j RETURN",
    "-s 172.30.0.0/24 -d 172.30.0.0/24 -j RETURN",
    "-d 192.168.1.0/24 -j DROP",
    "-d 10.0.0.0/8 -j DROP",
    "-d 172.16.0.0/12 -j DROP",
    "-d 169.254.0.0/16 -j DROP",
    "-d 100.64.0.0/10 -j DROP",
    "-j RETURN",
]
GUIDE_SCRIPT = "#!/bin/bash\nset -euo pipefail\n" + "".join(
    "iptables -w -D DOCKER-USER %s 2>/dev/null || true\niptables -w -A DOCKER-USER %s\n"
    % (r, r) for r in GUIDE_RULES)


def timed(lab, argv, runs):
    out = []
    for _ in range(runs):
        t = time.perf_counter()
        proc = lab.exec(lab.host, argv, check=False)
        out.append(time.perf_counter() - t)
        assert proc.returncode == 0, proc.stderr
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=15)
    args = p.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench_firewall.py: needs root (network namespaces)")
    tmp = tempfile.mkdtemp(prefix="bench-firewall-")
    python = None
    try:
        pyz = os.path.join(tmp, "claw-cage.pyz")
        subprocess.run([sys.executable, os.path.join(ROOT, "build.py"), "--out", pyz],
                       check=True, stdout=subprocess.DEVNULL)
        guide = os.path.join(tmp, "guide-8-rules.sh")
        with open(guide, "w") as f:
            f.write(GUIDE_SCRIPT)
        with netlab.Lab() as lab:
            python = "/usr/bin/python3" if os.access("/usr/bin/python3", os.X_OK) else netlab.PY
            program = [python, pyz, "--firewall", "--no-persist", "--dir", lab.compose_dir]
            lab.exec(lab.host, program)                       # first apply: not measured
            lab.exec(lab.host, ["bash", guide])
            verbose = lab.exec(lab.host, program + ["-v"]).stderr
            commands = [l for l in verbose.splitlines() if l.strip().startswith("$ ")]
            guide_t, prog_t = [], []
            for _ in range(args.runs):                        # interleaved: same conditions
                guide_t += timed(lab, ["bash", guide], 1)
                prog_t += timed(lab, program, 1)
    finally:
        shutil.rmtree(tmp)
    s, g = statistics.median(guide_t) * 1000, statistics.median(prog_t) * 1000
    print("re-apply, %d runs each, median, through `ip netns exec` in the same lab namespace"
          % args.runs)
    print("  interpreter: %s" % python)
    print("  guide's 8-rule script (16 iptables calls, IPv4, one anchor): %7.1f ms" % s)
    print("  claw-cage --firewall --no-persist (%d commands: %s)" % (
        len(commands), ", ".join(sorted(set(c.strip()[2:].split()[0] for c in commands)))))
    print("    IPv4+IPv6, both anchors, Python start-up and self-check     : %7.1f ms" % g)
    print("  ratio program / guide's script                                : %7.2f" % (g / s))
    print("  median of the %d paired ratios (each run against the script's run before it): %.2f"
          % (args.runs, statistics.median(p / q for q, p in zip(guide_t, prog_t))))


if __name__ == "__main__":
    main()
