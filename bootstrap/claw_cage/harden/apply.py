"""--harden-docker [--dry-run] [--revert]: the hardening guide's daemon settings in
daemon.json, safely.

Merge (merge.py) what the running engine (engine.py) supports, show the diff, validate, write
with a backup, restart Docker and check it; if it does not come back, put the old file back
and restart again. --revert puts the backup back byte for byte.
"""

import json
import os

from .. import runner, safefile
from ..errors import DaemonError, PrereqError, TargetError
from ..ui import UI
from . import merge
from .engine import docker_info, dockerd_argvs, restart, say_restart, validate

BACKUP, ABSENT = ".claw-cage.bak", ".claw-cage.none"   # the original; or: there was none


def read(path):
    """(bytes or None when absent, the JSON object)."""
    data = safefile.read(path)
    if data is None:
        return None, {}
    try:
        conf = json.loads(data.decode("utf-8") or "{}")
    except ValueError as err:
        raise TargetError("cannot use %s: %s" % (path, err))
    if not isinstance(conf, dict):
        raise TargetError("%s is not a JSON object" % path)
    return data, conf


def raw(path):
    """The bytes of path, None when absent (or when path is None)."""
    return None if path is None else safefile.read(path)


def write(path, data):
    """Replace path atomically, keeping the mode and owner of the file replaced."""
    try:
        safefile.write_atomic(path, data)
    except OSError as err:
        raise TargetError("cannot write %s: %s" % (path, err.strerror or err))


def swap(ui, path, new, old):
    """Write `new` (None: no file), restart; on no answer put `old` back and restart again."""
    for data, last in ((new, False), (old, True)):
        if data is None:
            os.unlink(path)
        else:
            write(path, data)
        info = restart(ui)
        if info or last:
            break
        ui.fail("Docker did not come back with the new %s: putting the previous one back"
                % path)
    if not info:
        raise DaemonError("Docker does not start, even with the previous %s" % path)
    if last:
        raise DaemonError("Docker refused the new %s: the previous one is back and Docker "
                          "runs with it" % path)
    return info


def harden(args, ui, path):
    info = docker_info()
    if not info:
        raise PrereqError("Docker does not answer: start it first (what to set depends on it)")
    version = merge.version_tuple(info["ServerVersion"])
    old, conf = read(path)
    flags = {a.split("=")[0] for argv in dockerd_argvs() for a in argv[1:] if a[:2] == "--"}
    swarm = (info.get("Swarm") or {}).get("LocalNodeState") == "active"
    new, notes = merge.merge(conf, version, flags, swarm)
    for kind, text in notes:
        (ui.warn if kind == "conflict" else ui.info)(text)
    if new == conf:
        ui.ok("%s already has every setting this engine supports: nothing to change" % path)
        return 0
    text = merge.render(new)
    ui.info(merge.diff((old or b"").decode("utf-8"), text, path).rstrip("\n"))
    validate(text, version)
    if args.dry_run:
        ui.info("dry run: nothing written, Docker not restarted")
        return 0
    if not os.path.exists(path + BACKUP) and not os.path.exists(path + ABSENT):
        write(path + (ABSENT if old is None else BACKUP), old or b"")
    say_restart(ui, info.get("LiveRestoreEnabled"))   # never turned off by the merge
    info = swap(ui, path, text.encode("utf-8"), old)
    res = runner.run(["docker", "network", "inspect", "bridge", "--format",
                      "{{json .Options}}"], check=False)
    icc = json.loads(res.stdout or "{}").get("com.docker.network.bridge.enable_icc")
    shown = {"live-restore": info.get("LiveRestoreEnabled"), "icc": icc and icc == "true",
             "log-driver": info.get("LoggingDriver")}
    bad = [k for k in shown if k in new and shown[k] != new[k]]
    if "icc" in bad and info.get("LiveRestoreEnabled") and info.get("ContainersRunning"):
        bad.remove("icc")  # measured: live-restore keeps the default bridge as it was
        ui.warn("icc: the default bridge keeps its old settings while live-restore keeps "
                "containers running; it changes at a Docker restart with none running")
    if bad:
        raise DaemonError("Docker runs again, but does not show %s as in %s"
                          % (", ".join(bad), path))
    ui.ok("Docker runs with the hardened %s" % path)
    return 0


def revert(args, ui, path):
    backup = path + (BACKUP if os.path.exists(path + BACKUP) else ABSENT)
    if not os.path.exists(backup):
        raise TargetError("no claw-cage backup of %s: nothing to revert" % path)
    old, current = (raw(p) for p in (backup if backup.endswith(BACKUP) else None, path))
    shown = merge.diff(*[(b or b"").decode("utf-8", "replace") for b in (current, old)], path=path)
    ui.info(shown.rstrip("\n") or "%s is already the original" % path)
    if args.dry_run:
        ui.info("dry run: nothing written, Docker not restarted")
        return 0
    if current != old:
        info = docker_info() or {}
        back = json.loads((old or b"{}").decode("utf-8") or "{}").get("live-restore")
        flag = any("--live-restore" in argv for argv in dockerd_argvs())
        say_restart(ui, info.get("LiveRestoreEnabled") and (back or flag))
        swap(ui, path, old, current)
    os.unlink(backup)
    ui.ok("%s is the original again" % path)
    return 0


def main(args):
    if not runner.which("docker"):
        raise PrereqError("--harden-docker needs Docker: `docker` is not on PATH")
    if os.geteuid() != 0 and not args.dry_run:
        raise PrereqError("--harden-docker changes %s and restarts Docker: run it with sudo"
                          % merge.DAEMON_JSON)
    return (revert if args.revert else harden)(args, UI(), merge.DAEMON_JSON)
