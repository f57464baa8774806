"""What an --allow list may open (issue 17), as pure functions: firewall.allow.check() and
summary() on address sets, the INPUT rendering that opens the host only port by port, the
host's own addresses read from /proc, the bridge check, and --verify's warn rows. The packets
that prove the same are in test_allow_lab.py."""

import ipaddress
import os
import sys

import pytest

from conftest import ROOT

sys.path.insert(0, os.path.join(ROOT, "bootstrap"))
from claw_cage.errors import TargetError, UsageError  # noqa: E402
from claw_cage.firewall import allow, bridge, rules  # noqa: E402
from claw_cage.verify import firewall_rows  # noqa: E402

# a host on a home LAN: bridge gateway, LAN address, loopback
HOST = [ipaddress.ip_network(n) for n in ("172.30.0.1/32", "192.168.1.10/32", "127.0.0.0/8",
                                          "::1/128", "fd00:1::10/128")]


def _check(*specs, wide=False, profile="internet"):
    allow.check(allow.parse_all(specs), HOST, profile, wide)


@pytest.mark.parametrize("specs,words", [
    (["0.0.0.0/0"], "metadata"),
    (["0.0.0.0/1", "128.0.0.0/1"], "metadata"),
    (["::/0"], "metadata"),
    (["169.254.0.0/16"], "metadata"),
    (["172.30.0.1"], "this host's own address"),
    (["192.168.1.10"], "this host's own address"),
    (["::ffff:192.168.1.10"], "IPv4-mapped"),
    (["::ffff:10.0.0.0/104"], "IPv4-mapped"),
    (["[::ffff:172.30.0.1]:22"], "IPv4-mapped"),
    (["192.168.0.0/16"], "whole blocked range 192.168.0.0/16"),
    (["192.168.0.0/17", "192.168.128.0/17"], "whole blocked range 192.168.0.0/16"),
    (["192.168.1.0/24", "10.0.0.1"], "257 blocked IPv4 addresses"),
    (["192.168.0.0/23:53"], "512 blocked IPv4 addresses"),
    (["fd00::/63"], "/64"),
    (["fd00::/64", "fd00:0:0:1::1"], "/64"),
    (["100.64.0.0/10"], "whole blocked range 100.64.0.0/10"),
])
def test_refused_without_the_flag(specs, words):
    with pytest.raises(UsageError) as err:
        _check(*specs)
    assert words in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("specs", [
    ["0.0.0.0/0"], ["::/0"], ["169.254.169.254"], ["172.30.0.1"], ["::ffff:10.0.0.1"],
    ["fd00:ec2::/64"],
    ["::/1"], ["2000::/3"],    # they hold NAT64 / 6to4, Teredo: every IPv4 address, metadata too
])
def test_refused_even_with_the_flag(specs):
    with pytest.raises(UsageError):
        _check(*specs, wide=True)


@pytest.mark.parametrize("specs,wide", [
    (["192.168.1.0/24"], False),              # covers the host's 192.168.1.10: host stays shut
    (["192.168.1.50:11434", "host:11434"], False),
    (["172.30.0.1:2222"], False),
    (["[::1]:22"], False),
    (["fd00::/64"], False),
    (["8.8.8.8:53"], False),
    (["0.0.0.0/0:443"], True),                 # metadata with a port and the flag
    (["192.168.0.0/16", "10.0.0.0/8"], True),
    (["0.0.0.0/1", "192.0.0.0/2"], True),      # all but 128.0.0.0/2 (metadata in there)
])
def test_accepted(specs, wide):
    _check(*specs, wide=wide)


def test_local_only_counts_the_internet_as_blocked():
    _check("8.8.8.0/24", profile="local-only")
    with pytest.raises(UsageError):
        _check("8.8.0.0/16", profile="local-only")
    _check("8.8.0.0/16")   # internet profile: already reachable, nothing newly opened


