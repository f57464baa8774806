"""--backup: one archive of the agent's state and claw-cage's own files.

The state volume goes through OpenClaw's own `openclaw backup create --verify` (SQLite copied
through its online backup API, the gateway keeps running), in a one-shot container of the
deployment's image. An image without that command: the gateway is stopped while the volume is
copied (never a copy of live SQLite files), then started again. The auth-profile key volume is
a plain copy (no database in it). Caches (claw-npm, claw-local) are left out.
"""

import datetime
import hashlib
import os
import shutil
import tempfile

from .. import __version__, deployment, dotenv, runner, safefile
from ..egress import keys
from ..errors import RefusedError
from ..runner import CommandError
from . import archive, cipher, keep
from .stack import COMPOSE_FILES, SECRETS, STATE

INSTALL_FILES = (".env", "openclaw.json") + COMPOSE_FILES
NO_COMMAND = 99   # the image has no `openclaw backup create`
OPENCLAW_BACKUP = (
    'node dist/index.js backup create --help >/dev/null 2>&1 || exit %d; '
    'mkdir -p "$HOME/out" && node dist/index.js backup create --verify --output "$HOME/out" '
    '>&2 && set -- "$HOME"/out/*.tar.gz && [ $# -eq 1 ] && [ -f "$1" ] && cat "$1"' % NO_COMMAND)


# a detached watchdog: our death (EOF before "done") while the gateway is stopped starts it
WATCHDOG = 'read x; [ "$x" = done ] || exec docker compose start openclaw'


def default_dir(directory):
    return os.path.join(directory, "backups")


def stamp():
    return datetime.datetime.utcnow().strftime("%Y%m%dT%H%M%SZ")


def install_id(directory):
    """Which install an archive belongs to: a hash of the gateway token in .env (kept across
    upgrades and restores, different on every install; the token itself never stored)."""
    data = safefile.read(os.path.join(directory, ".env")) or b""
    token = dotenv.parse(data.decode("utf-8", "replace")).get(deployment.TOKEN_VAR, "")
    if not token:
        raise RefusedError("no %s in .env: not a claw-cage install" % deployment.TOKEN_VAR)
    return hashlib.sha256(b"claw-cage install\0" + token.encode()).hexdigest()[:32]


def _to_file(path, run):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        return run(f)


def _state_openclaw(stack, path):
    """OpenClaw's archive of the state volume, or None when the image lacks the command."""
    scratch = "%s_backup-scratch-%s" % (stack.project, stamp().lower())
    stack.new_volume(scratch, "scratch")
    try:
        # the scratch volume mounted on ~ takes the image's /home/node owner (uid 1000)
        mounts = [(scratch, "/home/node"), (stack.volumes[STATE], "/home/node/.openclaw")]
        policy = os.path.join(stack.dir, "openclaw.json")
        if os.path.isfile(policy):   # the config in force, as the gateway sees it
            mounts.append((policy, "/home/node/.openclaw/openclaw.json:ro"))
        caps = ["--user", deployment.USER, "--cap-drop", "ALL", "-e", "HOME=/home/node",
                "-e", "OPENCLAW_STATE_DIR=/home/node/.openclaw",
                "-e", "OPENCLAW_CONFIG_PATH=/home/node/.openclaw/openclaw.json"]
        try:
            _to_file(path, lambda f: stack.one_shot(mounts, ["-c", OPENCLAW_BACKUP], caps, f))
        except CommandError as err:
            if err.returncode == NO_COMMAND:
                os.unlink(path)
                return None
            raise
        return path
    finally:
        stack.remove_volumes([scratch])


def _copy_volume(stack, volume, path):
    _to_file(path, lambda f: stack.one_shot([(volume, "/v:ro")],
                                            ["-c", "cd /v && tar -czf - ."], stdout=f))


def _env(directory, with_keys):
    """(.env bytes for the archive, the key names it had set). Without --with-keys the
    provider keys and channel tokens are blanked: they live with the proxy and in the user's
    .env, and an archive travels (another disk, a cloud folder)."""
    data = safefile.read(os.path.join(directory, ".env"))
    if data is None:
        return None, []
    try:
        text = data.decode("utf-8")
        names = [n for n in keys.NAMES + keys.INSIDE if dotenv.parse(text, environ={}).get(n)]
        return (data if with_keys else keys.blank(text).encode()), names
    except (UnicodeDecodeError, ValueError, dotenv.DotenvError) as err:
        raise RefusedError(".env cannot be read to leave its keys out (%s): refused, nothing "
                           "changed (--with-keys keeps it as it is)" % str(err)[:80])


