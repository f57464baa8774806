"""--backup [--to DIR] [--encrypt gpg|age|RECIPIENTS], --restore ARCHIVE [--identity KEY],
--rollback: one run at a time per install."""

import os

from .. import paths, safefile
from ..errors import RefusedError
from ..ui import UI
from . import create, restore, upgrade
from .stack import Stack


def main(args):
    ui = UI()
    target = paths.install_dir(args.dir)
    if not os.path.isdir(target):   # nothing installed there: nothing to back up or restore
        raise RefusedError("no claw-cage install in %s (give --dir)" % target)
    with safefile.DirLock(target):
        if args.backup:
            dest = os.path.abspath(os.path.expanduser(args.to or create.default_dir(target)))
            if os.path.lexists(dest) and not os.path.isdir(dest):   # a FIFO, a file
                raise RefusedError("--to %s is not a directory: refused, nothing changed" % dest)
            return {"archive": create.take(Stack(target), dest, ui, args.encrypt,
                                           args.with_keys)}
        if args.restore:   # the link you named is followed; the file it names must be one
            restore.restore(Stack(target), os.path.realpath(args.restore), ui, args.identity)
            return {"restored": args.restore}
        rec = upgrade.rollback(ui, target)
        ui.ok("rolled back to OpenClaw %s" % rec["from"])
        return {"rolled_back_to": rec["from"]}
