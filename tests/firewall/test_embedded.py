"""The IPv4 address an IPv6 destination carries (firewall/embedded.py), the helper the allow
policy and the egress proxy judge NAT64, 6to4, Teredo, IPv4-mapped and IPv4-compatible
destinations by. Vectors from the RFCs (Teredo: RFC 4380's example client 192.0.2.45)."""

import ipaddress
import os
import sys

import pytest

from conftest import ROOT

sys.path.insert(0, os.path.join(ROOT, "bootstrap"))
from claw_cage.firewall import embedded_ipv4, embedded_ipv4_net  # noqa: E402

ONE = [
    ("64:ff9b::c0a8:101", "192.168.1.1"),          # NAT64, RFC 6052
    ("64:ff9b::192.168.1.1", "192.168.1.1"),
    ("2002:c0a8:101::1", "192.168.1.1"),           # 6to4, RFC 3056
    ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "192.0.2.45"),   # Teredo, RFC 4380
    ("::ffff:10.0.0.1", "10.0.0.1"),               # IPv4-mapped
    ("::172.30.0.1", "172.30.0.1"),                # IPv4-compatible
    ("::1", None), ("::", None),                   # loopback, unspecified: IPv6 themselves
    ("2001:db8::1", None), ("fd00::1", None), ("2606:4700::1111", None),
    ("1.2.3.4", None),
]


@pytest.mark.parametrize("addr, want", ONE)
def test_embedded_ipv4(addr, want):
    got = embedded_ipv4(addr)
    assert got == (None if want is None else ipaddress.IPv4Address(want))
    assert embedded_ipv4(ipaddress.ip_address(addr)) == got


NETS = [
    ("64:ff9b::/96", "NAT64", "0.0.0.0/0"),
    ("64:ff9b::/64", "NAT64", "0.0.0.0/0"),        # holds the whole prefix
    ("64:ff9b::c0a8:0/112", "NAT64", "192.168.0.0/16"),
    ("2002:c0a8:101::/64", "6to4", "192.168.1.1/32"),
    ("2002:c0a8::/32", "6to4", "192.168.0.0/16"),
    ("2002::/16", "6to4", "0.0.0.0/0"),
    ("2001::/32", "Teredo", "0.0.0.0/0"),
    ("::a00:0/104", "IPv4-compatible", "10.0.0.0/8"),
    ("::/0", None, "0.0.0.0/0"),                   # holds them all
]


@pytest.mark.parametrize("net, kind, want", NETS)
def test_embedded_ipv4_net(net, kind, want):
    got_kind, got = embedded_ipv4_net(net)
    assert got == ipaddress.IPv4Network(want)
    assert kind is None or got_kind == kind


def test_plain_ipv6_networks_embed_nothing():
    for net in ("2001:db8::/32", "fd00::/8", "fe80::/10", "10.0.0.0/8", "::1/128"):
        assert embedded_ipv4_net(net) is None, net
