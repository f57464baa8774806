"""--restore ARCHIVE: never in place, always a way back.

Docker cannot rename a volume and the compose file names its volumes, so:
  1. the archive is read in one pass (unpack): the manifest first (another install's archive
     is refused there), then each state member streams straight into a NEW volume
     <volume>.restored-<time>, every file owned by the container's user (uid 1000), every
     setuid/setgid bit dropped; OpenClaw's own archive goes through `openclaw backup restore`
     from a private size-capped tmpfs. No clear member lands anywhere else, and no more than
     CAP is unpacked. The archive is trusted only once every member matched its manifest: a
     refusal removes the new volumes, the state in service untouched. A run killed here
     leaves its .restored- volumes; the next --backup, --restore or --rollback removes them;
  2. the gateway stops; with Ctrl-C and SIGTERM held, the volumes in service are copied to
     <volume>.before-<time>, kept for going back, then take the restored content, and the
     gateway starts;
  3. not healthy in time: the <volume>.before-<time> content goes back in service (signals
     held again), the gateway starts on it, exit 12.
"""

import os
import zlib

from .. import deployment, runner, safefile
from ..egress import domains
from ..errors import EXIT_INTERRUPTED, ClawCageError, RefusedError, RolledBackError
from . import archive, cipher
from .create import install_id, stamp
from .stack import COPY_CAPS, STATE

CAP_FLOOR, CAP_RATIO = 256 << 20, 64   # unpacked: at most max(256 MiB, 64 x the archive)
NODE = ["--user", deployment.USER, "--cap-drop", "ALL"]
STAGE = "/n/.claw-cage-stage"
# $1: the member's size; a stream cut short (a refusal midway) restores nothing; OpenClaw
# judges its own archive (`backup verify`) before restoring it
OPENCLAW_RESTORE = (
    'cat > "$HOME/in.tar.gz" && [ "$(wc -c < "$HOME/in.tar.gz")" -eq "$1" ] && '
    'node dist/index.js backup verify "$HOME/in.tar.gz" >&2 && '
    'node dist/index.js backup restore "$HOME/in.tar.gz" --target %s >&2 && '
    'set -- %s/*/payload/posix/home/node/.openclaw && [ $# -eq 1 ] && cp -a "$1"/. /n/ && '
    'rm -rf %s' % (STAGE, STAGE, STAGE))
# a volume's copy: as root (no capability to make a device), for its modes (busybox tar
# running as a user leaves the top folder's alone); then every file handed to uid 1000
UNTAR = "tar -xf - -C /n && find /n -exec chown -h %s {} +" % deployment.USER
NO_SUID = r"find /n ! -type l \( -perm -4000 -o -perm -2000 \) -exec chmod ug-s {} +"


def _copy(src, dst):
    """Shell: make dst hold exactly what src holds (owners, modes, links kept)."""
    return "(cd %s && rm -rf -- * .[!.]* ..?*) && cp -a %s/. %s/" % (dst, src, dst)


class _Into:
    """One state member streaming into a one-shot container that unpacks it into a new volume
    (a volume's tar.gz arrives decompressed here, OpenClaw's archive as it is, into a tmpfs
    as uid 1000). Every byte it unpacks to is counted first against budget [left, cap]."""

    def __init__(self, stack, volume, size, budget, openclaw):
        self.budget, self.unzip, self.openclaw = budget, zlib.decompressobj(31), openclaw
        # room for the archive and what OpenClaw may write in ~ besides (pages used only)
        tmp = ["--tmpfs", "/home/node:size=%d,uid=%d,gid=%d,mode=0700" % (
            size + (64 << 20), deployment.UID, deployment.UID), "-e", "HOME=/home/node"] \
            if openclaw else []
        script = (OPENCLAW_RESTORE if openclaw else UNTAR) + " && " + NO_SUID
        self.proc = stack.one_shot([(volume, "/n")], ["-c", script, "sh", str(size)],
                                   NODE + tmp if openclaw else COPY_CAPS, feed=True)

    def write(self, block):
        data = block
        while data and not self.unzip.eof:
            out = self.unzip.decompress(data, 1 << 20)
            data = self.unzip.unconsumed_tail
            self.budget[0] -= len(out)
            if self.budget[0] < 0:
                raise RefusedError("the archive unpacks to more than %d MiB: refused, nothing "
                                   "changed" % (self.budget[1] >> 20))
            if not self.openclaw:
                self.proc.stdin.write(out)
        if self.unzip.unused_data or data:
            raise RefusedError("a member of the archive is not one gzip stream: refused, "
                               "nothing changed")
        if self.openclaw:   # counted whole first: a bomb never reaches OpenClaw's restore
            self.proc.stdin.write(block)

    def close(self):
        runner.finish(self.proc, 3600)


