"""Read the claw-cage network (bridge interface name and subnet) out of docker-compose.yml.

There is no YAML parser in the standard library, and we only need two scalars from a file we
ship ourselves, so this reads them line by line and refuses anything ambiguous rather than
guessing. The firewall must match the bridge Docker will really create: a wrong answer here
would leave the cage open, so every doubt is an error.
"""

import ipaddress
import re

from .errors import ClawCageError

BRIDGE_KEY = "com.docker.network.bridge.name"
# Linux interface names: at most 15 bytes; we accept the conservative character set.
BRIDGE_RE = re.compile(r"^[A-Za-z0-9_.-]{1,15}$")


def _values(text, key):
    pattern = re.compile(r"^\s*-?\s*[\"']?%s[\"']?\s*[:=]\s*(.*?)\s*$" % re.escape(key))
    found = []
    for line in text.splitlines():
        if line.lstrip().startswith("#"):
            continue
        m = pattern.match(line)
        if m:
            value = m.group(1).split(" #", 1)[0].strip().strip("\"'")
            found.append(value)
    return found


def read_network(text, where="docker-compose.yml"):
    """Return (bridge_name, ipaddress.IPv4Network) declared in the compose text."""
    bridges = set(_values(text, BRIDGE_KEY))
    subnets = set(_values(text, "subnet"))
    if len(bridges) != 1:
        raise ClawCageError("%s: expected exactly one %s, found %d"
                            % (where, BRIDGE_KEY, len(bridges)))
    if len(subnets) != 1:
        raise ClawCageError("%s: expected exactly one IPv4 subnet, found %d"
                            % (where, len(subnets)))
    bridge, subnet = bridges.pop(), subnets.pop()
    if not BRIDGE_RE.match(bridge):
        # the value itself is never shown: this file may be read as root (issue 17)
        raise ClawCageError("%s: the value of %s is not a valid interface name (1-15 of "
                            "A-Z a-z 0-9 _ . -)" % (where, BRIDGE_KEY))
    try:
        net = ipaddress.IPv4Network(subnet, strict=True)
    except ValueError:
        raise ClawCageError("%s: the value of subnet is not an IPv4 network in CIDR form "
                            "(a.b.c.d/n, host bits zero)" % where)
    return bridge, net
