"""--allow SPEC: a destination the container may reach despite the cage.

    ADDRESS[/PREFIX][:PORT]     beyond the host, IPv4:   192.168.1.50:11434   10.0.5.0/24
    [ADDRESS[/PREFIX]]:PORT     beyond the host, IPv6:   [fd00::50]:11434     (bare fd00::/64 too)
    host:PORT                   a service on the host itself (Ollama on the host: host:11434)

A PORT opens TCP and UDP on that port; no PORT opens every port of the address. Names are
refused: the rules match addresses, and a name can point somewhere else tomorrow.

What a list may open (check(), on address sets): this host only port by port (host:PORT, or
ADDRESS:PORT for one of its own addresses; a network that holds one of them leaves the host
closed); cloud metadata only with a port and WIDE_FLAG; a whole blocked range, every address,
or more blocked space than a /24 (IPv4) or a /64 (IPv6) only with WIDE_FLAG. summary() says
what a list opens, for --firewall's last lines and --verify's rows.

The host's own addresses include what the host itself receives: its broadcast addresses
(255.255.255.255, each subnet's, 172.30.0.255 on the bridge) and multicast (224.0.0.0/4,
ff00::/8). An IPv6 address that carries an IPv4 one (NAT64 64:ff9b::/96, 6to4 2002::/16,
Teredo 2001::/32: embedded.py) is judged as that IPv4 address too, since whatever translates
it delivers it there; local-use NAT64 (64:ff9b:1::/48) may carry any IPv4 address, so it counts
as the LAN (only with WIDE_FLAG); IPv4-mapped and IPv4-compatible spellings are refused: write
the IPv4 address. The unspecified 0.0.0.0 and :: are refused: they reach the host's loopback. A bare IPv6 address whose last group could be a port (fd00:1::5:8080) is refused:
brackets say which is meant.
"""

import collections
import ipaddress
import os
import re

from ..errors import UsageError
from . import rules
from .embedded import NAT64_LOCAL, embedded_ipv4_net

# kind: "host" (the host itself: INPUT) or "net" (a destination: FORWARD; and INPUT for a single
# ADDRESS:PORT, in case the address is one of the host's own).
# net: an ip_network or None. port: int or None.
Allow = collections.namedtuple("Allow", "kind net port")

_V4 = re.compile(r"(?P<addr>[0-9.]+(?:/[0-9]+)?)(?::(?P<port>[0-9]+))?")
_V6_BRACKETED = re.compile(r"\[(?P<addr>[0-9A-Fa-f:.]+(?:/[0-9]+)?)\](?::(?P<port>[0-9]+))?")
_V6_BARE = re.compile(r"(?P<addr>[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*(?:/[0-9]+)?)")
_HOST = re.compile(r"host:(?P<port>[0-9]+)")


def _port(text, spec):
    if text is None:
        return None
    port = int(text)
    if not 1 <= port <= 65535:
        raise UsageError("--allow %s: port %s is not between 1 and 65535" % (spec, text))
    return port


def _is_v6(text):
    try:
        ipaddress.IPv6Address(text)
        return True
    except ValueError:
        return False


def parse(spec):
    """One --allow value -> Allow. Raises UsageError with the reason."""
    text = spec.strip()
    m = _HOST.fullmatch(text)
    if m:
        return Allow("host", None, _port(m.group("port"), spec))
    if text == "host":
        raise UsageError("--allow host needs a port (host:PORT): opening every port of the "
                         "host would undo the cage")
    m = _V4.fullmatch(text) or _V6_BRACKETED.fullmatch(text) or _V6_BARE.fullmatch(text)
    if m and m.re is _V6_BARE and "/" not in text:
        head, _, last = text.rpartition(":")
        if last.isdigit() and 1 <= int(last) <= 65535 and _is_v6(head):
            raise UsageError("--allow %s: is %s the address, or port %s of %s? Write "
                             "[%s]:%s for the port, or [%s] for the address"
                             % (spec, text, last, head, head, last, text))
    if not m:
        raise UsageError("--allow %s: expected ADDRESS[/PREFIX][:PORT], [IPv6]:PORT or "
                         "host:PORT (addresses only, no names)" % spec)
    try:
        net = ipaddress.ip_network(m.group("addr"), strict=True)
    except ValueError as err:
        raise UsageError("--allow %s: %s" % (spec, err))
    return Allow("net", net, _port(m.groupdict().get("port"), spec))


