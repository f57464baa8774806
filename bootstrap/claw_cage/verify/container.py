"""Container rows: `docker inspect` of the running gateway, read against the hardening the
compose file promises, and which bridge it really sits on. Read-only: only `docker ps`,
`docker inspect` (once per run: find_gateway) and `docker network inspect` run here.
"""

import ipaddress
import json

from .. import deployment, runner
from .probes import brief, failure
from .report import Row, PASS, FAIL, WARN, SKIP

SECTION = "Container"
PROJECT = deployment.PROJECT
SERVICE = "openclaw"
NETWORK_SUFFIX = "_claw-net"
CHECKS = ("capabilities", "no-new-privileges", "read-only root", "user", "docker socket",
          "port binding", "limits")


def _row(check, status, detail, needed=False):
    return Row(SECTION, "container " + check, status, detail, needed)


def skipped(reason, needed=False):
    return [_row(name, SKIP, reason, needed) for name in CHECKS]


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
        return None, "Docker does not answer: %s" % failure(err, 10)
    if not ps.ok:
        return None, "Docker does not answer: %s" % brief(ps.stderr, "exit %d" % ps.returncode)
    ids = ps.stdout.split()
    if not ids:
        return None, "the gateway container is not running (docker compose up -d)"
    try:
        result = runner.run(["docker", "inspect", ids[0]], check=False, timeout=10)
        info = json.loads(result.stdout)[0]
    except runner.CommandError as err:
        return None, "docker inspect: %s" % failure(err, 10)
    except (ValueError, IndexError, KeyError):
        return None, "docker inspect gave no usable answer"
    status = str((info.get("State") or {}).get("Status") or "")
    if status != "running":
        return None, "the gateway container is %s, not running (docker compose logs openclaw)" \
            % (status or "in an unknown state")
    return info, None


BRIDGE_KEY = "com.docker.network.bridge.name"


def networks_of(info):
    """([`docker network inspect` object], None) of the gateway's networks, or (None, why)."""
    ids = sorted(n.get("NetworkID") or name for name, n in
                 ((info.get("NetworkSettings") or {}).get("Networks") or {}).items())
    if not ids:
        return [], None
    try:
        result = runner.run(["docker", "network", "inspect"] + ids, check=False, timeout=10)
    except runner.CommandError as err:
        return None, "docker network inspect: %s" % failure(err, 10)
    if not result.ok:
        return None, "docker network inspect: %s" % brief(result.stderr, "exit %d"
                                                          % result.returncode)
    try:
        found = json.loads(result.stdout)
        if not isinstance(found, list):
            raise ValueError
        return found, None
    except ValueError:
        return None, "docker network inspect gave no usable answer"


def bridge_of(network):
    """The Linux bridge interface of a `docker network inspect` object, or None (not a bridge
    network). Docker names it br-<first 12 of the id> unless the network sets one."""
    if network.get("Driver") != "bridge":
        return None
    name = (network.get("Options") or {}).get(BRIDGE_KEY)
    return name or "br-" + str(network.get("Id") or "")[:12]


