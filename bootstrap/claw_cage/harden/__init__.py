"""--harden-docker: merge seed 003 step 5's daemon settings into /etc/docker/daemon.json.

    sudo python3 claw-cage.pyz --harden-docker [--dry-run]
    sudo python3 claw-cage.pyz --harden-docker --revert

Reads the running engine (version, flags, swarm), merges what it supports into daemon.json
without changing any value the user set, shows the diff, validates the result, then writes it
atomically with a backup beside it and restarts Docker, checking that it comes back with the
settings; if it does not, restores the backup and restarts again. --revert puts the backup
back byte for byte. The settings and the merge are in merge.py.
"""

import json
import os
import tempfile
import time

from .. import runner
from ..errors import DaemonError, PrereqError, TargetError
from ..ui import UI
from . import merge

BACKUP = ".claw-cage.bak"    # the original bytes, kept from the first change on
ABSENT = ".claw-cage.none"   # marker: there was no daemon.json before
WAIT = 60                    # seconds dockerd gets to answer after a restart


def restart_command():
    """How this host restarts Docker: systemd where it runs, else the init script."""
    if os.path.isdir("/run/systemd/system"):
        return ["systemctl", "restart", "docker"]
    return ["service", "docker", "restart"]


def dockerd_cmdlines(proc="/proc"):
    """argv of every running dockerd (zombies have none)."""
    found = []
    for pid in os.listdir(proc):
        try:
            with open(os.path.join(proc, pid, "cmdline"), "rb") as f:
                argv = f.read().decode("utf-8", "replace").split("\0")[:-1]
        except (OSError, ValueError):
            continue
        if argv and os.path.basename(argv[0]) == "dockerd":
            found.append(argv)
    return found


def dockerd_flags():
    return {a.split("=")[0] for argv in dockerd_cmdlines() for a in argv[1:] if a[:2] == "--"}


def docker_info():
    """`docker info` as a dict, or None when dockerd does not answer."""
    res = runner.run(["docker", "info", "--format", "{{json .}}"], check=False, timeout=30)
    if not res.ok:
        return None
    try:
        info = json.loads(res.stdout)
    except ValueError:
        return None
    return info if info.get("ServerVersion") else None


def read_conf(path):
    """(bytes or None when absent, dict)."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return None, {}
    except OSError as err:
        raise TargetError("cannot read %s: %s" % (path, err.strerror))
    try:
        conf = json.loads(data.decode("utf-8")) if data.strip() else {}
    except ValueError as err:
        raise TargetError("%s is not valid JSON (%s): fix it first" % (path, err))
    if not isinstance(conf, dict):
        raise TargetError("%s is not a JSON object: fix it first" % path)
    return data, conf


def write_atomic(path, data, like=None):
    """Temp file in the same folder, fsync, rename over, fsync the folder. Mode and owner
    follow `like` (the file replaced) when it exists, else 0644 root."""
    folder = os.path.dirname(path)
    st = os.stat(like) if like and os.path.exists(like) else None
    fd, tmp = tempfile.mkstemp(prefix=".claw-cage-", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fchmod(f.fileno(), st.st_mode & 0o7777 if st else 0o644)
            if st:
                os.fchown(f.fileno(), st.st_uid, st.st_gid)
            os.fsync(f.fileno())
        os.rename(tmp, path)
    except OSError as err:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise TargetError("cannot write %s: %s" % (path, err.strerror))
    dfd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def validate(text, info):
    """Refuse a daemon.json this engine would refuse: `dockerd --validate` (23.0+), else the
    keys it knows (from `dockerd --help`)."""
    dockerd = runner.which("dockerd")
    if not dockerd:
        raise PrereqError("dockerd not found: cannot validate the new daemon.json")
    if merge.version_tuple(info["ServerVersion"]) >= (23, 0):
        with tempfile.NamedTemporaryFile("w", suffix=".json") as f:
            f.write(text)
            f.flush()
            res = runner.run([dockerd, "--validate", "--config-file", f.name], check=False)
        if not res.ok:
            raise DaemonError("dockerd refuses the merged daemon.json, nothing written: %s"
                              % (res.stderr.strip().splitlines() or ["?"])[-1])
        return
    known = merge.known_keys(runner.run([dockerd, "--help"]).stdout)
    unknown = sorted(set(json.loads(text)) - known)
    if unknown:
        raise DaemonError("daemon.json would hold keys Docker %s does not know: %s; nothing "
                          "written" % (info["ServerVersion"], ", ".join(unknown)))


def wait_for_dockerd(timeout=WAIT):
    """docker info once dockerd answers; None once it is gone or `timeout` passed."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        info = docker_info()
        if info:
            return info
        if time.monotonic() - start > 5 and not dockerd_cmdlines():
            return None
        time.sleep(1)
    return None