def parse_all(specs):
    """Every --allow value, duplicates dropped, order kept (the rules follow it)."""
    seen = []
    for spec in specs or ():
        allow = parse(spec)
        if allow not in seen:
            seen.append(allow)
    return tuple(seen)


def describe(allow):
    """The spec back as text, for messages: host:11434, 192.168.1.50:11434, [fd00::1]:53."""
    if allow.kind == "host":
        return "host:%d" % allow.port
    addr = str(allow.net.network_address) if allow.net.num_addresses == 1 else str(allow.net)
    if allow.port is None:
        return addr
    return ("[%s]:%d" if allow.net.version == 6 else "%s:%d") % (addr, allow.port)


# ---- what an allow may open: never the cage undone by a typo ---------------------------------
#
# Decided on address sets, never on spellings: 0.0.0.0/1 + 128.0.0.0/1 is judged as 0.0.0.0/0,
# ::ffff:172.30.0.1 as 172.30.0.1. Pure: the host's addresses come in as an argument
# (host_networks() reads them), so --firewall, its summary and --verify's rows share it.

WIDE_FLAG = "--unsafe-wide-allow"
MAPPED = ipaddress.ip_network("::ffff:0:0/96")
METADATA = (ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254"))
EVERYTHING = {4: ipaddress.ip_network("0.0.0.0/0"), 6: ipaddress.ip_network("::/0")}
# the most blocked space an allow list may open without WIDE_FLAG: a /24, a /64
WIDE = {4: 2 ** 8, 6: 2 ** 64}
# always the host's, whatever /proc says: its loopback
LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))
# ... and what every host receives: the limited broadcast and multicast
RECEIVED = (ipaddress.ip_network("255.255.255.255/32"), ipaddress.ip_network("224.0.0.0/4"),
            ipaddress.ip_network("ff00::/8"))
COMPATIBLE = ipaddress.ip_network("::/96")
# the forms a router on the path translates (the others are refused: write the IPv4 address)
TRANSLATED = ("NAT64", "6to4", "Teredo")


def _mapped(net):
    """::ffff:a.b.c.d/(96+n) for an IPv4 network."""
    return ipaddress.ip_network("::ffff:%s/%d" % (net.network_address, 96 + net.prefixlen))


def _host_nets(host_nets):
    nets = set(ipaddress.ip_network(str(n), strict=False) for n in host_nets) | \
        set(LOOPBACK) | set(RECEIVED)
    nets |= set(_mapped(n) for n in list(nets) if n.version == 4)
    return nets


def blocked_space(family, profile):
    """The destinations the cage drops for a family (rules.py's table), collapsed."""
    if family == 6 or profile == "local-only":
        return [EVERYTHING[family]]
    return list(ipaddress.collapse_addresses(
        ipaddress.ip_network(c) for c, _why in rules.SPECIAL_RANGES[family]))


def _overlap_size(nets, space):
    """Addresses in both collapsed, disjoint lists of networks (CIDR blocks nest or miss)."""
    total = 0
    for a in nets:
        for b in space:
            if a.overlaps(b):
                total += min(a.num_addresses, b.num_addresses)
    return total


def judged(allow):
    """(the net an allow is judged as, the words that say so): an IPv6 form that carries an
    IPv4 address (NAT64, 6to4, Teredo) is judged as that IPv4 network; others as themselves."""
    if allow.kind != "net" or allow.net.version != 6:
        return allow.net, ""
    if allow.net.overlaps(NAT64_LOCAL):
        return EVERYTHING[4], " (local-use NAT64 %s: any IPv4 address)" % NAT64_LOCAL
    found = embedded_ipv4_net(allow.net, TRANSLATED)
    if found is None:
        return allow.net, ""
    kind, v4 = found
    return v4, " (%s of %s)" % (kind, _show(v4))


def _host_addrs_in(net, host_nets):
    return sorted((h for h in host_nets if h.version == net.version and h.overlaps(net)),
                  key=lambda h: (h.network_address, h.prefixlen))


def _show(net):
    return str(net.network_address) if net.num_addresses == 1 else str(net)


