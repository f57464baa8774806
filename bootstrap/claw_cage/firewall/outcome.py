"""--firewall as data, for --json: did this run change anything?

apply() and remove() take a snapshot() before they change anything and another at the end, and
return result(): {"changed": bool, "rules_changed": bool, "persistence_changed": bool, ...},
which cli prints with --json. A snapshot is claw-cage's own share of the host and nothing else:
per address family, every iptables-save line that names one of its chains (the chains, their
rules and the jumps into them), and the boot persistence files. Docker's own rules, which come
and go with containers, are left out, so "changed" is about what claw-cage did.
"""

import os
import re

from .. import runner
from . import persist, rules

_COUNTERS = re.compile(r"\[\d+:\d+\]")


def _own(save_text):
    """claw-cage's lines in one iptables-save listing, each with its table, counters left out."""
    table, lines = None, []
    for line in save_text.splitlines():
        if line.startswith("*"):
            table = line[1:]
        elif rules.PREFIX in line:
            lines.append("%s %s" % (table, _COUNTERS.sub("", line).rstrip()))
    return lines


def _own_lines(save):
    """The same, read now; None if unreadable (then "changed" errs on the side of true)."""
    if not runner.which(save):
        return None
    result = runner.run([save], check=False)
    return _own(result.stdout) if result.ok else None


def _file_state(path):
    try:
        if os.path.islink(path):
            return "link:" + os.readlink(path)
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return None


def snapshot(tools, fams, texts=None):
    """claw-cage's share of the host. texts: {family: iptables-save text} the caller already
    read (apply's State), so that no extra read comes before its own; else read now.
    tools None (no iptables at all): the files only."""
    own = {}
    for family in (fams if tools is not None else ()):
        if texts is not None and family in texts:
            own[family] = _own(texts[family])
        else:
            own[family] = _own_lines(tools.iptables(family) + "-save")
    return {
        "rules": own,
        "persistence": {path: _file_state(path)
                        for path in (persist.SCRIPT, persist.UNIT, persist.WANTS)},
    }


def result(before, after, **facts):
    """The run's outcome: what differs between the two snapshots, plus the caller's facts."""
    rules_changed = before["rules"] != after["rules"]
    persistence_changed = before["persistence"] != after["persistence"]
    out = {"changed": rules_changed or persistence_changed, "rules_changed": rules_changed,
           "persistence_changed": persistence_changed}
    out.update(facts)
    return out
