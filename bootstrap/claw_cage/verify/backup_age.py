"""Advice rows about backups. Reads only: the schedule's timer file and what systemctl says of
its last and next run; the record --backup leaves in the install directory (backup.keep),
else the newest archive in DIR/backups: its age against the schedule; the last drill."""

import glob
import os
import re
import time

from .. import runner
from ..backup import keep, schedule
from ..runner import CommandError
from .audit import SECTION
from .report import Row, PASS, FAIL, WARN

MAX_AGE_DAYS = 7   # unscheduled: advice only
PERIOD = {"daily": 1, "weekly": 7}   # scheduled: twice the period fails


def _show(unit_name):
    try:
        out = runner.run(["systemctl", "show", unit_name], check=False, timeout=30).stdout
    except CommandError:
        return {}
    return dict(ln.split("=", 1) for ln in out.splitlines() if "=" in ln)


def installed_schedule():
    try:
        with open(schedule.TIMER) as f:
            found = re.search(r"^OnCalendar=(\w+)", f.read(), re.M)
    except OSError:
        return None
    return found.group(1) if found else "?"


def schedule_row(directory, when, show=_show):
    if not when:
        return Row(SECTION, "backup schedule", WARN, "none: sudo python3 %s --backup "
                   "--schedule daily --keep 7" % os.path.join(directory, "claw-cage.pyz"))
    svc, timer = show(schedule.NAME + ".service"), show(schedule.NAME + ".timer")
    last = svc.get("ExecMainExitTimestamp") or ""
    nxt = timer.get("NextElapseUSecRealtime") or "not planned (is the timer enabled?)"
    if last and svc.get("Result") != "success":
        return Row(SECTION, "backup schedule", FAIL, "%s; the last run, %s, failed (exit %s): "
                   "journalctl -u %s.service" % (when, last, svc.get("ExecMainStatus"),
                                                 schedule.NAME))
    return Row(SECTION, "backup schedule", PASS, "%s; last run: %s; next: %s" % (
        when, last + " ok" if last else "none yet", nxt))


def row(directory, now=None, when=None):
    now = now or time.time()
    path = keep.load(directory).get("path")
    if not path or not os.path.isfile(path):
        found = sorted(glob.glob(os.path.join(directory, "backups", "claw-cage-backup-*.tar.gz*")))
        path = found[-1] if found else None
    if not path:
        return Row(SECTION, "last backup", FAIL if when else WARN,
                   "no backup found: python3 %s --backup" % os.path.join(directory,
                                                                         "claw-cage.pyz"))
    days = (now - os.path.getmtime(path)) / 86400
    limit = 2 * PERIOD[when] if when in PERIOD else MAX_AGE_DAYS
    late = days > limit
    return Row(SECTION, "last backup", (FAIL if when else WARN) if late else PASS,
               "%s, %.1f days old%s" % (path, days, "" if not late else
                                        ": the %s schedule missed it (see the schedule row)" %
                                        when if when else ": take a new one with --backup"))


def drill_row(directory):
    rec = keep.load(directory)
    drill = rec.get("drill")
    if not drill:
        return Row(SECTION, "last drill", WARN, "never: python3 %s --restore ARCHIVE --check"
                   % os.path.join(directory, "claw-cage.pyz"))
    name = os.path.basename(drill.get("archive") or "?")
    if drill.get("ok") is False:
        return Row(SECTION, "last drill", FAIL, "%s FAILED: %s (docs/backups.md: when the "
                   "drill fails)" % (name, drill.get("detail")))
    if drill.get("ok") is None:
        return Row(SECTION, "last drill", WARN, "%s: %s" % (name, drill.get("detail")))
    stale = drill.get("archive") != rec.get("path")
    return Row(SECTION, "last drill", WARN if stale else PASS, "%s passed %s ago%s" % (
        name, _ago(time.time() - drill.get("at", 0)),
        ": the newest archive was not drilled" if stale else ""))


def _ago(seconds):
    return "%.0f minutes" % (seconds / 60) if seconds < 7200 else "%.1f hours" % (
        seconds / 3600) if seconds < 172800 else "%.1f days" % (seconds / 86400)


def rows(directory):
    when = installed_schedule()
    return [schedule_row(directory, when), row(directory, when=when), drill_row(directory)]