def unpack(stack, path, when, identity=None):
    """Read the archive at path once, its state streaming into new volumes
    <volume>.restored-<when>; return (manifest, {key: new volume}) once all of it matched its
    manifest and this install. The caller removes the new volumes."""
    name, new, budget = os.path.basename(path), {}, []

    def sink(manifest, member, size):
        if not new:   # the manifest came first: is it ours?
            if manifest.get("install") != install_id(stack.dir):
                raise RefusedError("%s was made by another claw-cage install (another gateway "
                                   "token): refused, nothing changed" % name)
            budget.extend([max(CAP_FLOOR, CAP_RATIO * os.path.getsize(path))] * 2)
            for k, v in stack.volumes.items():
                new[k] = "%s.restored-%s" % (v, when)
                stack.new_volume(new[k], "restored")
            stack.one_shot([(v, "/n/" + k) for k, v in new.items()],
                           ["-c", "chown %s /n/*" % deployment.USER])
        if member not in manifest.get("files", {}) or not member.startswith("state/"):
            return None
        key = STATE if member == archive.OPENCLAW else \
            {archive.volume_member(k): k for k in new}.get(member)
        if key is None:
            raise RefusedError("%s holds an unknown volume %s: refused" % (name, member))
        return _Into(stack, new[key], size, budget, member == archive.OPENCLAW)
    try:
        manifest = archive.read(path, sink, cipher.decryptor(path, identity))
        if not new:
            raise RefusedError("%s holds no state: refused, nothing changed" % name)
    except BaseException:
        stack.remove_volumes(new.values())
        raise
    return manifest, new


def interrupted(what):
    """Ctrl-C's exit, saying what is true at that point."""
    return ClawCageError("interrupted: " + what, EXIT_INTERRUPTED)


def swap(stack, ui, new, when, what, untouched="nothing in service was changed (the "
         "restore's own volumes are removed)"):
    """Put the `new` volumes' content in service, keeping the current one as .before-<when>;
    start the gateway; not healthy: put the previous content back (RolledBackError).
    untouched: what a Ctrl-C before the stop leaves."""
    live = stack.volumes
    before = {k: "%s.before-%s" % (v, when) for k, v in live.items()}
    kept = "; the previous state is kept in " + ", ".join(before.values())
    phase = untouched
    try:
        if not all(stack.volume_exists(v) for v in live.values()):
            stack.compose("up", "--no-start", "openclaw")   # the volumes, as Compose makes them
        for v in before.values():
            stack.new_volume(v, "before")
        mounts, script = [], []
        for k in live:
            mounts += [(live[k], "/live/" + k), (before[k], "/before/" + k),
                       (new[k], "/new/" + k)]
            script += [_copy("/live/" + k, "/before/" + k), _copy("/new/" + k, "/live/" + k)]
        # a Ctrl-C lands before the stop or after the start; Docker's commands, in sessions of
        # their own, never see it
        with safefile.signals_deferred():
            stack.compose("stop", "openclaw", session=True)
            stack.one_shot(mounts, ["-c", " && ".join(script)], session=True)
            ui.ok("%s in service%s" % (what, kept))
            stack.compose("up", "-d", session=True)
            phase = "%s is in service, the gateway started on it but not yet judged%s" % (
                what, kept)
        if stack.wait_healthy():
            ui.ok("the gateway is healthy")
            return before
        ui.fail("the gateway did not become healthy: putting the previous state back")
        mounts = [(live[k], "/live/" + k) for k in live] + [(before[k], "/b/" + k) for k in live]
        with safefile.signals_deferred():
            stack.compose("stop", "openclaw", session=True)
            stack.one_shot(mounts, ["-c", " && ".join(_copy("/b/" + k, "/live/" + k)
                                                          for k in live)], session=True)
            stack.compose("up", "-d", session=True)
            phase = "the previous state is back in service, the gateway started on it but " \
                    "not yet judged%s" % kept
        healthy = stack.wait_healthy()
    except KeyboardInterrupt:
        raise interrupted(phase + " (docker compose ps)")
    raise RolledBackError("%s did not make a healthy gateway: the previous state is back in "
                          "service%s (docker compose logs openclaw)"
                          % (what, "" if healthy else ", but the gateway is not healthy either"))


def restore(stack, path, ui, identity=None):
    stack.sweep(ui)
    when = stamp().lower()
    try:
        manifest, new = unpack(stack, path, when, identity)
    except KeyboardInterrupt:
        raise interrupted("nothing was changed (the restore's own volumes are removed)")
    try:
        ui.ok("%s checked: every file matches its manifest (made %s, image %s)"
              % (os.path.basename(path), manifest.get("created"), manifest.get("image")))
        result = swap(stack, ui, new, when, "the restored state")
        missing = [n for n in manifest.get("keys") or [] if not domains.read_env(stack.dir).get(n)]
        if missing:
            ui.warn("this host's .env lacks %s, which the backup's install had: fill them in "
                    "(.env), then run sudo python3 claw-cage.pyz --firewall so the proxy gets "
                    "them" % ", ".join(missing))
        return result
    finally:
        stack.remove_volumes(new.values())
