"""Upgrades that can go back, and --rollback.

When a re-run of the installer brings a compose file that pins another OpenClaw image, and the
deployment has state: a backup first (unless --no-backup), every compose file kept as
<file>.previous (the stack may run any of them: COMPOSE_FILE picks the profile), both recorded
in .claw-cage-upgrade.json. After the new files are in place, a gateway that was running is
stopped, OpenClaw's migrations for the new image run (`openclaw doctor --non-interactive`, in
the network-less repair service), and the gateway starts. Healthy: the record is closed (it
and the .previous files go), so no later --rollback acts on it. Not healthy: --rollback's
steps run at once (exit 12). --rollback checks the backup, puts back the previous compose
files (so the previous image) and the state from that backup.
"""

import json
import os
import re
import time

from .. import dotenv, safefile
from ..errors import RefusedError, RolledBackError
from ..runner import CommandError
from . import archive, create, keep, restore
from .stack import COMPOSE_FILES, STATE, Stack

RECORD = ".claw-cage-upgrade.json"
IMAGE_RE = re.compile(r"^\s*image:\s*\$\{OPENCLAW_IMAGE:-([^}]+)\}", re.M)


def pinned(compose, env):
    override = dotenv.parse(env.decode("utf-8", "replace")).get("OPENCLAW_IMAGE")
    found = IMAGE_RE.search(compose.decode("utf-8", "replace"))
    return override or (found.group(1) if found else None)


def _write(target, name, data):
    os.replace(safefile.stage(target, name, data, 0o644 if name != RECORD else 0o600),
               os.path.join(target, name))


def _close(target):
    for name in (RECORD,) + tuple(n + ".previous" for n in COMPOSE_FILES):
        if os.path.lexists(os.path.join(target, name)):
            os.unlink(os.path.join(target, name))


def before(ui, target, new_compose, no_backup=False):
    """Called before the installer replaces the files; the upgrade record, or None."""
    old = safefile.read(os.path.join(target, "docker-compose.yml"))
    env = safefile.read(os.path.join(target, ".env")) or b""
    if old is None or pinned(old, env) == pinned(new_compose, env):
        return None
    try:   # never started (or no Docker here): no state to protect
        stack = Stack(target)   # the project's own volume names (COMPOSE_PROJECT_NAME, ...)
        if not stack.volume_exists(stack.volumes[STATE]):
            return None
    except CommandError:
        return None
    rec = {"from": pinned(old, env), "to": pinned(new_compose, env), "backup": None,
           "running": stack.gateway_id() is not None}
    ui.info("this release moves OpenClaw from %s to %s" % (rec["from"], rec["to"]))
    if no_backup:
        ui.warn("--no-backup: no backup first; --rollback can put back the previous image, "
                "not the previous state")
    else:
        rec["backup"] = recent(target, stack, ui) or \
            create.take(stack, create.default_dir(target), ui)
    _close(target)   # a record left open by an upgrade before: this one replaces it
    for name in COMPOSE_FILES:
        data = safefile.read(os.path.join(target, name))
        if data is not None:
            _write(target, name + ".previous", data)
    _write(target, RECORD, json.dumps(rec, indent=1).encode())
    return rec


def recent(target, stack, ui=None):
    """A drilled backup of the image in service, under an hour old, in the install's backups
    folder, that --rollback reads with nobody at the terminal (not encrypted): the pre-upgrade
    backup is not taken again."""
    last = keep.load(target)
    path, drill = last.get("path"), last.get("drill") or {}
    if not (path and drill.get("ok") and drill.get("archive") == path and
            path.endswith(".tar.gz") and os.path.isfile(path) and
            os.path.dirname(path) == create.default_dir(target)):   # what --rollback takes
        return None
    age = time.time() - os.path.getmtime(path)
    if age > 3600 or not last.get("image_id") or \
            last.get("image_id") != stack.image_facts().get("image_id"):
        return None
    if ui:
        ui.ok("no backup before the upgrade: %s, of this image, is %.0f minutes old and "
              "passed its drill" % (path, age / 60))
    return path