def is_host_port(allow, host_nets):
    """ADDRESS:PORT where ADDRESS is one of the host's own (or carries one): that port of the
    host opens."""
    net = judged(allow)[0]   # one address: local-use NAT64 may be any, counted as the LAN
    return (allow.kind == "net" and allow.port is not None and allow.net.num_addresses == 1
            and net.num_addresses == 1 and bool(_host_addrs_in(net, _host_nets(host_nets))))


def check(allows, host_nets, profile="internet", wide=False):
    """Refuse (UsageError, one line) an allow list that would undo the cage:
      - an IPv4-mapped IPv6 spec (::ffff:a.b.c.d): write the IPv4 address;
      - one of the host's own addresses without a port: the host opens port by port
        (host:PORT, ADDRESS:PORT); a NETWORK that holds host addresses leaves the host closed
        (rules.py opens INPUT only for host:PORT and single ADDRESS:PORT entries);
      - the cloud metadata address without a port, or with one but without WIDE_FLAG;
      - without WIDE_FLAG: allows that together cover a whole blocked range, every address
        (the default route), or more blocked space than a /24 (IPv4) or a /64 (IPv6)."""
    hosts = _host_nets(host_nets)
    nets = [a for a in allows if a.kind == "net"]
    for a in nets:
        spec = describe(a)
        if a.net.num_addresses == 1 and a.net.network_address.is_unspecified:
            raise UsageError("--allow %s is no destination: a connection to %s reaches "
                             "this host's own loopback; for a port of this host write host:%s"
                             % (spec, a.net.network_address, a.port or "PORT"))
        if a.net.version == 6 and a.net.subnet_of(NAT64_LOCAL) and not wide:
            raise UsageError("--allow %s is in the local-use NAT64 prefix %s, which a "
                             "translator may send to any IPv4 address, the LAN included: "
                             "counted as the LAN, it needs %s" % (spec, NAT64_LOCAL, WIDE_FLAG))
        if a.net.version == 6 and a.net.subnet_of(MAPPED):
            v4 = ipaddress.ip_network("%s/%d" % (a.net.network_address.ipv4_mapped,
                                                 a.net.prefixlen - 96))
            raise UsageError("--allow ::ffff:%s is an IPv4-mapped IPv6 address: write the IPv4 "
                             "form (%s) instead" % (_show(v4), _show(v4)))
        found = embedded_ipv4_net(a.net, ("IPv4-compatible",)) if a.net.version == 6 else None
        if found and found[0] == "IPv4-compatible" and a.net.subnet_of(COMPATIBLE):
            raise UsageError("--allow %s is an IPv4-compatible IPv6 address (::a.b.c.d, "
                             "deprecated): write the IPv4 form (%s) instead"
                             % (spec, _show(found[1])))
        net, how = judged(a)
        inside = _host_addrs_in(net, hosts)
        if inside and a.net.num_addresses == 1 and a.port is None:
            whole = any(ipaddress.ip_network(c) == net
                        for c, _w in rules.SPECIAL_RANGES[net.version])   # 255.255.255.255
            raise UsageError("--allow %s%s is this host's own address: the host opens only "
                             "port by port (--allow host:PORT%s)" % (spec, how, "" if whole else
                             " or --allow %s:PORT" % (spec if a.net.version == 4
                                                      else "[%s]" % spec)))
        for meta in [m for n in (a.net, net) for m in METADATA if m.version == n.version
                     and m in n]:   # its own family first, then what it carries
            if a.port is None or not wide:
                raise UsageError("--allow %s covers the cloud metadata address %s (this "
                                 "machine's cloud credentials): it is opened only by an entry "
                                 "with a port, and with %s" % (spec, meta, WIDE_FLAG))
    if wide:
        return
    # each allow counts in its own family, and an embedded form in IPv4's too
    counted = [(a, a.net) for a in nets] + [(a, judged(a)[0]) for a in nets
                                            if judged(a)[0].version != a.net.version]
    for family in rules.FAMILIES:
        mine = [(a, n) for a, n in counted if n.version == family]
        union = list(ipaddress.collapse_addresses(n for _a, n in mine))
        space = blocked_space(family, profile)
        opened = [n for n in union if any(n.overlaps(b) for b in space)]
        if not opened:
            continue
        hit = [describe(a) for a, n in mine if any(n.overlaps(b) for b in space)]
        names = ", ".join(hit)
        together = " together" if len(hit) > 1 else ""
        if EVERYTHING[family] in union:
            why = "every IPv%d address (the default route)" % family
        else:
            whole = [c for c, _w in rules.SPECIAL_RANGES[family]
                     if any(ipaddress.ip_network(c).subnet_of(n) for n in union)]
            size = _overlap_size(union, space)
            if whole:
                why = "the whole blocked range %s" % whole[0]
            elif size > WIDE[family]:
                why = ("%d blocked IPv4 addresses, more than a /24" % size if family == 4
                       else "more blocked IPv6 space than a /64")
            else:
                continue
        raise UsageError("--allow %s%s would open %s; to open it anyway, add %s (the LAN is "
                         "then NOT fully blocked)" % (names, together, why, WIDE_FLAG))


