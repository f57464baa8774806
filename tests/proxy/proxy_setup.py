"""The proxy lab (tests/lab/proxylab.py) for this directory: one lab and one proxy per module
(import the fixtures `lab` and `proxy` from here).

The proxy is the BUILT program (`claw-cage.pyz --proxy --config FILE`) running in the lab's
proxy namespace, where /etc/hosts says what every name below resolves to.
"""

import ipaddress
import os
import shutil

import pytest

from conftest import require_root
from lab import proxylab
from lab.proxylab import LAN, RANGE_ADDRS, WAN, WAN2, WAN6

BLACKHOLE = ("203.0.113.98", "203.0.113.99")   # routed to the wan ns, which drops them silently


def _teredo(server, client):
    """The Teredo address (2001::/32) of a client behind server; the client's IPv4 address and
    port are stored inverted (RFC 4380)."""
    s, c = int(ipaddress.ip_address(server)), int(ipaddress.ip_address(client))
    return str(ipaddress.IPv6Address((0x20010000 << 96) | (s << 64) | (0xFFFF << 32)
                                     | (c ^ 0xFFFFFFFF)))


def _v4hex(a):
    return "%x:%x" % divmod(int(ipaddress.ip_address(a)), 1 << 16)


# names resolving to an IPv6 form that carries LAN (192.168.1.10): each must be refused
EMBEDDED = {
    "mapped.embed.test": "::ffff:" + LAN,
    "compat.embed.test": "::" + _v4hex(LAN),
    "nat64.embed.test": "64:ff9b::" + _v4hex(LAN),
    "sixtofour.embed.test": "2002:%s::1" % _v4hex(LAN),
    "teredo.embed.test": _teredo(WAN, LAN),
    "isatap.embed.test": "2001:db8::5efe:" + _v4hex(LAN),
}
RANGE_NAMES = {cidr: "r%d.range.test" % i for i, cidr in enumerate(sorted(RANGE_ADDRS))}

HOSTS = [(WAN, "allowed.test"), (WAN, "a.wild.test"), (WAN, "wild.test"),
         (WAN, "offlist.test"), (LAN, "rebind.test"), (WAN, "mixed.test"), (LAN, "mixed.test"),
         (WAN6, "v6.test"), ("::ffff:" + WAN, "mapped-public.embed.test"),
         (BLACKHOLE[0], "slow.test"), (BLACKHOLE[1], "slow.test")]
HOSTS += [(a, n) for n, a in EMBEDDED.items()]
HOSTS += [(RANGE_ADDRS[c], n) for c, n in RANGE_NAMES.items()]

ALLOW = ["allowed.test", "allowed.test:9", "*.wild.test", "rebind.test", "mixed.test", "v6.test", "*.range.test",
         "*.embed.test", WAN2, "missing.test"]
CONFIG = {"allow": ALLOW, "ports": [443, 80], "header_timeout": 5, "idle_timeout": 30}


def _require():
    require_root("the proxy's namespace lab")
    for tool in ("ip",):
        if not shutil.which(tool):
            pytest.fail("the proxy lab needs %s" % tool)
    if not os.path.isdir("/var/run/netns") and not os.access("/var/run", os.W_OK):
        pytest.fail("the proxy lab needs /var/run/netns")


@pytest.fixture(scope="module")
def lab():
    _require()
    with proxylab.ProxyLab(HOSTS) as lab:
        yield lab


@pytest.fixture(scope="module")
def proxy(lab, pyz):
    cfg = dict(CONFIG, listen=["unix:%s/proxy.sock" % lab.tmp, "127.0.0.1:3128"])
    proxy = lab.start_proxy(pyz, cfg)
    yield proxy
    proxy.stop()
