"""--harden-docker [--dry-run] [--revert]: seed 003 step 5's settings in daemon.json, safely.

Merge (merge.py) what the running engine supports, show the diff, validate, write with a
backup, restart Docker and check it; if it does not come back, put the old file back and
restart again. --revert puts the backup back byte for byte.
"""

import json
import os
import tempfile
import time

from .. import runner
from ..errors import DaemonError, PrereqError, TargetError
from ..ui import UI
from . import merge

BACKUP, ABSENT = ".claw-cage.bak", ".claw-cage.none"   # the original; or: there was none


def restart_command():
    if os.path.isdir("/run/systemd/system"):
        return ["systemctl", "restart", "docker"]
    return ["service", "docker", "restart"]


def dockerd_argvs():
    """argv of every running dockerd, read from /proc (zombies have none)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open("/proc/%s/cmdline" % pid, "rb") as f:
                argv = f.read().decode("utf-8", "replace").split("\0")[:-1]
        except OSError:
            continue
        if argv and os.path.basename(argv[0]) == "dockerd":
            found.append(argv)
    return found


def docker_info():
    """`docker info` as a dict, or None when dockerd does not answer."""
    res = runner.run(["docker", "info", "--format", "{{json .}}"], check=False, timeout=30)
    try:
        info = json.loads(res.stdout) if res.ok else {}
    except ValueError:
        info = {}
    return info if info.get("ServerVersion") else None


def read(path):
    """(bytes or None when absent, the JSON object)."""
    try:
        with open(path, "rb") as f:
            data = f.read()
        conf = json.loads(data.decode("utf-8") or "{}")
    except FileNotFoundError:
        return None, {}
    except (OSError, ValueError) as err:
        raise TargetError("cannot use %s: %s" % (path, getattr(err, "strerror", None) or err))
    if not isinstance(conf, dict):
        raise TargetError("%s is not a JSON object" % path)
    return data, conf


def raw(path):
    """The bytes of path, None when absent (or when path is None)."""
    try:
        with open(path, "rb") as f:
            return f.read()
    except (FileNotFoundError, TypeError):
        return None
    except OSError as err:
        raise TargetError("cannot read %s: %s" % (path, err.strerror))


def write(path, data):
    """Temp file beside it, fsync, rename over; mode and owner of the file replaced."""
    st = os.stat(path) if os.path.exists(path) else None
    fd, tmp = tempfile.mkstemp(prefix=".claw-cage-", dir=os.path.dirname(path))
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            os.fchmod(f.fileno(), st.st_mode & 0o7777 if st else 0o644)
            if st:
                os.fchown(f.fileno(), st.st_uid, st.st_gid)
            f.flush()
            os.fsync(f.fileno())
        os.rename(tmp, path)
    except OSError as err:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise TargetError("cannot write %s: %s" % (path, err.strerror))
    dfd = os.open(os.path.dirname(path), os.O_RDONLY)
    os.fsync(dfd)
    os.close(dfd)


def validate(text, version):
    """`dockerd --validate` (23.0+), else the keys this engine's `dockerd --help` knows."""
    dockerd = runner.which("dockerd") or "dockerd"
    if version >= (23, 0):
        with tempfile.NamedTemporaryFile("w", suffix=".json") as f:
            f.write(text)
            f.flush()
            res = runner.run([dockerd, "--validate", "--config-file", f.name], check=False)
        if not res.ok:
            raise DaemonError("dockerd refuses the merged daemon.json, nothing written: %s"
                              % (res.stderr.strip().splitlines() or ["?"])[-1])
        return
    unknown = set(json.loads(text)) - merge.known_keys(runner.run([dockerd, "--help"]).stdout)
    if unknown:
        raise DaemonError("this engine does not know %s: nothing written"
                          % ", ".join(sorted(unknown)))


def restart(ui):
    """Restart Docker; `docker info` once dockerd answers, None if it does not come back."""
    argv = restart_command()
    if argv[0] == "systemctl":  # docker.service allows 3 starts a minute: ours must not fail
        runner.run(["systemctl", "reset-failed", "docker"], check=False)
    ui.info("restarting Docker: " + " ".join(argv))
    ok = runner.run(argv, check=False, timeout=180).ok
    start = time.monotonic()
    while time.monotonic() - start < 60 and (ok or dockerd_argvs()):
        info = docker_info()
        if info:
            return info
        if time.monotonic() - start > 5 and not dockerd_argvs():
            break  # an init script says ok at once: dockerd itself tells whether it runs
        time.sleep(1)
    return None


def say_restart(ui, keep):
    """Said before every restart. Measured: containers survive it only when the dockerd
    that stops and the one that starts both have live-restore on."""
    ui.info("Docker restarts now: running containers " + (
        "keep running (live-restore)" if keep else "stop, and start again only if their "
        "restart policy says so (live-restore is not on before and after)"))


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
