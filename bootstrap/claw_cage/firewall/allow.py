"""--allow SPEC: a destination the container may reach despite the cage.

    ADDRESS[/PREFIX][:PORT]     beyond the host, IPv4:   192.168.1.50:11434   10.0.5.0/24
    [ADDRESS[/PREFIX]]:PORT     beyond the host, IPv6:   [fd00::50]:11434     (bare fd00::/64 too)
    host:PORT                   a service on the host itself (Ollama on the host: host:11434)

A PORT opens TCP and UDP on that port; no PORT opens every port of the address. Names are
refused: the rules match addresses, and a name can point somewhere else tomorrow.
"""

import collections
import ipaddress
import re

from ..errors import UsageError

# kind: "host" (the host itself: INPUT) or "net" (a destination: FORWARD, and INPUT in case the
# address is one of the host's own). net: an ip_network or None. port: int or None.
Allow = collections.namedtuple("Allow", "kind net port")

_V4 = re.compile(r"^(?P<addr>[0-9.]+(?:/[0-9]+)?)(?::(?P<port>[0-9]+))?$")
_V6_BRACKETED = re.compile(r"^\[(?P<addr>[0-9A-Fa-f:.]+(?:/[0-9]+)?)\](?::(?P<port>[0-9]+))?$")
_V6_BARE = re.compile(r"^(?P<addr>[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*(?:/[0-9]+)?)$")
_HOST = re.compile(r"^host:(?P<port>[0-9]+)$")


def _port(text, spec):
    if text is None:
        return None
    port = int(text)
    if not 1 <= port <= 65535:
        raise UsageError("--allow %s: port %s is not between 1 and 65535" % (spec, text))
    return port


def parse(spec):
    """One --allow value -> Allow. Raises UsageError with the reason."""
    text = spec.strip()
    m = _HOST.match(text)
    if m:
        return Allow("host", None, _port(m.group("port"), spec))
    if text == "host":
        raise UsageError("--allow host needs a port (host:PORT): opening every port of the "
                         "host would undo the cage")
    m = _V4.match(text) or _V6_BRACKETED.match(text) or _V6_BARE.match(text)
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
