"""The running Docker engine, as --harden-docker sees it: its `docker info`, the argv of its
dockerd, whether dockerd accepts a daemon.json, and restarting it until it answers."""

import json
import os
import tempfile
import time

from .. import runner
from ..errors import DaemonError
from . import merge


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
