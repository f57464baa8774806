"""Upgrades that can go back, and --rollback.

When a re-run of the installer brings a compose file that pins another OpenClaw image, and the
deployment has state: a backup first (unless --no-backup), the previous compose file kept as
docker-compose.yml.previous, both recorded in .claw-cage-upgrade.json. After the new files are
in place, a gateway that was running is stopped, OpenClaw's migrations for the new image run
(`openclaw doctor --non-interactive`, in the network-less repair service), and the gateway
starts. Not healthy: --rollback's steps run at once (exit 12). --rollback puts back the
previous compose file (so the previous image) and the state from that backup.
"""

import json
import os
import re
import shutil

from .. import deployment, dotenv, runner, safefile
from ..errors import RefusedError, RolledBackError
from ..runner import CommandError
from . import create, restore
from .stack import STATE, Stack

RECORD = ".claw-cage-upgrade.json"
PREVIOUS = "docker-compose.yml.previous"
IMAGE_RE = re.compile(r"^\s*image:\s*\$\{OPENCLAW_IMAGE:-([^}]+)\}", re.M)


def pinned(compose, env):
    override = dotenv.parse(env.decode("utf-8", "replace")).get("OPENCLAW_IMAGE")
    found = IMAGE_RE.search(compose.decode("utf-8", "replace"))
    return override or (found.group(1) if found else None)


def _write(target, name, data):
    os.replace(safefile.stage(target, name, data, 0o644 if name != RECORD else 0o600),
               os.path.join(target, name))


def before(ui, target, new_compose, no_backup=False):
    """Called before the installer replaces the files; the upgrade record, or None."""
    old = safefile.read(os.path.join(target, "docker-compose.yml"))
    env = safefile.read(os.path.join(target, ".env")) or b""
    if old is None or pinned(old, env) == pinned(new_compose, env):
        return None
    try:   # never started (or no Docker here): no state to protect
        if not runner.run(["docker", "volume", "inspect", deployment.PROJECT + "_" + STATE],
                          check=False, timeout=30).ok:
            return None
    except CommandError:
        return None
    stack = Stack(target)
    rec = {"from": pinned(old, env), "to": pinned(new_compose, env), "backup": None,
           "running": stack.gateway_id() is not None}
    ui.info("this release moves OpenClaw from %s to %s" % (rec["from"], rec["to"]))
    if no_backup:
        ui.warn("--no-backup: no backup first; --rollback can put back the previous image, "
                "not the previous state")
    else:
        rec["backup"] = create.take(stack, create.default_dir(target), ui)
    _write(target, PREVIOUS, old)
    _write(target, RECORD, json.dumps(rec, indent=1).encode())
    return rec


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
            ui.ok("the gateway is healthy on %s" % rec["to"])
            return
    ui.fail("the gateway is not healthy on %s%s: rolling back" % (
        rec["to"], "" if doctor.ok else " (openclaw doctor failed)"))
    rollback(ui, target, automatic=True)
    raise RolledBackError("the upgrade to %s did not make a healthy gateway: %s and its "
                          "state are back" % (rec["to"], rec["from"]))


def rollback(ui, target, automatic=False):
    data = safefile.read(os.path.join(target, RECORD))
    previous = safefile.read(os.path.join(target, PREVIOUS))
    if data is None or previous is None:
        raise RefusedError("nothing to roll back in %s: no upgrade recorded" % target)
    rec = json.loads(data.decode())
    stack = Stack(target)
    if not automatic and stack.gateway_id() and stack.wait_healthy(timeout=15):
        raise RefusedError("the gateway is healthy on %s: nothing rolled back (an older state "
                           "is --restore ARCHIVE)" % rec["to"])
    if rec["backup"]:
        # refused here: nothing changed yet (the members it checked into /tmp go)
        shutil.rmtree(restore.check(stack, rec["backup"])[1])
    stack.compose("stop", "openclaw")
    _write(target, "docker-compose.yml", previous)
    ui.ok("docker-compose.yml put back: OpenClaw %s" % rec["from"])
    stack = Stack(target)
    if rec["backup"]:
        restore.restore(stack, rec["backup"], ui, "the state from before the upgrade")
    else:
        ui.warn("no backup was taken before the upgrade: the state stays as the new image "
                "left it")
        stack.compose("up", "-d")
        if not stack.wait_healthy():
            raise RolledBackError("the previous image is back, but the gateway is not healthy")
    for name in (RECORD, PREVIOUS):
        os.unlink(os.path.join(target, name))
    return rec