def test_summary_tells_what_is_open():
    allows = allow.parse_all(["host:2222", "172.30.0.1:8080", "192.168.1.0/24", "8.8.8.8:53",
                              "[fd00::5]:53"])
    lines = allow.summary(allows, HOST)
    text = "\n".join(t for _, _, t in lines)
    warned = [t for w, _, t in lines if w]
    assert "this host is reachable on port 2222" in warned[0]
    assert "this host is reachable on port 8080 (TCP and UDP) at 172.30.0.1" in warned[1]
    assert "the LAN is NOT fully blocked: the container reaches 192.168.1.0/24" in warned[2]
    assert "the LAN is NOT fully blocked: the container reaches fd00::5" in warned[3]
    assert "this host's own 192.168.1.10 in 192.168.1.0/24 stays closed" in text
    assert (False, "8.8.8.8:53", "open: 8.8.8.8 (TCP and UDP port 53): --allow 8.8.8.8:53") \
        in lines
    assert allow.summary((), HOST) == []


def test_input_opens_the_host_only_port_by_port():
    """rules.py renders an INPUT rule for host:PORT and a single ADDRESS:PORT only: a network
    or a bare address opens no port of the host, whichever addresses the host has."""
    allows = allow.parse_all(["host:2222", "172.30.0.1:8080", "192.168.1.0/24", "10.0.0.1",
                              "192.168.2.0/24:53", "[fd00::1]:53", "fd00::/64"])
    config = rules.default_config()._replace(allows=allows)
    v4 = rules.chain_rules(config, 4)[rules.IN_CHAIN]
    v6 = rules.chain_rules(config, 6)[rules.IN_CHAIN]
    opening = [r for r in v4 + v6 if r.endswith(("-j RETURN", "-j ACCEPT"))
               and "ctstate" not in r and "icmp" not in r]
    assert opening == [
        "-p tcp -m tcp --dport 2222 -j RETURN", "-p udp -m udp --dport 2222 -j RETURN",
        "-d 172.30.0.1/32 -p tcp -m tcp --dport 8080 -j RETURN",
        "-d 172.30.0.1/32 -p udp -m udp --dport 8080 -j RETURN",
        # the key routes (the proxy on the bridge's address): that port alone, TCP, accepted
        # there and then (a host firewall's default deny must not drop it)
        "-d 172.30.0.1/32 -p tcp -m tcp --dport 18790 -j ACCEPT",
        "-p tcp -m tcp --dport 2222 -j RETURN", "-p udp -m udp --dport 2222 -j RETURN",
        "-d fd00::1/128 -p tcp -m tcp --dport 53 -j RETURN",
        "-d fd00::1/128 -p udp -m udp --dport 53 -j RETURN"]


def test_host_networks_from_proc(tmp_path):
    net = tmp_path / "net"
    net.mkdir()
    (net / "fib_trie").write_text("""Main:
  +-- 0.0.0.0/0 3 0 5
     +-- 127.0.0.0/8 2 0 2
           |-- 127.0.0.0
              /8 host LOCAL
           |-- 127.0.0.1
              /32 host LOCAL
        |-- 127.255.255.255
           /32 link BROADCAST
     +-- 192.168.1.0/24 2 0 2
           |-- 192.168.1.0
              /24 link UNICAST
           |-- 192.168.1.10
              /32 host LOCAL
""")
    (net / "if_inet6").write_text(
        "00000000000000000000000000000001 01 80 10 80       lo\n"
        "fd000001000000000000000000000010 02 40 00 80     eth0\n")
    got = allow.host_networks("172.30.0.1", proc=str(tmp_path))
    want = {"127.0.0.0/8", "127.0.0.1/32", "127.255.255.255/32", "192.168.1.10/32",
            "172.30.0.1/32", "::1/128", "fd00:1::10/128"}
    assert set(map(str, got)) == want
    # the bridge's subnet broadcast, before the bridge exists (not in fib_trie yet)
    got = allow.host_networks("172.30.0.1", proc=str(tmp_path), subnet="172.30.0.0/24")
    assert set(map(str, got)) == want | {"172.30.0.255/32"}
    # nothing readable: loopback and the gateway are still the host's
    assert set(map(str, allow.host_networks("172.30.0.1", proc=str(tmp_path / "no")))) == {
        "127.0.0.0/8", "::1/128", "172.30.0.1/32"}


