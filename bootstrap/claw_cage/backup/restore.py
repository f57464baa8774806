"""--restore ARCHIVE: never in place, always a way back.

Docker cannot rename a volume and the compose file names its volumes, so:
  1. the whole archive is read and checked against its manifest and this install (a refusal
     changes nothing);
  2. the state is extracted into NEW volumes <volume>.restored-<time> (OpenClaw's own
     `openclaw backup restore --target` for its archives), while the gateway keeps running;
  3. the gateway stops; the volumes in service are copied to <volume>.before-<time>, kept for
     going back; then they take the restored content;
  4. the gateway starts; not healthy in time: the <volume>.before-<time> content goes back in
     service, the gateway starts on it, exit 12.
"""

import os
import shutil
import tempfile

from .. import deployment
from ..errors import RefusedError, RolledBackError
from . import archive
from .create import decipher, install_id, stamp
from .stack import SECRETS, STATE

RESTORE_JS = ('cat > "$HOME/in.tar.gz" && node dist/index.js backup restore "$HOME/in.tar.gz" '
              '--target "$HOME/stage" >&2')
ASSET = "/s/stage/*/payload/posix/home/node/.openclaw"
# every file of OpenClaw's belongs to the image's node user; some tar builds (busybox) do not
# give extracted symlinks their owner back
UNTAR = "tar -xzf - -C /n && find /n -type l -exec chown -h %s {} +" % deployment.USER


def _copy(src, dst):
    """Shell: make dst hold exactly what src holds (owners, modes, links kept)."""
    return "(cd %s && rm -rf -- * .[!.]* ..?*) && cp -a %s/. %s/" % (dst, src, dst)


def check(stack, path, identity=None):
    """The archive's manifest, once the whole archive matched it and belongs here."""
    tmp = tempfile.mkdtemp(prefix="claw-cage-restore-")
    try:
        manifest = archive.read(path, tmp, decipher(path, identity))
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if manifest.get("install") != install_id(stack.dir):
        shutil.rmtree(tmp, ignore_errors=True)
        raise RefusedError("%s was made by another claw-cage install (another gateway token): "
                           "refused, nothing changed" % os.path.basename(path))
    return manifest, tmp


def _stage(stack, manifest, members, new):
    """Fill the new volumes from the archive's members (files in `members`)."""
    m = lambda name: os.path.join(members, "state_" + name)
    if manifest.get("state") == "openclaw-backup":
        scratch = new[STATE] + ".scratch"
        stack.new_volume(scratch, "scratch")
        try:
            with open(m("openclaw-backup.tar.gz"), "rb") as f:
                stack.one_shot([(scratch, "/home/node")], ["-c", RESTORE_JS],
                               ["--user", deployment.USER, "--cap-drop", "ALL",
                                "-e", "HOME=/home/node"], stdin=f)
            stack.one_shot([(scratch, "/s:ro"), (new[STATE], "/n")],
                           ["-c", "set -- %s && [ $# -eq 1 ] && cp -a \"$1\"/. /n/" % ASSET])
        finally:
            stack.remove_volumes([scratch])
    else:
        with open(m(STATE + ".tar.gz"), "rb") as f:
            stack.one_shot([(new[STATE], "/n")], ["-c", UNTAR], stdin=f)
    if os.path.exists(m(SECRETS + ".tar.gz")):
        with open(m(SECRETS + ".tar.gz"), "rb") as f:
            stack.one_shot([(new[SECRETS], "/n")], ["-c", UNTAR], stdin=f)


def swap(stack, ui, new, when, what):
    """Put the `new` volumes' content in service, keeping the current one as .before-<when>;
    start the gateway; not healthy: put the previous content back (RolledBackError)."""
    live = stack.volumes
    before = {k: "%s.before-%s" % (v, when) for k, v in live.items()}
    if not all(stack.volume_exists(v) for v in live.values()):
        stack.compose("up", "--no-start", "openclaw")   # the volumes, as Compose makes them
    for v in before.values():
        stack.new_volume(v, "before")
    stack.compose("stop", "openclaw")
    mounts, script = [], []
    for k in live:
        mounts += [(live[k], "/live/" + k), (before[k], "/before/" + k), (new[k], "/new/" + k)]
        script += [_copy("/live/" + k, "/before/" + k), _copy("/new/" + k, "/live/" + k)]
    stack.one_shot(mounts, ["-c", " && ".join(script)])
    ui.ok("%s in service; the previous state is kept in %s" % (what, ", ".join(before.values())))
    stack.compose("up", "-d")
    if stack.wait_healthy():
        ui.ok("the gateway is healthy")
        return before
    ui.fail("the gateway did not become healthy: putting the previous state back")
    stack.compose("stop", "openclaw")
    mounts = [(live[k], "/live/" + k) for k in live] + [(before[k], "/b/" + k) for k in live]
    stack.one_shot(mounts, ["-c", " && ".join(_copy("/b/" + k, "/live/" + k) for k in live)])
    stack.compose("up", "-d")
    healthy = stack.wait_healthy()
    raise RolledBackError("%s did not make a healthy gateway: the previous state is back in "
                          "service%s (docker compose logs openclaw)"
                          % (what, "" if healthy else ", but the gateway is not healthy either"))


def restore(stack, path, ui, what="the restored state", identity=None):
    manifest, members = check(stack, path, identity)
    try:
        ui.ok("%s checked: every file matches its manifest (made %s, image %s)"
              % (os.path.basename(path), manifest.get("created"), manifest.get("image")))
        when = stamp().lower()
        new = {k: "%s.restored-%s" % (v, when) for k, v in stack.volumes.items()}
        for v in new.values():
            stack.new_volume(v, "restored")
        try:
            _stage(stack, manifest, members, new)
            return swap(stack, ui, new, when, what)
        finally:
            stack.remove_volumes(new.values())
    finally:
        shutil.rmtree(members, ignore_errors=True)