def restart(ui):
    argv = restart_command()
    if argv[0] == "systemctl":  # docker.service allows 3 starts a minute: ours must not fail
        runner.run(["systemctl", "reset-failed", "docker"], check=False)
    ui.info("restarting Docker: %s" % " ".join(argv))
    res = runner.run(argv, check=False, timeout=180)
    info = wait_for_dockerd() if res.ok or dockerd_cmdlines() else None
    return info


def shown(conf, info):
    """The settings `docker info` can show, and whether they are in effect: [(name, ok)]."""
    rows = []
    if "live-restore" in conf:
        rows.append(("live-restore", info.get("LiveRestoreEnabled") == conf["live-restore"]))
    if "log-driver" in conf:
        rows.append(("log-driver", info.get("LoggingDriver") == conf["log-driver"]))
    if "icc" in conf:
        res = runner.run(["docker", "network", "inspect", "bridge", "--format",
                          "{{json .Options}}"], check=False)
        opts = json.loads(res.stdout) if res.ok else {}
        rows.append(("icc", opts.get("com.docker.network.bridge.enable_icc")
                     == str(conf["icc"]).lower()))
    return rows


def apply_and_restart(ui, path, new, old, warning):
    """Write `new`, restart, check; on no answer put `old` (None: no file) back, restart."""
    write_atomic(path, new, like=path)
    ui.info(warning)
    info = restart(ui)
    if info:
        return info
    ui.fail("Docker did not come back with the new %s: restoring the previous one" % path)
    if old is None:
        os.unlink(path)
    else:
        write_atomic(path, old, like=path)
    if restart(ui):
        raise DaemonError("Docker refused the new %s: the previous one is back and Docker "
                          "runs again with it" % path)
    raise DaemonError("Docker does not start even with the previous %s back: see "
                      "`journalctl -u docker` or /var/log/docker.log" % path)


def harden(args, ui, path):
    info = docker_info()
    if not info:
        raise PrereqError("Docker does not answer: start it first (the settings depend on "
                          "the running engine)")
    old, conf = read_conf(path)
    swarm = (info.get("Swarm") or {}).get("LocalNodeState") == "active"
    merged, notes = merge.merge(conf, merge.version_tuple(info["ServerVersion"]),
                                dockerd_flags(), swarm)
    for kind, text in notes:
        (ui.warn if kind == "conflict" else ui.info)(text)
    if merged == conf:
        ui.ok("%s already holds every setting this engine supports: nothing to change" % path)
        return 0
    text = merge.render(merged)
    ui.info(merge.diff(old.decode("utf-8") if old else "", text, path).rstrip("\n"))
    validate(text, info)
    if args.dry_run:
        ui.info("dry run: nothing written, Docker not restarted")
        return 0
    if not os.path.exists(path + BACKUP) and not os.path.exists(path + ABSENT):
        if old is None:
            write_atomic(path + ABSENT, b"")
        else:
            write_atomic(path + BACKUP, old, like=path)
    stop = ("running containers keep running (live-restore is on)" if
            info.get("LiveRestoreEnabled") else "running containers stop and restart only "
            "if their restart policy says so (live-restore was off)")
    info = apply_and_restart(ui, path, text.encode("utf-8"), old,
                             "Docker restarts now to read it: " + stop)
    bad = [name for name, ok in shown(merged, info) if not ok]
    if bad:
        raise DaemonError("Docker runs again but does not show %s as set: is it overridden?"
                          % ", ".join(bad))
    ui.ok("Docker runs with the hardened %s (backup: %s)" % (path, path + (
        BACKUP if os.path.exists(path + BACKUP) else ABSENT)))
    return 0


def revert(args, ui, path):
    if os.path.exists(path + BACKUP):
        with open(path + BACKUP, "rb") as f:
            old = f.read()
        backup = path + BACKUP
    elif os.path.exists(path + ABSENT):
        old, backup = None, path + ABSENT
    else:
        raise TargetError("no claw-cage backup of %s: nothing to revert" % path)
    current, _conf = read_conf(path)
    if current == old:
        ui.ok("%s is already the original" % path)
    elif args.dry_run:
        ui.info(merge.diff((current or b"").decode("utf-8"), (old or b"").decode("utf-8"), path))
        ui.info("dry run: nothing written, Docker not restarted")
        return 0
    else:
        ui.info("putting back %s" % ("the original " + path if old is not None else
                                     "no daemon.json (there was none)"))
        if old is None:
            os.unlink(path)
            if not restart(ui):
                raise DaemonError("Docker does not start after the revert")
        else:
            apply_and_restart(ui, path, old, current, "Docker restarts now to read it")
    os.unlink(backup)
    return 0


def main(args):
    ui = UI()
    path = merge.DAEMON_JSON
    if os.geteuid() != 0 and not args.dry_run:
        raise PrereqError("--harden-docker changes %s and restarts Docker: run it with sudo"
                          % path)
    return (revert if args.revert else harden)(args, ui, path)