def test_bridge_check(tmp_path):
    sysfs, proc = tmp_path / "sys", tmp_path / "proc"
    (sysfs / "claw-cage0" / "bridge").mkdir(parents=True)
    (sysfs / "eth1").mkdir(parents=True)
    (proc / "net").mkdir(parents=True)
    (proc / "net" / "route").write_text(
        "Iface\tDestination\tGateway\tFlags\tRefCnt\tUse\tMetric\tMask\tMTU\tWindow\tIRTT\n"
        "eth0\t00000000\t0101A8C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n")
    (proc / "net" / "ipv6_route").write_text(
        "00000000000000000000000000000000 00 00000000000000000000000000000000 00 "
        "fe800000000000000000000000000001 00000400 00000002 00000000 00000003     wlan0\n")
    for name in ("claw-cage0", "not-there0"):
        bridge.check(name, str(sysfs), str(proc))
    for name, why in (("lo", "loopback"), ("eth0", "default route"),
                      ("wlan0", "default route"), ("eth1", "not a Linux bridge")):
        with pytest.raises(TargetError) as err:
            bridge.check(name, str(sysfs), str(proc))
        assert why in str(err.value)
        assert err.value.exit_code == 5


def test_verify_warn_rows_say_what_summary_says():
    fw = firewall_rows.FirewallConfig(allow.parse_all(["host:2222", "192.168.1.1:8080",
                                                       "8.8.8.8:53"]), "internet", "test")
    rows = firewall_rows.allow_rows("172.30.0.0/24", fw)
    assert [r.status for r in rows] == ["warn", "warn"]
    assert [r.check for r in rows] == ["opened by --allow host:2222",
                                       "opened by --allow 192.168.1.1:8080"]
    assert "this host is reachable on port 2222" in rows[0].detail
    assert "the LAN is NOT fully blocked" in rows[1].detail
    assert firewall_rows.allow_rows("172.30.0.0/24", firewall_rows.FirewallConfig()) == []


def test_help_names_the_flag(run_pyz):
    out = run_pyz(["--help"])
    assert b"--unsafe-wide-allow" in out.stdout
    bad = run_pyz(["--verify", "--unsafe-wide-allow"])
    assert bad.returncode == 2 and b"--unsafe-wide-allow" in bad.stderr


# ---- what the host itself receives, embedded IPv4, ambiguous spellings ----------------------

HOST_BCAST = HOST + [ipaddress.ip_network("172.30.0.255/32"),
                     ipaddress.ip_network("192.168.1.255/32")]


