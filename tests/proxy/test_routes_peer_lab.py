"""The internet profile's key routes listen on the claw-cage bridge's own address
(172.30.0.1:18790), and Linux is a weak host: a LAN neighbour that adds a route for the bridge's
subnet via the host's LAN address reaches that address through the LAN interface. The firewall's
row for the routes only judges packets from the bridge, so before issue 29's fix that neighbour
spent the user's keys. Two layers stop it, each alone:
  1. the proxy serves a TCP routes listener to peers inside routes_clients (the claw-cage
     network's subnet) alone: any other peer is closed unanswered and logged in one line;
  2. the firewall's mangle INPUT guard (rules.ROUTES_CHAIN) drops the routes' address and port
     arriving on any interface but the bridge (and lo).

By packets: the BUILT proxy in the proxy lab's namespace P (tests/proxy/test_routes_lab.py's
stand-in provider, test CA and keys), listening on 172.30.0.1:18790 of a bridge named like
Docker's; a "container" namespace on that bridge (172.30.0.2, the control: always served), and
the lab's LAN namespace (192.168.1.10) with a route for 172.30.0.0/24 via P's LAN address
192.168.1.1. P's rp_filter is off (the loosest host). The firewall is the rule table as
--firewall renders it (rules.render_restore), applied in P with iptables-restore.

  no layer (routes_clients 0.0.0.0/0, no firewall): the LAN reaches the stand-in - the hole,
                                                    shown, so the lab can fail
  layer 1 alone, layer 2 alone, both:               the LAN does not; the container does
  a LAN host forging a source inside the subnet:    the handshake never completes (the
                                                    SYN-ACK goes to the bridge)
"""

import socket

import pytest

from lab import proxylab
from test_routes_lab import (  # noqa: F401 (fixtures)
    KEY, PLACEHOLDER, Reader, certs, header, lab, last, standin, start)

from claw_cage.firewall import readback, rules  # noqa: E402 (proxylab put bootstrap/ on the path)

BRIDGE, BRIDGE_ADDR, SUBNET, PORT = "claw-cage0", "172.30.0.1", "172.30.0.0/24", 18790
CTR_ADDR, LAN_ADDR, HOST_LAN = "172.30.0.2", "192.168.1.10", "192.168.1.1"
FORGED = "172.30.0.77"      # a container address nobody on the bridge holds


@pytest.fixture(scope="module")
def cage(lab):
    """The bridge in P, a container namespace on it, and the LAN's route for the subnet."""
    ctr = lab.tag + "-c"
    lab.add(ctr)
    lab.sh(lab.p, """
        ip link add %(br)s type bridge
        ip addr add %(gw)s/24 dev %(br)s
        ip link set %(br)s up
        ip link add vctr type veth peer name eth0 netns %(ctr)s
        ip link set vctr master %(br)s up
        sysctl -qw net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0
        for i in /proc/sys/net/ipv4/conf/*/rp_filter; do echo 0 > $i; done
    """ % {"br": BRIDGE, "gw": BRIDGE_ADDR, "ctr": ctr})
    lab.sh(ctr, "ip link set lo up && ip addr add %s/24 dev eth0 && ip link set eth0 up"
           % CTR_ADDR)
    lab.sh(lab.l, "ip route add %s via %s" % (SUBNET, HOST_LAN))
    return ctr


def _firewall(lab, on):
    """The rule table's restore input for P (IPv4), or every claw-cage chain removed."""
    saved = readback.parse_tables(lab.exec(lab.p, ["iptables-save"]).stdout)
    text = (rules.render_restore(rules.default_config(), 4, saved) if on
            else rules.render_removal(saved))
    if text:
        lab.exec(lab.p, ["iptables-restore", "-w", "-n"], input=text)


def _ask(lab, ns, source=None, timeout=5):
    """(status, body) of a route request from ns to 172.30.0.1:18790, or why there is none:
    "no connection" (the handshake did not complete) or "closed" (no answer)."""
    s = lab.socket_in(ns)
    s.settimeout(timeout)
    try:
        if source:
            s.bind((source, 0))
        try:
            s.connect((BRIDGE_ADDR, PORT))
        except OSError:
            return "no connection"
        try:
            s.sendall(("GET /openai/chat/completions HTTP/1.1\r\nHost: %s:%d\r\n"
                       "Authorization: Bearer %s\r\n\r\n" % (BRIDGE_ADDR, PORT, PLACEHOLDER))
                      .encode())
            status, _h, body = Reader(s).response()
        except (OSError, EOFError):
            return "closed"
        return status, body
    finally:
        s.close()


