"""What the proxy lets through: names from the allow list, to addresses outside the blocked ranges.

Names: an entry is an exact name, `*.suffix` (subdomains of suffix, never suffix itself), or an
IP literal; an entry may carry its own port (`NAME:PORT`, `[IPv6]:PORT`), otherwise the
configured ports apply. An IP literal is reached only when listed: listing it is the operator's
explicit choice, so it is not judged against the ranges (an Ollama on the LAN, for one), and
only on its listed port: `127.0.0.1:11434` opens that one port of the host's loopback, nothing
else of it. `host.docker.internal` (and `localhost`), when listed exactly (a wildcard such as
`*.docker.internal` never opens it), is such a literal too: the host itself, on its loopback 127.0.0.1 (the proxy runs on the host; the name is what a
container calls the host, and the host's resolver does not know it). So an Ollama that listens
only on the host's 127.0.0.1 is reachable under `local-only` without listening on any network.

Addresses a name resolves to: the firewall's own table of blocked ranges (not a copy), plus
loopback, link-local, multicast, reserved and unspecified, and every IPv6 form that carries an
IPv4 address (IPv4-mapped and -compatible, NAT64, 6to4, Teredo, ISATAP), judged by the IPv4
address inside: 64:ff9b::c0a8:0101 is 192.168.1.1.
"""

import ipaddress
import re
import time

from ..firewall import NAT64_LOCAL, embedded_ipv4 as carried_ipv4, rules

_RANGES = {family: [ipaddress.ip_network(cidr) for cidr, _why in ranges]
           for family, ranges in rules.SPECIAL_RANGES.items()}
_LABEL = re.compile(r"(?!-)[a-z0-9_-]{1,63}(?<!-)")
HOST_LOOPBACK = dict.fromkeys(("host.docker.internal", "localhost"),
                              ipaddress.ip_address("127.0.0.1"))


def embedded_ipv4(address):
    """The IPv4 addresses an IPv6 address carries: the firewall's forms (NAT64, 6to4, Teredo's
    client, mapped, compatible: firewall/embedded.py), plus two that only a proxy which
    connects meets: the Teredo server and ISATAP. [] when it carries none, or for IPv4."""
    if address.version != 6:
        return []
    found = [a for a in (carried_ipv4(address),) if a]
    if address.teredo:
        found.append(address.teredo[0])
    if (int(address) >> 32) & 0xFDFFFFFF == 0x00005EFE:   # ISATAP interface id ::0[2]00:5efe:V4
        found.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    return found


def blocked(address):
    """Why the proxy must not connect to address (an ip_address), or None."""
    inner = embedded_ipv4(address)
    if inner:   # judged by the IPv4 inside alone: ::/8 would call 64:ff9b::/96 reserved
        why = [blocked(a) for a in inner if blocked(a)]
        return "%s (inside %s)" % (why[0], address) if why else None
    if address in NAT64_LOCAL:
        return "local-use NAT64 %s" % address
    for net in _RANGES[address.version]:
        if address in net:
            return "blocked range %s" % net
    for kind in ("loopback", "link_local", "multicast", "reserved", "unspecified", "site_local"):
        if getattr(address, "is_" + kind, False):
            return "%s address %s" % (kind.replace("_", "-"), address)
    return None


def parse_host(text):
    """A host as a client or the config writes it -> (canonical text, ip_address or None).
    Names are lowercased without a trailing dot; IPv6 may be bracketed. ValueError if neither
    a valid name nor an address."""
    host = text[1:-1] if text.startswith("[") and text.endswith("]") else text
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    if address is not None:
        if getattr(address, "scope_id", None):   # fe80::1%eth0: Python 3.9+ takes any scope
            raise ValueError("not an address without a %%scope: %r" % text)
        return str(address), address
    if host != text:
        raise ValueError("not an IPv6 address: %r" % text)
    name = host.lower()
    name = name[:-1] if name.endswith(".") else name
    labels = name.split(".")
    if len(name) > 253 or not all(_LABEL.fullmatch(l) for l in labels) or labels[-1].isdigit():
        raise ValueError("not a host name: %r" % text)
    return name, None


def split_host_port(text):
    """"host:port" or "[v6]:port" -> (host, port int or None); a bare IPv6 has no port."""
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise ValueError("unclosed [ in %r" % text)
        rest = text[end + 1:]
        if rest and not rest.startswith(":"):
            raise ValueError("junk after ] in %r" % text)
        return text[:end + 1], _port(rest[1:]) if rest else None
    if text.count(":") == 1:
        host, port = text.split(":")
        return host, _port(port)
    return text, None


def _port(text):
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise ValueError("bad port %r" % text)
    return int(text)


class Policy:
    """allow: config entries; ports: the ports for entries that name none; expires: {entry:
    unix time} of temporary entries, which stop matching at that time."""

    def __init__(self, allow, ports, expires=None):
        self.ports = frozenset(ports)
        self.exact, self.suffixes = {}, []
        for entry in allow:
            host, port = split_host_port(entry)
            ports = frozenset([port]) if port else self.ports
            until = (expires or {}).get(entry)
            if host.startswith("*."):
                suffix, address = parse_host(host[2:])
                if address is not None:
                    raise ValueError("*. goes with a name, not an address: %r" % entry)
                self.suffixes.append(("." + suffix, ports, until))
            else:
                name, _ = parse_host(host)
                self.exact.setdefault(name, []).append((ports, until))

    def allowed_ports(self, name, now):
        """(the ports name may be reached on at now, whether a temporary entry for it ended)."""
        # the host's loopback names open only through their own exact entries, never *.suffix
        found = self.exact.get(name, []) + [(p, u) for s, p, u in self.suffixes
                                            if name.endswith(s) and name not in HOST_LOOPBACK]
        ports, ended = frozenset(), False
        for more, until in found:
            if until is not None and until <= now:
                ended = True
            else:
                ports |= more
        return ports, ended

    def check_target(self, host, port):
        """(canonical host, ip_address or None, refusal reason or None) for a request's host."""
        name, address = parse_host(host)
        ports, ended = self.allowed_ports(name, time.time())
        if not ports:
            if ended:
                return name, address, "temporary entry expired"
            if address is not None:
                return name, address, "IP address not on the allow list"
            return name, address, "name not on the allow list"
        if port not in ports:
            return name, address, "port %d not allowed" % port
        return name, address or HOST_LOOPBACK.get(name), None
