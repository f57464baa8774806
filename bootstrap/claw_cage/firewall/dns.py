"""--firewall's DNS warnings: the container's resolvers that the cage would block.

docker-compose.yml pins the gateway's resolvers (CLAW_DNS, CLAW_DNS_2 in .env, else public
ones), asked from inside the container; without the pin (an older compose file) the container
asks this host's resolvers. Either way a resolver on the LAN is out of the container's reach:
say so, with the --allow that opens it (docs/firewall.md#dns).
"""

import ipaddress

from .. import composefile
from . import rules

RESOLV_CONFS = ("/etc/resolv.conf", "/run/systemd/resolve/resolv.conf")


def blocked_resolvers(config, paths=RESOLV_CONFS, pinned=()):
    """The container's DNS servers that the cage blocks. Servers set with compose `dns:` are
    asked from inside the container (through FORWARD) on every Docker version: a CLAW_DNS on
    the LAN (a home router) is then out of the container's reach. Without a pin (an older
    docker-compose.yml) the container asks this host's resolvers, the same way before Docker 28."""
    found = []
    sources = [("pinned", "\n".join("nameserver " + a for a in pinned))] if pinned else []
    for path in ([] if pinned else paths):
        try:
            with open(path) as f:
                sources.append((path, f.read()))
        except OSError:
            continue
    for _source, text in sources:
        for line in text.splitlines():
            fields = line.split()
            if len(fields) < 2 or fields[0] != "nameserver":
                continue
            try:
                addr = ipaddress.ip_address(fields[1].split("%")[0])
            except ValueError:
                continue
            # IPv6 servers are left out: Docker drops them for a network without IPv6
            if (addr.version == config.subnet.version and not addr.is_loopback
                    and addr not in found
                    and rules.forward_verdict(config, addr, 53) == "DROP"):
                found.append(addr)
    return found


def warn(ui, config, directory):
    """One warning per blocked resolver, saying where it comes from and what fixes it."""
    pinned = composefile.read_pinned_dns(directory)
    for addr in blocked_resolvers(config, pinned=pinned):
        spec = "%s:53" % addr
        if pinned:
            ui.warn("CLAW_DNS in .env points at %s, a resolver in a blocked range: the "
                    "container's DNS queries to it are dropped; run again with --allow %s, or "
                    "leave CLAW_DNS unset for the public default" % (addr, spec))
        else:
            ui.warn("this host's DNS server %s is in a blocked range and docker-compose.yml "
                    "pins no resolvers: the container's DNS queries to it are dropped; re-run "
                    "the installer (public resolvers), or run again with --allow %s"
                    % (addr, spec))