def _case(lab, pyz, certs, standin, ctr, name, clients, firewall, source=None):
    """Who is served with this proxy config and firewall: {"container": ..., "lan": ...},
    and how many requests reached the stand-in from the LAN's probe."""
    _firewall(lab, firewall)
    proxy = start(lab, pyz, certs, name, routes_listen=["%s:%d" % (BRIDGE_ADDR, PORT)],
                  routes_clients=clients)
    try:
        before = len(standin.seen())
        lan = _ask(lab, lab.l, source, 3 if source else 5)
        reached = len(standin.seen()) - before
        ctr_answer = _ask(lab, ctr)
        if ctr_answer != "no connection" and ctr_answer != "closed":
            got = last(standin)
            assert header(got, "authorization") == ["Bearer " + KEY]
        return {"container": ctr_answer, "lan": lan, "reached from lan": reached,
                "log": proxy.log_text()}
    finally:
        proxy.stop()
        _firewall(lab, False)


SERVED = (200, b'{"ok": true}')


def test_without_either_layer_the_lan_spends_the_keys(lab, pyz, certs, standin, cage):
    """The hole, reproduced: with the proxy admitting every peer and no firewall, a LAN
    neighbour's request through 172.30.0.1 reaches the provider with the real key. (The
    proxy before the fix admitted every peer: this is what it did.)"""
    r = _case(lab, pyz, certs, standin, cage, "open", ["0.0.0.0/0"], False)
    assert r["container"] == SERVED, r
    assert r["lan"] == SERVED and r["reached from lan"] == 1, r


@pytest.mark.parametrize("clients, firewall", [
    ([SUBNET], False),          # layer 1 alone: the proxy
    (["0.0.0.0/0"], True),      # layer 2 alone: the firewall
    ([SUBNET], True),           # both, as --firewall installs them
], ids=["proxy-only", "firewall-only", "both"])
def test_each_layer_alone_keeps_the_lan_out(lab, pyz, certs, standin, cage, clients, firewall):
    r = _case(lab, pyz, certs, standin, cage, "l%d%d" % (len(clients[0]), firewall),
              clients, firewall)
    assert r["container"] == SERVED, r               # the control: the cage is served
    assert r["lan"] in ("no connection", "closed"), r
    assert r["reached from lan"] == 0, r
    refusals = [l for l in r["log"].splitlines() if "refused-peer" in l]
    if firewall:        # dropped before the proxy: it never saw the LAN's connection
        assert r["lan"] == "no connection" and refusals == [], r
    else:               # the proxy closed it, unanswered, and says so in one line
        assert r["lan"] == "closed", r
        assert len(refusals) == 1 and LAN_ADDR in refusals[0], r["log"]
        assert "%s:%d" % (BRIDGE_ADDR, PORT) in refusals[0]
        assert KEY not in r["log"] and PLACEHOLDER not in r["log"]


def test_a_forged_source_inside_the_subnet_never_completes_the_handshake(
        lab, pyz, certs, standin, cage):
    """The proxy judges the peer's source address; a LAN host that forges one inside the
    subnet gets no further: P answers its SYN towards the forged address, on the bridge, where
    nobody holds it, so the connection never opens and no request is read (proxy layer alone,
    no firewall, rp_filter off)."""
    lab.sh(lab.l, "ip addr add %s/32 dev lo" % FORGED)
    try:
        r = _case(lab, pyz, certs, standin, cage, "forged", [SUBNET], False, source=FORGED)
        assert r["lan"] == "no connection" and r["reached from lan"] == 0, r
        assert "refused-peer" not in r["log"], r["log"]    # never even accepted
        assert r["container"] == SERVED, r
    finally:
        lab.sh(lab.l, "ip addr del %s/32 dev lo" % FORGED)