def network_row(section, info, why, bridge, subnet, networks, networks_why=None):
    """Whether the running gateway sits on the caged bridge, and only there: every network it
    is on is a bridge network on `bridge`, its address inside `subnet`. Pure.
    info/why: find_gateway()'s answer; networks/networks_why: networks_of()'s."""
    name = "gateway network"
    if info is None:
        return Row(section, name, SKIP, why)
    mode = str((info.get("HostConfig") or {}).get("NetworkMode") or "")
    attached = (info.get("NetworkSettings") or {}).get("Networks") or {}
    if mode == "none" and not attached:
        return Row(section, name, PASS, "no network: the gateway has only its loopback")
    if mode.startswith("container:"):
        return Row(section, name, SKIP, "the gateway shares the network namespace of "
                   "container %s: not looked at here" % mode[len("container:"):][:12])
    if networks is None:
        return Row(section, name, SKIP, networks_why or "its networks could not be read")
    by_id = dict((n.get("Id"), n) for n in networks if isinstance(n, dict))
    by_name = dict((n.get("Name"), n) for n in networks if isinstance(n, dict))
    wrong, where = [], []
    for net_name, att in sorted(attached.items()):
        net = by_id.get(att.get("NetworkID")) or by_name.get(net_name) or {}
        iface = bridge_of(net) if net else None
        addr = att.get("IPAddress") or ""
        try:
            inside = ipaddress.ip_address(addr) in subnet
        except ValueError:
            inside = False
        if iface != bridge or not inside:
            wrong.append("%s (%s, %s)" % (net_name, iface or "not a bridge network",
                                          addr or "no address"))
        else:
            where.append("%s on %s at %s" % (net_name, iface, addr))
    if not attached:
        wrong.append("no network (network_mode %s)" % (mode or "unknown"))
    if wrong:
        return Row(section, name, FAIL, "the gateway is on %s, outside the cage on %s (%s): "
                   "remove what moves its network (an override file, COMPOSE_FILE in .env), "
                   "then docker compose up -d" % (", ".join(wrong), bridge, subnet))
    return Row(section, name, PASS, "on the caged bridge only: %s" % ", ".join(where))


def probe_network(info):
    """(network name, image id) a throwaway probe container must use to stand where the
    gateway stands, or (None, None)."""
    nets = sorted((info.get("NetworkSettings") or {}).get("Networks") or {})
    chosen = [n for n in nets if n == PROJECT + NETWORK_SUFFIX] or \
             [n for n in nets if n.endswith(NETWORK_SUFFIX)]
    return (chosen[0] if chosen else None), info.get("Image")


def resolvers(info):
    """The resolvers the container was given (`dns:`), in order."""
    return [str(d) for d in ((info.get("HostConfig") or {}).get("Dns") or [])]


def dns_row(info, pinned, blocked=None):
    """Whether the running gateway asks the resolvers docker-compose.yml (and .env) pin.
    pinned: [address] expected ([] when the installed compose file pins none);
    blocked(address) -> True when the firewall drops port 53 there. Pure."""
    got = resolvers(info)
    name = "container DNS"
    if not pinned:
        if got:
            return Row(SECTION, name, PASS, "resolvers %s set (docker-compose.yml pins none)"
                       % ", ".join(got))
        return Row(SECTION, name, WARN, "no resolvers pinned: the container asks the host's, "
                   "perhaps a LAN resolver the cage blocks; re-run the installer for the "
                   "current docker-compose.yml, then docker compose up -d")
    if got != pinned:
        return Row(SECTION, name, FAIL, "the container asks %s, not %s pinned by "
                   "docker-compose.yml and .env (CLAW_DNS): docker compose up -d"
                   % (", ".join(got) or "the host's resolvers", ", ".join(pinned)))
    cut = [a for a in got if blocked and _is_address(a) and blocked(a)]
    if cut:
        return Row(SECTION, name, WARN, "pinned %s, but the firewall blocks %s: names will "
                   "not resolve unless you --allow %s:53" % (", ".join(got), cut[0], cut[0]))
    return Row(SECTION, name, PASS, "pinned %s, asked from the container (CLAW_DNS in .env)"
               % ", ".join(got))


def _is_address(text):
    try:
        ipaddress.ip_address(text)
        return True
    except ValueError:
        return False


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
    if uid == str(deployment.UID):
        rows.append(_row("user", PASS, "runs as %s" % user))
    elif uid == "node":
        rows.append(_row("user", PASS, "runs as node (uid %d in the OpenClaw image)"
                         % deployment.UID))
    else:
        rows.append(_row("user", FAIL, "runs as %s, not uid %d"
                         % (user or "the image default (root?)", deployment.UID)))

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
