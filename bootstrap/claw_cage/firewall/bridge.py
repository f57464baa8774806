"""The bridge the cage is put on: it must be a Linux bridge, or not exist yet.

The name comes from docker-compose.yml in the user's install directory. The cage drops
everything that enters from that interface to this host and the LAN: put on `lo`, on the
interface of the default route (the uplink) or on any other existing non-bridge interface,
it would cage the host's own loopback or LAN traffic, SSH included. check() refuses those
with one line; it reads /sys/class/net and /proc/net, and changes nothing.
"""

import os

from ..errors import TargetError


def uplinks(proc="/proc"):
    """Interfaces that carry a default route (IPv4 /proc/net/route, IPv6 /proc/net/ipv6_route)."""
    found = set()
    try:
        with open(os.path.join(proc, "net", "route")) as f:
            for line in f.readlines()[1:]:
                w = line.split()
                if len(w) >= 8 and w[1] == "00000000" and w[7] == "00000000":
                    found.add(w[0])
    except OSError:
        pass
    try:
        with open(os.path.join(proc, "net", "ipv6_route")) as f:
            for line in f:
                w = line.split()
                # destination ::/0 through a real interface (lo holds the unreachable routes)
                if len(w) == 10 and w[0] == "0" * 32 and w[1] == "00" and w[9] != "lo":
                    found.add(w[9])
    except OSError:
        pass
    return found


def check(name, sysfs="/sys/class/net", proc="/proc"):
    """TargetError unless `name` is an existing Linux bridge or no interface at all yet."""
    if name == "lo":
        why = "this host's loopback interface: caging it would cut the host's own traffic"
    elif name in uplinks(proc):
        why = ("the interface of this host's default route: caging it would cut the host's LAN "
               "traffic, SSH included")
    elif os.path.lexists(os.path.join(sysfs, name)) and \
            not os.path.isdir(os.path.join(sysfs, name, "bridge")):
        why = ("an existing interface that is not a Linux bridge: caging it would cut traffic "
               "that is not the container's")
    else:
        return
    raise TargetError("docker-compose.yml names bridge %s, %s; give the network a bridge name "
                      "of its own (claw-cage0)" % (name, why))
