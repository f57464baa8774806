"""Which probes --verify sends from the claw-cage network, and what each result means.

The plan is data built by a pure function from what the host looks like (its default gateway,
its own LAN address, the bridge's address) and how the firewall was configured (--allow,
--profile). Every probe runs at the same time, each bounded by probes.PROBE_MS, so the whole
set costs one timeout even when every LAN packet is silently dropped.

Verdicts. A probe that must be blocked passes when nothing answers (a timeout). ECONNREFUSED
counts as REACHED: the firewall drops silently, so a refusal means a packet got to the target and
its answer came back (this is what makes a probe meaningful even where nothing listens). An ICMP
error (EHOSTUNREACH) is a warning: no route on the host, or a router beyond the cage answered.
A failure that is none of these (a node crash) cannot tell anything: skip, never "blocked".
"""

import concurrent.futures
import ipaddress
import os
import re
import socket
import struct
import time

from ..firewall import allow, rules
from . import probes
from .report import Row, PASS, FAIL, WARN, SKIP

SECTION = "Probes from the claw-cage network"

# Beyond-the-host targets, one per special-purpose range a container has no business reaching:
# (address, port, why). Port 80: what a LAN device most likely serves.
RANGE_TARGETS = (
    ("10.0.0.1", 80, "RFC 1918 10/8"),
    ("172.16.0.1", 80, "RFC 1918 172.16/12"),
    ("192.168.1.1", 80, "RFC 1918 192.168/16, a home router"),
    ("100.100.100.100", 80, "CGNAT 100.64/10, Tailscale"),
    ("169.254.169.254", 80, "link-local, cloud metadata"),
    ("192.0.0.9", 80, "IETF 192.0.0/24"),
    ("198.18.0.1", 80, "benchmarking 198.18/15"),
)
# The host itself: its sshd is what most likely listens there.
HOST_PORT = 22
LAN_GATEWAY_PORT = 80
INTERNET_ENV = "CLAW_CAGE_INTERNET_PROBE"
INTERNET_DEFAULT = ("api.anthropic.com", 443)
_HOST_RE = re.compile(r"[A-Za-z0-9.:-]{1,253}")   # a name or an address, nothing else


# ---- what the host looks like (read from /proc and the kernel, no packets) -----------------

def default_gateway(route_text):
    """IPv4 default gateway from /proc/net/route text (lowest metric), or None."""
    best = None
    for line in route_text.splitlines()[1:]:
        f = line.split()
        if len(f) < 8 or f[1] != "00000000" or f[7] != "00000000":
            continue
        flags, metric = int(f[3], 16), int(f[6])
        if not flags & 0x2:  # RTF_GATEWAY
            continue
        gw = socket.inet_ntoa(struct.pack("=I", int(f[2], 16)))
        if best is None or metric < best[0]:
            best = (metric, gw)
    return best[1] if best else None


