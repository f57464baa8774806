"""Advice row: how old the last --backup is, and where it is. Reads only: the record --backup
leaves in the install directory (LAST), else the newest archive in DIR/backups."""

import glob
import json
import os
import time

from .. import safefile
from ..backup import LAST
from ..errors import TargetError
from .audit import SECTION
from .report import Row, PASS, WARN

MAX_AGE_DAYS = 7


def row(directory, now=None):
    now = now or time.time()
    try:
        data = safefile.read(os.path.join(directory, LAST))
        path = json.loads(data.decode())["path"] if data else None
    except (TargetError, ValueError, KeyError, TypeError, AttributeError):
        path = None
    if not path or not os.path.isfile(path):
        found = sorted(glob.glob(os.path.join(directory, "backups", "claw-cage-backup-*.tar.gz")))
        path = found[-1] if found else None
    if not path:
        return Row(SECTION, "last backup", WARN, "no backup found: python3 %s --backup"
                   % os.path.join(directory, "claw-cage.pyz"))
    days = (now - os.path.getmtime(path)) / 86400
    return Row(SECTION, "last backup", PASS if days <= MAX_AGE_DAYS else WARN,
               "%s, %.1f days old%s" % (path, days, "" if days <= MAX_AGE_DAYS else
                                        ": take a new one with --backup"))