def _lan_space(family):
    return [ipaddress.ip_network(c) for c, _why in rules.SPECIAL_RANGES[family]]


def summary(allows, host_nets, profile="internet"):
    """What the allow list opens, for the lines after --firewall and --verify's rows:
    [(warning, spec, text)]; warning is True where the LAN or this host is reachable."""
    hosts = _host_nets(host_nets)
    out = []
    for a in allows:
        spec = describe(a)
        ports = "every port" if a.port is None else "TCP and UDP port %d" % a.port
        if a.kind == "host":
            out.append((True, spec, "this host is reachable on port %d (TCP and UDP, at every "
                                    "address of this host): --allow %s" % (a.port, spec)))
            continue
        net, how = judged(a)
        if is_host_port(a, host_nets):
            out.append((True, spec, "this host is reachable on port %d (TCP and UDP) at %s%s: "
                                    "--allow %s" % (a.port, _show(a.net), how, spec)))
            continue
        lan = _lan_space(net.version)
        if any(net.overlaps(b) for b in lan):
            size = _overlap_size([net], list(ipaddress.collapse_addresses(lan)))
            many = ", %d LAN addresses" % size if net.version == 4 and size > 1 else ""
            text = "the LAN is NOT fully blocked: the container reaches %s%s (%s%s)" % (
                _show(a.net), how, ports, many)
            out.append((True, spec, text + ": --allow " + spec))
        else:
            blocked = any(a.net.overlaps(b) for b in blocked_space(a.net.version, profile))
            out.append((False, spec, "open: %s%s (%s)%s: --allow %s" % (
                _show(a.net), how, ports, ", otherwise blocked" if blocked else "", spec)))
        inside = _host_addrs_in(net, hosts)
        if inside:
            out.append((False, spec, "this host's own %s in %s stays closed (host:PORT opens "
                                     "a port of it)" % (", ".join(_show(h) for h in inside[:3]),
                                                        spec)))
    return out


# ---- the host's own addresses (read, not pure) -------------------------------------------

def host_networks(gateway=None, proc="/proc", subnet=None):
    """This host's own addresses as networks: every local address of this network namespace
    (/proc/net/fib_trie: `host LOCAL` entries, 127.0.0.0/8 included, and the `link BROADCAST`
    ones; /proc/net/if_inet6), the bridge's gateway address and the broadcast of its subnet
    (the bridge may not exist yet) and loopback. An unreadable file only makes messages less
    precise: whatever it says, rules.py opens the host's INPUT to host:PORT and single
    ADDRESS:PORT entries only."""
    nets = set(LOOPBACK)
    if gateway is not None:
        nets.add(ipaddress.ip_network(str(gateway)))
    if subnet is not None:
        nets.add(ipaddress.ip_network(ipaddress.ip_network(str(subnet)).broadcast_address))
    try:
        with open(os.path.join(proc, "net", "fib_trie")) as f:
            leaf = None
            for line in f:
                words = line.split()
                if len(words) == 2 and words[0] in ("|--", "+--") and "/" not in words[1]:
                    leaf = words[1]
                elif leaf and len(words) == 3 and words[0].startswith("/") and \
                        words[1:] in (["host", "LOCAL"], ["link", "BROADCAST"]):
                    nets.add(ipaddress.ip_network("%s%s" % (leaf, words[0]), strict=False))
    except (OSError, ValueError):
        pass
    try:
        with open(os.path.join(proc, "net", "if_inet6")) as f:
            for line in f:
                raw = line.split()[0] if line.split() else ""
                if len(raw) == 32:
                    text = ":".join(raw[i:i + 4] for i in range(0, 32, 4))
                    nets.add(ipaddress.ip_network(text))
    except (OSError, ValueError):
        pass
    return frozenset(nets)