def source_address(dest):
    """The host address the kernel would use to reach `dest`: connect() on a UDP socket picks
    a route and a source without sending anything."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.connect((dest, 9))
        return s.getsockname()[0]
    except OSError:
        return None
    finally:
        s.close()


def interface_address(name):
    """IPv4 address of interface `name` (SIOCGIFADDR), or None."""
    import fcntl
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        packed = fcntl.ioctl(s.fileno(), 0x8915, struct.pack("256s", name.encode()[:15]))
        return socket.inet_ntoa(packed[20:24])
    except OSError:
        return None
    finally:
        s.close()


class HostView:
    """The facts the plan needs, gathered once."""

    def __init__(self, lan_gateway, lan_address, bridge_address):
        self.lan_gateway, self.lan_address = lan_gateway, lan_address
        self.bridge_address = bridge_address


def look_at_host(bridge, subnet):
    try:
        with open("/proc/net/route") as f:
            gw = default_gateway(f.read())
    except OSError:
        gw = None
    # Without a gateway (a default route straight onto an interface), ask the kernel which
    # address it would leave from toward a documentation address: a route lookup, no packet.
    lan = source_address(gw or "192.0.2.1")
    br = interface_address(bridge) or str(next(subnet.hosts()))
    return HostView(gw, lan, br)


def internet_target(environ=None):
    """(host, port) of the internet probe, or None when disabled (CLAW_CAGE_INTERNET_PROBE=off).
    The override exists for hosts whose agent talks to another API, and for the test lab."""
    value = (environ if environ is not None else os.environ).get(INTERNET_ENV, "")
    if not value:
        return INTERNET_DEFAULT
    if value == "off":
        return None
    host, sep, port = value.rpartition(":")
    host = host.strip("[]")
    if (not sep or not _HOST_RE.fullmatch(host) or not port.isdigit()
            or not 0 < int(port) < 65536):
        raise ValueError("%s must be HOST:PORT or off, not %r" % (INTERNET_ENV, value))
    return host, int(port)


# ---- the plan (pure) -----------------------------------------------------------------------

def plan(view, allow_targets, local_only, internet):
    """The probes to send. allow_targets: [(label, address, port)] the firewall lets through;
    internet: (host, port) or None. Returns a list of probes.Probe."""
    allowed = set((a, p) for _, a, p in allow_targets)
    out = []

    def blocked(name, addr, port, why):
        if (addr, port) not in allowed:
            out.append(probes.Probe(name, "tcp", (addr, port), False, why))

    # A public default gateway (a VPS's provider router) is the internet, which the internet
    # profile lets through: probing it would fail a cage that works. A LAN router is private.
    if view.lan_gateway and (local_only or in_blocked_range(view.lan_gateway)):
        blocked("LAN gateway %s:%d" % (view.lan_gateway, LAN_GATEWAY_PORT), view.lan_gateway,
                LAN_GATEWAY_PORT, "the host's default gateway")
    if view.lan_address:
        blocked("host LAN address %s:%d" % (view.lan_address, HOST_PORT), view.lan_address,
                HOST_PORT, "the host itself, by its LAN address")
    if view.bridge_address:
        blocked("bridge gateway %s:%d" % (view.bridge_address, HOST_PORT), view.bridge_address,
                HOST_PORT, "the host itself, by the bridge's address")
    for addr, port, why in RANGE_TARGETS:
        if addr in (view.lan_gateway, view.lan_address):
            continue
        blocked("%s:%d" % (addr, port), addr, port, why)
    for label, addr, port in allow_targets:
        out.append(probes.Probe("allowed %s" % label, "tcp", (addr, port), True,
                                "allowed with --allow %s" % label))
    if internet:
        host, port = internet
        out.append(probes.Probe("internet %s:%d" % (host, port), "tcp", (host, port),
                                not local_only, "an internet API"))
        # Under local-only the agent may need no names at all: a failure is only a warning.
        # An address given as the target (CLAW_CAGE_INTERNET_PROBE) leaves no name to resolve.
        if not is_address(host):
            out.append(probes.Probe("DNS %s" % host, "dns", (host,), True, "name resolution",
                                    soft=local_only))
    return out


def in_blocked_range(address):
    """True when the rule table's special-purpose ranges hold address (an IP, as text)."""
    addr = ipaddress.ip_address(address)
    return any(addr in ipaddress.ip_network(cidr)
               for cidr, _why in rules.SPECIAL_RANGES[addr.version])


def allow_targets(allows, bridge_address):
    """[(label, address, port)] to probe for the firewall's allow.Allow entries. Only
    single IPv4 hosts with a port can be probed (the claw-cage network has no IPv6); `host:PORT`
    is probed at the bridge's address, where the container meets the host."""
    out = []
    for a in allows:
        if a.port is None:
            continue
        if a.kind == "host":
            out.append((allow.describe(a), bridge_address, a.port))
        elif a.net.version == 4 and a.net.num_addresses == 1:
            out.append((allow.describe(a), str(a.net.network_address), a.port))
    return out


# ---- running and judging -------------------------------------------------------------------

# How a failed probe failed, from the one word PROBE_JS (or the stand-in) prints.
SILENT = ("ETIMEDOUT", "TimeoutError", "AbortError")        # no answer at all: what DROP gives
ANSWERED = ("ECONNREFUSED", "ECONNRESET")                   # the target (or a firewall) answered
ICMP = ("EHOSTUNREACH", "ENETUNREACH", "EHOSTDOWN", "ENETDOWN")
NO_NAME = ("ENOTFOUND", "EAI_AGAIN", "EAI_FAIL", "ESERVFAIL", "ENODATA", "EREFUSED")