def after(ui, target, rec):
    """Called once the new files are in place: migrate, start, judge; roll back if unhealthy."""
    if not rec:
        return
    if not rec["running"]:
        ui.info("the gateway was not running: start it with docker compose up -d (OpenClaw "
                "migrates its state on start); if it is not healthy, --rollback goes back")
        return
    stack = Stack(target)
    ui.info("stopping the gateway; OpenClaw's migrations for the new image: "
            "openclaw doctor --non-interactive")
    stack.compose("stop", "openclaw")
    doctor = stack.compose("--profile", "cli", "run", "--rm", "-T", "openclaw-repair",
                           "doctor", "--non-interactive", timeout=900, check=False)
    if doctor.ok:
        stack.compose("up", "-d")
        if stack.wait_healthy():
            _close(target)
            ui.ok("the gateway is healthy on %s (the upgrade is closed: --rollback no longer "
                  "applies; an older state is --restore ARCHIVE)" % rec["to"])
            return
    ui.fail("the gateway is not healthy on %s%s: rolling back" % (
        rec["to"], "" if doctor.ok else " (openclaw doctor failed)"))
    rollback(ui, target, automatic=True)
    raise RolledBackError("the upgrade to %s did not make a healthy gateway: %s and its "
                          "state are back" % (rec["to"], rec["from"]))


def _record(target):
    """The open upgrade record, and the files it puts back; refused when there is none, or
    it names a backup that is not a claw-cage archive in this install's backups folder (the
    record is in the user's folder, and --rollback runs as root)."""
    data = safefile.read(os.path.join(target, RECORD))
    previous = {n: safefile.read(os.path.join(target, n + ".previous")) for n in COMPOSE_FILES}
    previous = {n: d for n, d in previous.items() if d is not None}
    if data is None or "docker-compose.yml" not in previous:
        raise RefusedError("nothing to roll back in %s: no upgrade recorded" % target)
    try:
        rec = json.loads(data.decode())
        backup, folder = rec["backup"], create.default_dir(target)
        if not isinstance(rec["from"], str) or backup is not None and not (
                os.path.dirname(backup) == folder and not os.path.islink(folder)
                and archive.NAME.fullmatch(os.path.basename(backup))):
            raise ValueError
    except (ValueError, KeyError, TypeError, AttributeError):
        raise RefusedError("%s is not a record of an upgrade with a backup in %s: refused, "
                           "nothing changed" % (RECORD, create.default_dir(target)))
    return rec, previous


def rollback(ui, target, automatic=False):
    rec, previous = _record(target)
    stack = Stack(target)
    if not automatic and stack.gateway_id() and stack.wait_healthy(timeout=15):
        raise RefusedError("the gateway is healthy on %s: nothing rolled back (an older state "
                           "is --restore ARCHIVE)" % rec["to"])
    if rec["backup"]:   # refused here: nothing changed yet
        archive.read(rec["backup"])
    stack.sweep(ui)
    back = "the compose files of OpenClaw %s are back and the gateway is stopped; " \
           "run --rollback again" % rec["from"]
    when, new = create.stamp().lower(), {}
    try:
        with safefile.signals_deferred():
            stack.compose("stop", "openclaw", session=True)
            for name, data in previous.items():
                _write(target, name, data)
        ui.ok("%s put back: OpenClaw %s" % (", ".join(previous), rec["from"]))
        stack = Stack(target)
        if rec["backup"]:
            new = restore.unpack(stack, rec["backup"], when)[1]
    except KeyboardInterrupt:
        raise restore.interrupted(back)
    if new:
        try:
            restore.swap(stack, ui, new, when, "the state from before the upgrade", back)
        finally:
            stack.remove_volumes(new.values())
    else:
        ui.warn("no backup was taken before the upgrade: the state stays as the new image "
                "left it")
        stack.compose("up", "-d")
        if not stack.wait_healthy():
            raise RolledBackError("the previous image is back, but the gateway is not healthy")
    _close(target)
    return rec