@pytest.mark.parametrize("spec, words", [
    ("172.30.0.255", "this host's own address"),       # the bridge's subnet broadcast
    ("192.168.1.255", "this host's own address"),      # a LAN subnet's broadcast
    ("255.255.255.255", "this host's own address"),
    ("224.0.0.1", "this host's own address"),
    ("239.255.255.250", "this host's own address"),
    ("ff02::1", "this host's own address"),
    ("[64:ff9b::ac1e:1]", "this host's own address"),  # NAT64 of the bridge gateway
    ("[64:ff9b::a9fe:a9fe]:80", "metadata"),           # NAT64 of 169.254.169.254, port 80
    ("255.255.255.255:8053", "whole blocked range 255.255.255.255/32"),
    ("64:ff9b::/96", "metadata"),                      # every IPv4 address
    ("2002:a9fe:a9fe::/48", "metadata"),               # 6to4 of 169.254.169.254
    ("2002:c0a8::/32", "whole blocked range 192.168.0.0/16"),
    ("2001::/32", "metadata"),                         # Teredo: every client
    ("::172.30.0.1", "IPv4-compatible"),
    ("[::a00:1]:80", "IPv4-compatible"),
    ("::a00:0/104", "IPv4-compatible"),
    ("fd00:ec2::254:80", "[fd00:ec2::254]:80"),        # a port, or the address?
    ("fd00:1::5:8080", "[fd00:1::5:8080]"),
    ("64:ff9b::c0a8:101", "[64:ff9b::c0a8]:101"),      # brackets say it is the address
])
def test_host_receives_and_embedded_forms_are_judged_as_such(spec, words):
    with pytest.raises(UsageError) as err:
        allow.check(allow.parse_all([spec]), HOST_BCAST, "internet", False)
    print(err.value)
    assert words in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("spec, says", [
    ("172.30.0.255:8053", "this host is reachable on port 8053 (TCP and UDP) at 172.30.0.255"),
    ("224.0.0.1:8053", "this host is reachable on port 8053 (TCP and UDP) at 224.0.0.1"),
    ("[ff02::1]:8053", "this host is reachable on port 8053"),
    ("[64:ff9b::c0a8:101]", "the LAN is NOT fully blocked: the container reaches "
                          "64:ff9b::c0a8:101 (NAT64 of 192.168.1.1)"),
    ("2002:c0a8:101::/64", "the LAN is NOT fully blocked: the container reaches "
                           "2002:c0a8:101::/64 (6to4 of 192.168.1.1)"),
    ("[64:ff9b::ac1e:1]:22", "this host is reachable on port 22 (TCP and UDP) at "
                             "64:ff9b::ac1e:1 (NAT64 of 172.30.0.1)"),
])
def test_summary_names_the_host_and_the_embedded_address(spec, says):
    allows = allow.parse_all([spec])
    allow.check(allows, HOST_BCAST, "internet", False)   # accepted: port by port, one address
    lines = allow.summary(allows, HOST_BCAST)
    print(lines)
    assert lines[0][0] is True and says in lines[0][2], lines


@pytest.mark.parametrize("spec", ["fd00::1", "fd00::50", "[fd00:1::5]:8080", "[fd00:1::5:8080]",
                                  "fd00::/64", "2001:db8::1", "fd00:0:0:0:0:0:0:80"])
def test_unambiguous_ipv6_spellings_still_parse(spec):
    allow.check(allow.parse_all([spec]), HOST, "internet", False)


@pytest.mark.parametrize("spec", ["[64:ff9b:1::a00:1]:80", "64:ff9b:1::/96", "[64:ff9b:1:2::]:443"])
def test_local_use_nat64_counts_as_the_lan(spec):
    """64:ff9b:1::/48 (RFC 8215) may carry any IPv4 address, where the translator puts it: it
    opens only with the flag, and then the summary says the LAN is not fully blocked."""
    with pytest.raises(UsageError) as err:
        _check(spec)
    assert "local-use NAT64" in str(err.value) and allow.WIDE_FLAG in str(err.value)
    a = allow.parse_all([spec])
    if a[0].port is not None:
        allow.check(a, HOST, "internet", True)
        warn, _spec, text = allow.summary(a, HOST)[0]
        assert warn and "NOT fully blocked" in text and "local-use NAT64" in text, text


@pytest.mark.parametrize("spec", ["0.0.0.0:22", "[::]:11434", "0.0.0.0"])
def test_the_unspecified_address_is_refused_even_with_the_flag(spec):
    """0.0.0.0 and :: reach this host's own loopback: never a destination to list."""
    with pytest.raises(UsageError) as err:
        _check(spec, wide=True)
    assert "loopback" in str(err.value) or "own address" in str(err.value), str(err.value)