def classify(probe, outcome):
    """"reached", "silent", "icmp" (an ICMP error came back: no route on the host, or a router
    beyond the cage answered; a cage drop gives no answer), "no-name", or "unknown" (the probe
    itself broke: a node crash prints a stack trace, not one of these words)."""
    if outcome.reached:
        return "reached"
    word = outcome.reason.split()[0] if outcome.reason else ""
    if probe.mode == "dns":
        return "no-name" if word in NO_NAME + SILENT else "unknown"
    if word in ANSWERED or word == "HTTP":
        return "reached"
    for kind, words in (("silent", SILENT), ("icmp", ICMP), ("no-name", NO_NAME)):
        if word in words:
            return kind
    return "unknown"


def judge(probe, outcome):
    """Row for one probe, from its Outcome."""
    name = "probe " + probe.name
    if outcome.reached is None:
        return Row(SECTION, name, SKIP, "probe could not run: %s" % outcome.reason, needed=True)
    kind = classify(probe, outcome)
    how = {"reached": "resolves" if probe.mode == "dns" else (
               "connected" if outcome.reached else "answered (%s)" % outcome.reason),
           "silent": "no answer (%s)" % outcome.reason,
           "icmp": "ICMP error (%s)" % outcome.reason,
           "no-name": "does not resolve (%s)" % outcome.reason,
           "unknown": "probe failed oddly (%s)" % outcome.reason}[kind]
    if kind == "unknown":
        return Row(SECTION, name, SKIP, "cannot tell: %s, %s" % (probe.why, how), needed=True)
    if probe.expect_reach:
        if kind == "reached":
            return Row(SECTION, name, PASS, "reachable: %s, %s" % (probe.why, how))
        return Row(SECTION, name, WARN if probe.soft else FAIL,
                   "not reachable, but should be: %s, %s" % (probe.why, how))
    if kind == "reached":
        return Row(SECTION, name, FAIL, "REACHABLE from the container: %s, %s" % (probe.why, how))
    if kind == "icmp":
        return Row(SECTION, name, WARN, "no connection, but not a silent drop: %s, %s: no route "
                                        "on the host, or a router beyond the cage answered"
                   % (probe.why, how))
    return Row(SECTION, name, PASS, "blocked: %s, %s" % (probe.why, how))


def host_reaches(host, port, timeout):
    """Whether the host itself can open host:port (decides between fail and skip for the
    internet probe: a host without internet cannot give its container any)."""
    try:
        socket.create_connection((host, port), timeout=timeout).close()
        return True
    except OSError:
        return False


def run(plan_, batch_argv, single_argv=None, internet=None, timeout=None):
    """Run every probe at once; return rows in plan order, and the elapsed time.
    batch_argv(plan) -> the one command running them all (probes.BATCH_SH);
    single_argv(probe) -> one probe's command, for the fallback when the image has no sh;
    timeout: the cap on that command (probes.command_timeout: container start + probes)."""
    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(max_workers=len(plan_) + 1) as pool:
        try:
            outcomes = probes.run_batch(batch_argv(plan_), len(plan_), timeout)
        except probes.NoShell as err:
            if single_argv is None:
                outcomes = [probes.Outcome(None, "no sh to run the probes: %s" % err)] * len(plan_)
            else:
                futures = [pool.submit(probes.run_probe, single_argv(p), timeout)
                           for p in plan_]
                outcomes = [f.result() for f in futures]
    rows = [judge(p, o) for p, o in zip(plan_, outcomes)]
    # Only when the container could not reach the internet target: can the host itself? (A
    # host without internet cannot give its container any.) Asked only then, so a run whose
    # probes hold sends nothing from the host.
    missed = [i for i, (p, row) in enumerate(zip(plan_, rows))
              if internet and p.expect_reach and p.args[0] == internet[0] and row.status == FAIL]
    if missed and not host_reaches(internet[0], internet[1], probes.PROBE_MS / 1000.0):
        for i in missed:
            rows[i] = Row(SECTION, rows[i].check, SKIP,
                          "the host itself cannot reach %s: no internet to give" % internet[0])
    return rows, time.monotonic() - started


def is_address(text):
    try:
        ipaddress.ip_address(text)
        return True
    except ValueError:
        return False
