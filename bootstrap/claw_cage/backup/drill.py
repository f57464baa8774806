"""--restore ARCHIVE --check: a restore rehearsed, never touching the live state.

Everything --restore does up to the swap, through the same code (restore.unpack): the archive
read once (decrypted as it streams), checked against its manifest and this install, its state
streamed into new volumes <volume>.restored-<time> (OpenClaw's archive through its own `backup
verify` and `backup restore --target`); what they hold counted; the volumes removed (a killed
drill's go with the next run's sweep, like a restore's). The live volumes, the gateway and the
install's files are never touched.
"""

import os
import tempfile

from ..errors import RefusedError
from ..runner import CommandError
from . import restore
from .create import stamp

COUNT = 'for v in /d/*; do echo "${v#/d/} $(find "$v" -type f | wc -l) $(du -sk "$v" | cut -f1)"; done'


def drill(stack, path, ui, identity=None):
    """What a restore of path would put back, in one line; RefusedError says what is wrong."""
    name = os.path.basename(path)
    stack.sweep(ui)
    try:
        manifest, new = restore.unpack(stack, path, stamp().lower(), identity)
    except CommandError as err:   # OpenClaw's verify or restore, or tar, refused a member
        lines = [ln for ln in (err.stderr or str(err)).splitlines() if ln.strip()]
        raise RefusedError("%s: the drill failed putting the state into scratch volumes (%s)"
                           % (name, lines[-1] if lines else err))
    try:
        with tempfile.TemporaryFile() as out:
            stack.one_shot([(v, "/d/" + k + ":ro") for k, v in new.items()], ["-c", COUNT],
                           stdout=out)
            out.seek(0)
            counts = [ln.split() for ln in out.read().decode().splitlines()]
    finally:
        stack.remove_volumes(new.values())
    what = ", ".join("%s: %s files, %.1f MB" % (v, n, int(kb) / 1e3) for v, n, kb in counts)
    ui.ok("%s checked: every file matches its manifest (made %s, image %s)"
          % (name, manifest.get("created"), manifest.get("image")))
    if manifest.get("state") == "openclaw-backup":
        ui.ok("OpenClaw's own archive passed `openclaw backup verify` and restored into "
              "scratch volumes (removed again)")
    summary = "a restore would put back %s" % what
    ui.ok(summary)
    return summary
