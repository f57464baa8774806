"""Rows of the verification matrix and the two ways to show them (table, JSON).

A row is one claim with a verdict: pass (holds), fail (does not hold: exit 7), warn (a weakness
worth fixing, never fatal), skip (could not be checked here; the detail says why).
A skip marked `needed` is a look the verification cannot do without (the packet probes, the
gateway container): while one is missing the run is incomplete (exit 9), never "ok".
A row's detail is one line: any line break in it becomes a space.
"""

import json
import re

PASS, FAIL, WARN, SKIP = "pass", "fail", "warn", "skip"
STATUSES = (PASS, FAIL, WARN, SKIP)

_COLOURS = {PASS: "32", FAIL: "31", WARN: "33", SKIP: "2"}
_MARKS = {PASS: "✓", FAIL: "✗", WARN: "!", SKIP: "-"}


class Row:
    __slots__ = ("section", "check", "status", "detail", "needed")

    def __init__(self, section, check, status, detail, needed=False):
        assert status in STATUSES, status
        self.section, self.check, self.status = section, check, status
        self.detail = re.sub(r"\s*[\r\n]+\s*", " ", str(detail)).strip()
        self.needed = bool(needed) and status == SKIP

    def as_dict(self):
        return {"check": self.check, "status": self.status, "detail": self.detail}

    def __repr__(self):
        return "Row(%r, %r, %r)" % (self.check, self.status, self.detail)


def render_json(rows):
    return json.dumps([r.as_dict() for r in rows], indent=2)


def render_table(rows, color=False):
    """Sections in order of first appearance; one line per row: status, check, reason."""
    width = max([len(r.check) for r in rows] + [10])
    lines, section = [], None
    for r in rows:
        if r.section != section:
            section = r.section
            lines.append("" if not lines else "")
            lines.append(section)
        word = r.status.upper() if r.status == FAIL else r.status
        if color:
            word = "\033[%sm%s %-4s\033[0m" % (_COLOURS[r.status], _MARKS[r.status], word)
        lines.append("  %s  %-*s  %s" % (word if color else "%-4s" % word, width, r.check,
                                         r.detail))
    return "\n".join(lines[1:] if lines and lines[0] == "" else lines)


def summary(rows):
    counts = dict((s, 0) for s in STATUSES)
    for r in rows:
        counts[r.status] += 1
    return ", ".join("%d %s" % (counts[s], s) for s in STATUSES)


def failed(rows):
    return [r for r in rows if r.status == FAIL]


def missing(rows):
    """The needed looks that could not be taken (skips marked `needed`)."""
    return [r for r in rows if r.needed]
