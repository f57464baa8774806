#!/usr/bin/env python3
"""Benchmark of --refused (prints figures; never a pass/fail test):

    .venv-test/bin/python tests/bench/bench_refused.py [--runs N]

A week of the proxy's log, 100,000 lines (80% allowed connections, 20% refusals of 300
names, a few planted lines), read the two ways --refused reads it, each against a baseline
measured in the same run (target: under 2 s for the week):
1. the log file: egress.refused.refusals() (read, match every line, group), against reading
   the same file and counting its lines;
2. the journal: the same lines as `journalctl -o json --output-fields=MESSAGE` prints them,
   through refused.messages() and the grouping, against json.loads of every line alone.
As root, also the BUILT program's whole `--refused --since 7d --json` on that file (start-up
included), in a mount namespace whose /etc is an overlay.
"""

import json
import os
import random
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

from lab.timing import options, timed  # noqa: E402
from conftest import PYTHON, build_pyz  # noqa: E402
from claw_cage.egress import config, refused  # noqa: E402
from claw_cage.proxy import config as proxy_config  # noqa: E402

LINES = 100000


def week_of_log(path):
    rnd, now, lines = random.Random(7), time.time(), []
    for i in range(LINES):
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - 7 * 86400 * (1 - i / LINES)))
        if i % 5:
            lines.append("%s proxy api.anthropic.com:443 160.79.104.10:443 allowed up=517 "
                         "down=6120 ms=84" % stamp)
        elif i % 997 == 0:
            lines.append("%s proxy evil\x1b[2J.test:443 - refused-403 up=0 down=0 ms=0 x" % stamp)
        else:
            lines.append("%s proxy n%d.example.com:443 - refused-403 up=0 down=0 ms=0 name not "
                         "on the allow list" % (stamp, rnd.randrange(300)))
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return lines


def journal_text(lines):
    return "\n".join(json.dumps({"__CURSOR": "s=0123456789abcdef;i=%x" % i,
                                 "__REALTIME_TIMESTAMP": "1765000000000000",
                                 "__MONOTONIC_TIMESTAMP": "1000", "_BOOT_ID": "0" * 32,
                                 "MESSAGE": l}) for i, l in enumerate(lines)) + "\n"


def median(fn, runs):
    return statistics.median(timed(fn)[0] for _ in range(runs))


def main():
    runs = options(__doc__, 5).runs
    tmp = tempfile.mkdtemp(prefix="bench-refused-")
    log = os.path.join(tmp, "proxy.log")
    lines = week_of_log(log)
    cfg = proxy_config.validate({"listen": ["127.0.0.1:3128"], "log": log})
    since = time.time() - 7 * 86400 - 60

    def count():
        with open(log, "rb") as f:
            return sum(1 for _ in f)
    base = median(count, runs)
    ours = median(lambda: refused.refusals(cfg, since), runs)
    rows, _ = refused.refusals(cfg, since)
    print("log file, %d lines (%.1f MB): --refused's reading %.3f s, counting the lines %.3f s: "
          "%.1fx (%d destinations)" % (LINES, os.path.getsize(log) / 1e6, ours, base, ours / base,
                                       len(rows)))
    text = journal_text(lines)
    base = median(lambda: [json.loads(l) for l in text.splitlines()], runs)
    ours = median(lambda: refused.summarize(refused.messages(text), since), runs)
    print("journal JSON, %d entries (%.1f MB): --refused's reading %.3f s, json.loads of each "
          "line %.3f s: %.2fx" % (LINES, len(text) / 1e6, ours, base, ours / base))
    if os.geteuid() == 0:
        pyz = build_pyz(os.path.join(tmp, "claw-cage.pyz"))
        upper, work = os.path.join(tmp, "upper"), os.path.join(tmp, "work")
        os.makedirs(os.path.join(upper, "claw-cage"))
        os.makedirs(work)
        with open(os.path.join(upper, "claw-cage", "proxy.json"), "w") as f:
            f.write(config.owner().render(listen=["127.0.0.1:3128"], log=log))
        mount = ("mount --make-rprivate / && mount -t overlay overlay -o lowerdir=/etc,"
                 "upperdir=%s,workdir=%s /etc && exec \"$@\"" % (upper, work))

        def whole(argv):
            return lambda: subprocess.run(["unshare", "-m", "sh", "-c", mount, "sh", PYTHON, pyz]
                                          + argv, stdout=subprocess.DEVNULL, check=True)
        base = median(whole(["--version"]), runs)
        ours = median(whole(["--refused", "--since", "7d", "--json"]), runs)
        print("the built program: --refused --since 7d --json %.3f s, --version %.3f s (both in "
              "a fresh mount namespace)" % (ours, base))


if __name__ == "__main__":
    main()
