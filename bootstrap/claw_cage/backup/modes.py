"""--backup [--to DIR] [--encrypt gpg|age|RECIPIENTS] [--keep N] [--check], --backup --schedule,
--restore ARCHIVE [--identity KEY] [--check], --rollback: one run at a time per install."""

import os

from .. import paths, safefile
from ..errors import ClawCageError, RefusedError
from ..ui import UI
from . import create, drill, keep, restore, schedule, upgrade
from .stack import Stack


def main(args):
    ui = UI()
    target = paths.install_dir(args.dir)
    if not os.path.isdir(target):   # nothing installed there: nothing to back up or restore
        raise RefusedError("no claw-cage install in %s (give --dir)" % target)
    if args.schedule:   # root writes units; the runs themselves take the lock
        return schedule.apply(args, target, ui)
    with safefile.DirLock(target):
        if args.backup:
            return backup(args, target, ui)
        # the link you named is followed; the file it names must be one
        if args.restore and args.check:
            return {"drill": drill.drill(Stack(target), os.path.realpath(args.restore), ui,
                                         args.identity)}
        if args.restore:
            restore.restore(Stack(target), os.path.realpath(args.restore), ui, args.identity)
            return {"restored": args.restore}
        rec = upgrade.rollback(ui, target)
        ui.ok("rolled back to OpenClaw %s" % rec["from"])
        return {"rolled_back_to": rec["from"]}


def backup(args, target, ui):
    """--backup, then (--check) its drill, recorded; then (--keep N) the retention, only after
    a drill that passed: a bad new archive never pushes out a good old one."""
    dest = os.path.abspath(os.path.expanduser(args.to or create.default_dir(target)))
    if os.path.lexists(dest) and not os.path.isdir(dest):   # a FIFO, a file
        raise RefusedError("--to %s is not a directory: refused, nothing changed" % dest)
    stack = Stack(target)
    out = {"archive": create.take(stack, dest, ui, args.encrypt, args.with_keys)}
    if args.check:
        if out["archive"].endswith(".age") and not args.identity:
            keep.drilled(target, out["archive"], None, "not drilled: no --identity to "
                         "decrypt it")
            ui.warn("the drill of an age archive needs --identity KEY: not drilled")
        else:
            try:
                out["drill"] = drill.drill(stack, out["archive"], ui, args.identity)
            except ClawCageError as err:
                keep.drilled(target, out["archive"], False, str(err))
                raise
            keep.drilled(target, out["archive"], True, out["drill"])
    if args.keep:
        out["removed"] = keep.prune(target, dest, args.keep)
        ui.ok("kept the newest %d archive(s) of this install in %s%s" % (
            args.keep, dest, "; removed " + ", ".join(
                os.path.basename(p) for p in out["removed"]) if out["removed"] else ""))
    return out
