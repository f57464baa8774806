"""Container rows: `docker inspect` of the running gateway, read against the hardening the
compose file promises. Read-only: only `docker ps` and `docker inspect` run here.
"""

import json

from .. import runner
from .report import Row, PASS, FAIL, SKIP

SECTION = "Container"
PROJECT = "claw-cage"
SERVICE = "openclaw"
NETWORK_SUFFIX = "_claw-net"
CHECKS = ("capabilities", "no-new-privileges", "read-only root", "user", "docker socket",
          "port binding", "limits")


def _row(check, status, detail):
    return Row(SECTION, "container " + check, status, detail)


def skipped(reason):
    return [_row(name, SKIP, reason) for name in CHECKS]


def find_gateway():
    """(inspect dict, None) of the running gateway container, or (None, reason to skip)."""
    if not runner.which("docker"):
        return None, "docker is not installed"
    try:
        ps = runner.run(["docker", "ps", "-q", "--no-trunc",
                         "--filter", "label=com.docker.compose.project=" + PROJECT,
                         "--filter", "label=com.docker.compose.service=" + SERVICE],
                        check=False, timeout=10)
    except runner.CommandError as err:
        return None, "Docker does not answer (%s)" % str(err).split(": ", 1)[-1]
    if not ps.ok:
        why = (ps.stderr.strip().splitlines() or ["exit %d" % ps.returncode])[-1]
        return None, "Docker does not answer: %s" % why[:100]
    ids = ps.stdout.split()
    if not ids:
        return None, "the gateway container is not running (docker compose up -d)"
    result = runner.run(["docker", "inspect", ids[0]], check=False, timeout=10)
    try:
        return json.loads(result.stdout)[0], None
    except (ValueError, IndexError, KeyError):
        return None, "docker inspect gave no usable answer"


def probe_network(info):
    """(network name, image id) a throwaway probe container must use to stand where the
    gateway stands, or (None, None)."""
    nets = sorted((info.get("NetworkSettings") or {}).get("Networks") or {})
    chosen = [n for n in nets if n == PROJECT + NETWORK_SUFFIX] or \
             [n for n in nets if n.endswith(NETWORK_SUFFIX)]
    return (chosen[0] if chosen else None), info.get("Image")


def _security_opts(host):
    return [o.replace("=", ":") for o in (host.get("SecurityOpt") or [])]


def inspect_rows(info):
    """One row per hardening property, from one `docker inspect` object. Pure."""
    host = info.get("HostConfig") or {}
    config = info.get("Config") or {}
    rows = []

    drop = [c.upper() for c in host.get("CapDrop") or []]
    add = host.get("CapAdd") or []
    if host.get("Privileged"):
        rows.append(_row("capabilities", FAIL, "privileged container"))
    elif "ALL" not in drop:
        rows.append(_row("capabilities", FAIL, "cap_drop is %s, not ALL" % (drop or "empty")))
    elif add:
        rows.append(_row("capabilities", FAIL, "all dropped, but added back: %s" % ", ".join(add)))
    else:
        rows.append(_row("capabilities", PASS, "all capabilities dropped"))

    nnp = any(o in ("no-new-privileges", "no-new-privileges:true")
              for o in _security_opts(host))
    rows.append(_row("no-new-privileges", PASS if nnp else FAIL,
                     "set" if nnp else "security_opt lacks no-new-privileges:true"))

    ro = bool(host.get("ReadonlyRootfs"))
    rows.append(_row("read-only root", PASS if ro else FAIL,
                     "root filesystem read-only" if ro else "root filesystem is writable"))

    user = str(config.get("User") or "")
    uid = user.split(":", 1)[0]
    if uid == "1000":
        rows.append(_row("user", PASS, "runs as %s" % user))
    elif uid == "node":
        rows.append(_row("user", PASS, "runs as node (uid 1000 in the OpenClaw image)"))
    else:
        rows.append(_row("user", FAIL, "runs as %s, not uid 1000" % (user or "the image "
                                                                      "default (root?)")))

    mounts = [m.get("Source", "") + " " + m.get("Destination", "")
              for m in info.get("Mounts") or []] + list(host.get("Binds") or [])
    sock = [m.split()[0] for m in mounts if "docker.sock" in m]
    rows.append(_row("docker socket", FAIL if sock else PASS,
                     "Docker socket mounted: %s" % sock[0] if sock else
                     "no Docker socket mounted"))

    wide = []
    bound = []
    for port, bindings in sorted((host.get("PortBindings") or {}).items()):
        for b in bindings or []:
            # Docker leaves HostIp empty for "every address": named so, to FAIL it below; not a bind
            ip = b.get("HostIp") or "0.0.0.0"  # nosec B104
            (bound if ip in ("127.0.0.1", "::1") else wide).append(
                "%s:%s->%s" % (ip, b.get("HostPort"), port))
    if wide:
        rows.append(_row("port binding", FAIL, "published beyond loopback: %s" % ", ".join(wide)))
    else:
        rows.append(_row("port binding", PASS, ", ".join(bound) if bound else
                         "no port published"))

    memory, pids = host.get("Memory") or 0, host.get("PidsLimit") or 0
    cpus = (host.get("NanoCpus") or 0) / 1e9
    missing = [n for n, v in (("memory", memory), ("pids", pids)) if not v or v < 0]
    if missing:
        rows.append(_row("limits", FAIL, "no %s limit" % " or ".join(missing)))
    else:
        rows.append(_row("limits", PASS, "memory %d MiB, pids %d%s" % (
            memory // (1 << 20), pids, ", cpus %g" % cpus if cpus else "")))
    return rows