def take(stack, dest, ui, encrypt=None, with_keys=False):
    """Write one archive into dest; return its path."""
    enc, check, suffix = cipher.encryptor(encrypt) if encrypt else (None, None, "")
    if not stack.volume_exists(stack.volumes[STATE]):
        raise RefusedError("no state volume %s: nothing to back up (has the stack ever run?)"
                           % stack.volumes[STATE])
    env, names = _env(stack.dir, with_keys)
    facts = {"created": stamp(), "claw_cage": __version__, "install": install_id(stack.dir),
             "keys": names, "keys_kept": bool(with_keys)}
    facts.update(stack.image_facts())
    # an encrypted archive's clear pieces wait next to the clear .env, not in dest
    home = default_dir(stack.dir) if encrypt else dest
    for d in {dest, home}:
        os.makedirs(d, 0o700, exist_ok=True)
    stack.sweep(ui, [n for d in {dest, home} for n in archive.sweep(d)])
    final = os.path.join(dest, archive.file_name(facts["created"], suffix))
    if os.path.lexists(final):
        raise RefusedError("%s exists already: wait a second and run again" % final)
    stage = tempfile.mkdtemp(prefix=archive.PREFIX, dir=home)
    mine = safefile.DirLock(stage).__enter__()   # sweep() leaves a live run's folder
    try:
        staged = []
        state = _state_openclaw(stack, os.path.join(stage, "openclaw"))
        if state:
            facts["state"] = "openclaw-backup"
            staged.append((archive.OPENCLAW, state))
            ui.ok("state volume archived by OpenClaw's `openclaw backup create --verify` "
                  "(the gateway kept running)")
        else:
            facts["state"] = "copy"
            staged.append((archive.volume_member(STATE), os.path.join(stage, STATE)))
            was_running = stack.gateway_id() is not None
            ui.warn("this OpenClaw image has no `openclaw backup` command: the gateway is "
                    "stopped while its state volume is copied" if was_running else
                    "no `openclaw backup` command: copying the state volume")
            if was_running:
                guard = runner.start(["sh", "-c", WATCHDOG], cwd=stack.dir, detach=True)
                stack.compose("stop", "openclaw")
            try:
                _copy_volume(stack, stack.volumes[STATE], staged[-1][1])
            finally:
                if was_running:
                    stack.compose("start", "openclaw")
                    guard.stdin.write(b"done\n")
                    runner.finish(guard)
                    ui.ok("gateway started again")
        if stack.volume_exists(stack.volumes[SECRETS]):
            staged.append((archive.volume_member(SECRETS), os.path.join(stage, SECRETS)))
            _copy_volume(stack, stack.volumes[SECRETS], staged[-1][1])
        for name in INSTALL_FILES:
            data = env if name == ".env" else safefile.read(os.path.join(stack.dir, name))
            if data is not None:
                path = os.path.join(stage, "install" + name)
                _to_file(path, lambda f: f.write(data))
                staged.append((archive.install_member(name), path))
        archive.write(final, staged, facts, enc, check)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
        mine.__exit__()
    keep.wrote(stack.dir, final, facts)
    ui.ok("backup written: %s (mode 600, %.1f MB)" % (final, os.path.getsize(final) / 1e6))
    ui.info("  holds the state, the auth-profile key, claw-cage's files, the image name; left "
            "out: the caches claw-npm and claw-local (plugins rebuild them)")
    if with_keys and names:
        (ui.ok if enc else ui.warn)("the archive's .env keeps %s%s" % (", ".join(names), (
            " (encrypted)" if enc else " IN CLEAR: keep it private (--encrypt next time)")))
    elif names:
        ui.ok("left out: %s (blank in the archive's .env; /etc/claw-cage/keys is never in a "
              "backup); --with-keys keeps them" % ", ".join(names))
    if not enc:
        ui.warn("the archive holds the agent's state (its sessions, channel credentials) in "
                "clear: keep it private")
    return final
