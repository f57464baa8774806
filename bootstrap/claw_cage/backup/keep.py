"""The install's backup record (LAST, in the install directory, mode 600): the newest archive,
every archive this install wrote, the last drill; and --keep N's retention, which removes only
archives that record lists (never a file it did not write, never the newest)."""

import json
import os
import time

from .. import safefile
from ..errors import TargetError
from . import archive
from .stack import LAST

def load(directory):
    try:
        data = safefile.read(os.path.join(directory, LAST))
        rec = json.loads(data.decode()) if data else {}
    except (TargetError, OSError, ValueError):
        return {}
    return rec if isinstance(rec, dict) else {}


def save(directory, rec):
    data = json.dumps(rec, indent=1, sort_keys=True).encode()
    os.replace(safefile.stage(directory, LAST, data, 0o600), os.path.join(directory, LAST))


def wrote(directory, path, facts):
    """Record a new archive: the newest, with the image it holds."""
    rec = load(directory)
    rec.update(path=path, created=facts["created"], image_id=facts.get("image_id"))
    rec["archives"] = [p for p in rec.get("archives", []) if os.path.isfile(p)] + [path]
    save(directory, rec)


def drilled(directory, path, ok, detail):
    rec = load(directory)
    rec["drill"] = {"archive": path, "ok": ok, "detail": detail, "at": int(time.time())}
    save(directory, rec)


def prune(directory, dest, keep):
    """Remove the oldest of this install's archives in dest beyond `keep`; their paths."""
    rec = load(directory)
    ours = sorted((p for p in rec.get("archives", []) if os.path.dirname(p) == dest and
                   archive.NAME.fullmatch(os.path.basename(p)) and os.path.isfile(p) and
                   not os.path.islink(p)), key=os.path.basename)   # names carry the time
    old = ours[:-keep]   # keep >= 1: the newest always stays
    for path in old:
        os.unlink(path)
    rec["archives"] = [p for p in rec.get("archives", []) if p not in old]
    save(directory, rec)
    return old
