"""IPv6 addresses that carry an IPv4 address inside them, judged by the address they carry.

A host or network on the path may turn such a destination into its IPv4 address: a NAT64
gateway (64:ff9b::/96, RFC 6052), a 6to4 relay (2002::/16, RFC 3056), a Teredo relay
(2001::/32, RFC 4380: the client's address, bit-inverted, in the last 32 bits), the kernel's
own dual stack (IPv4-mapped ::ffff:0:0/96) or an old tunnel (IPv4-compatible ::/96, RFC 4291,
deprecated). 64:ff9b::c0a8:101 is 192.168.1.1 to whoever translates it, so the allow policy
(allow.py) and the egress proxy judge it as 192.168.1.1.

  embedded_ipv4(addr) -> IPv4Address or None         one address
  embedded_ipv4_net(net) -> (kind, IPv4Network) or None   the IPv4 addresses an IPv6 network
                         can stand for (0.0.0.0/0 when it holds a whole embedding prefix)
:: and ::1 are not IPv4-compatible addresses (unspecified, loopback): None.
"""

import ipaddress

# (kind, prefix, first bit of the IPv4 address, inverted): the IPv4 address sits in bits
# [first, first + 32) of the IPv6 address.
FORMS = (
    ("IPv4-mapped", ipaddress.IPv6Network("::ffff:0:0/96"), 96, False),
    ("NAT64", ipaddress.IPv6Network("64:ff9b::/96"), 96, False),
    ("6to4", ipaddress.IPv6Network("2002::/16"), 16, False),
    ("Teredo", ipaddress.IPv6Network("2001::/32"), 96, True),
    ("IPv4-compatible", ipaddress.IPv6Network("::/96"), 96, False),
)
# Local-use NAT64 (RFC 8215): the operator chooses where the IPv4 address sits (after a /48
# up to a /96), so no one place says which IPv4 address it carries: it may be any.
NAT64_LOCAL = ipaddress.IPv6Network("64:ff9b:1::/48")
_NOT_COMPATIBLE = ipaddress.IPv6Network("::/127")   # :: and ::1
_ALL = ipaddress.IPv4Network("0.0.0.0/0")
_MASK = (1 << 32) - 1


def _form(net, kinds=None):
    for kind, prefix, first, inverted in FORMS:
        if kinds is not None and kind not in kinds:
            continue
        if net.subnet_of(prefix) or prefix.subnet_of(net):
            if kind == "IPv4-compatible" and net.subnet_of(_NOT_COMPATIBLE):
                return None
            return kind, prefix, first, inverted
    return None


def embedded_ipv4_net(net, kinds=None):
    """(kind, IPv4Network) an IPv6 network may be translated to, or None (no embedding form,
    or an IPv4 network). A network that holds a whole embedding prefix (64:ff9b::/64, ::/0's
    share) stands for every IPv4 address: 0.0.0.0/0. kinds: only these forms (FORMS' names)."""
    net = ipaddress.ip_network(net, strict=False)
    if net.version != 6:
        return None
    found = _form(net, kinds)
    if found is None:
        return None
    kind, prefix, first, inverted = found
    if net.prefixlen <= prefix.prefixlen:
        return kind, _ALL
    fixed = min(32, max(0, net.prefixlen - first))   # leading bits of the IPv4 that are fixed
    bits = (int(net.network_address) >> (96 - first)) & _MASK
    if inverted:
        bits ^= _MASK
    mask = (_MASK << (32 - fixed)) & _MASK
    return kind, ipaddress.IPv4Network((bits & mask, fixed))


def embedded_ipv4(addr):
    """The IPv4 address an IPv6 address carries (NAT64, 6to4, Teredo's client, IPv4-mapped,
    IPv4-compatible), or None."""
    addr = ipaddress.ip_address(addr)
    if addr.version != 6:
        return None
    found = embedded_ipv4_net(ipaddress.IPv6Network(addr))
    return None if found is None else found[1].network_address
