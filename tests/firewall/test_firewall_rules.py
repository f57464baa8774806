"""The rule table and its pure renderers, and --allow parsing (no root needed).

What the packets cannot show on their own: the restore input never names a chain that is not
claw-cage's (declaring DOCKER-USER would flush the user's rules), never ACCEPTs but for the key
routes' row in INPUT (the bridge's own address, TCP 18790: a host firewall's default deny must not
drop it), and keeps the order that makes allow-listing and established replies work.
"""

import ipaddress
import os
import sys

import pytest

from conftest import ROOT

sys.path.insert(0, os.path.join(ROOT, "bootstrap"))
from claw_cage.firewall import allow, readback, rules  # noqa: E402
from claw_cage.errors import UsageError  # noqa: E402

NET = ipaddress.ip_network("172.30.0.0/24")
ALLOWS = allow.parse_all(["192.168.1.50:11434", "host:11434", "[fd00::5]:53", "10.9.0.0/16"])
CONFIGS = [rules.Config("claw-cage0", NET, allows, profile)
           for allows in ((), ALLOWS) for profile in rules.PROFILES]


SAVED_EMPTY = {}     # a host with no rules yet (parse_tables of an empty save)


@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("family", rules.FAMILIES)
def test_restore_input_declares_only_own_chains_and_never_accepts(config, family):
    saved = readback.parse_tables("*filter\n:DOCKER-USER - [0:0]\n-A DOCKER-USER -j X\nCOMMIT\n")
    text = rules.render_restore(config, family, saved)
    lines = text.splitlines()
    assert lines[0] == "*mangle" and lines[-1] == "COMMIT"
    assert lines.index("*filter") < len(lines) and lines.count("COMMIT") == 2
    declared = [l for l in lines if l.startswith(":")]
    assert declared == [":%s - [0:0]" % c for c in rules.OWN_CHAINS]
    accepts = [l for l in lines if "ACCEPT" in l]
    assert accepts == (["-A CLAW-CAGE-IN -d 172.30.0.1/32 -p tcp -m tcp --dport 18790 -j ACCEPT"]
                       if (config.profile, family) == ("internet", 4) else [])
    assert not any(l.startswith(("-F", "-X", "-P", "-Z", "-N")) for l in lines)


def test_docker_user_is_created_with_n_never_declared():
    """Declaring DOCKER-USER in a restore input flushes it (the user's rules with it): when it
    is missing it is created with -N, which fails instead should Docker make it meanwhile."""
    config = rules.default_config()
    text = rules.render_restore(config, 4, SAVED_EMPTY)
    assert "-N DOCKER-USER" in text.splitlines() and ":DOCKER-USER" not in text
    forward = rules.render_restore(config._replace(parent="FORWARD"), 4, SAVED_EMPTY)
    assert "DOCKER-USER" not in forward
    assert "-I FORWARD 1 -i claw-cage0 -j CLAW-CAGE-FWD" in forward.splitlines()


@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("family", rules.FAMILIES)
def test_order_established_then_allows_then_drops_then_rest(config, family):
    fwd = rules.chain_rules(config, family)[rules.FWD_CHAIN]
    assert fwd[0].startswith("-m conntrack --ctstate RELATED,ESTABLISHED -j RETURN")
    first_drop = min(i for i, r in enumerate(fwd) if r.endswith("DROP"))
    assert all(r.endswith("RETURN") for r in fwd[:first_drop])
    for cidr, _ in rules.SPECIAL_RANGES[family]:
        net = ipaddress.ip_network(cidr)
        assert "-d %s -j DROP" % cidr in fwd[first_drop:]
        ct = str(net.network_address) if net.num_addresses == 1 else cidr
        assert "-m conntrack --ctorigdst %s -j DROP" % ct in fwd[first_drop:]
    want_rest = "RETURN" if (family, config.profile) == (4, "internet") else "DROP"
    assert fwd[-1] == "-j " + want_rest
    inp = rules.chain_rules(config, family)[rules.IN_CHAIN]
    assert inp[0].startswith("-m conntrack --ctstate RELATED,ESTABLISHED")
    assert inp[-1] == "-j DROP"


@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("family", rules.FAMILIES)
def test_first_anchor_judges_the_host_before_the_subnet_and_every_range(config, family):
    """mangle PREROUTING sees forwarded and local traffic alike: the host's own addresses on
    the bridge are LOCAL *and* in the subnet, so LOCAL is dropped before the subnet returns;
    host:PORT allows come before that drop, every range is dropped, the rest as the profile."""
    pre = rules.chain_rules(config, family)[rules.PRE_CHAIN]
    assert pre[0] == rules.ESTABLISHED
    local = pre.index("-m addrtype --dst-type LOCAL -j DROP")
    host_ports = [i for i, r in enumerate(pre) if "--dst-type LOCAL -m" in r]
    assert all(i < local for i in host_ports)
    assert len(host_ports) == (2 if config.allows else 0)
    assert all(r.endswith("RETURN") for r in pre[:local])
    if family == 4:
        assert pre.index("-d 172.30.0.0/24 -j RETURN") > local
        assert pre.index("-m addrtype --dst-type BROADCAST -j DROP") == local + 1
    for cidr, _ in rules.SPECIAL_RANGES[family]:
        assert pre.index("-d %s -j DROP" % cidr) > local
    want_rest = "RETURN" if (family, config.profile) == (4, "internet") else "DROP"
    assert pre[-1] == "-j " + want_rest


@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("family", rules.FAMILIES)
def test_every_anchor_renders_the_one_table(config, family):
    """Each abstract rule of rules.policy() shows up in every anchor it can reach, in the same
    order: the anchors are renderings of one table, not three lists kept in step by hand."""
    table = rules.policy(config, family)
    chains = rules.chain_rules(config, family)
    for chain, render in rules._RENDER.items():
        rendered = [render(rule) for rule in table]
        assert [s for specs in rendered for s in specs] == chains[chain]
    kinds = [r.kind for r in table]
    assert kinds[0] == "established" and kinds[-1] == "rest"
    assert kinds.index("local") < min(i for i, k in enumerate(kinds) if k == "range")
    assert all(k in ("established", "nd", "host-port", "allow", "route")
               for k in kinds[:kinds.index("local")])


def test_allow_entries_land_in_the_right_family_and_chain():
    config = rules.Config("claw-cage0", NET, ALLOWS, "internet")
    v4, v6 = rules.chain_rules(config, 4), rules.chain_rules(config, 6)
    assert ("-p tcp -m conntrack --ctorigdst 192.168.1.50 --ctorigdstport 11434 -j RETURN"
            in v4[rules.FWD_CHAIN])
    assert "-m conntrack --ctorigdst 10.9.0.0/16 -j RETURN" in v4[rules.FWD_CHAIN]
    assert "-p udp -m udp --dport 11434 -j RETURN" in v4[rules.IN_CHAIN]
    assert "-p udp -m udp --dport 11434 -j RETURN" in v6[rules.IN_CHAIN]
    assert not any("fd00::5" in r for r in v4[rules.FWD_CHAIN] + v4[rules.IN_CHAIN])
    assert not any("192.168" in r for r in v6[rules.FWD_CHAIN] + v6[rules.IN_CHAIN])
    assert "-p udp -m conntrack --ctorigdst fd00::5 --ctorigdstport 53 -j RETURN" in \
        v6[rules.FWD_CHAIN]


J = "-i claw-cage0 -j CLAW-CAGE-FWD"
JI = "-i claw-cage0 -j CLAW-CAGE-IN"


@pytest.mark.parametrize("current, edits", [
    ({}, ["-I DOCKER-USER 1 " + J, "-I INPUT 1 " + JI]),
    ({"DOCKER-USER": [J], "INPUT": [JI]}, []),
    ({"DOCKER-USER": [J, "-j RETURN"], "INPUT": [JI, "-j ACCEPT"]}, []),
    ({"DOCKER-USER": ["-j RETURN"], "INPUT": [JI]}, ["-I DOCKER-USER 1 " + J]),
    ({"DOCKER-USER": ["-i x -j DROP", J], "INPUT": [JI]},
     ["-D DOCKER-USER " + J, "-I DOCKER-USER 1 " + J]),
    ({"DOCKER-USER": [J, J], "INPUT": [JI]},
     ["-D DOCKER-USER " + J, "-D DOCKER-USER " + J, "-I DOCKER-USER 1 " + J]),
    ({"DOCKER-USER": [J, "-i old0 -j CLAW-CAGE-FWD"], "INPUT": [JI]},      # renamed bridge
     ["-D DOCKER-USER -i old0 -j CLAW-CAGE-FWD"]),
    ({"DOCKER-USER": ["-i old0 -j CLAW-CAGE-FWD", J], "INPUT": [JI]},
     ["-D DOCKER-USER -i old0 -j CLAW-CAGE-FWD", "-D DOCKER-USER " + J, "-I DOCKER-USER 1 " + J]),
    ({"DOCKER-USER": [J], "FORWARD": [J], "INPUT": [JI]},   # Docker's backend changed
     ["-D FORWARD " + J]),
    ({"DOCKER-USER": [J], "INPUT": [JI], "CLAW-CAGE-FWD": ["-j CLAW-CAGE-IN"]}, []),
])
def test_jump_edits_leave_one_copy_first(current, edits):
    assert rules.jump_edits(rules.default_config(), "filter", current) == edits


def test_expected_lines_are_chains_then_jumps():
    config = rules.default_config()
    lines = rules.expected_lines(config, 4)
    assert lines[0] == "-N CLAW-CAGE-PRE"
    assert lines[-4:] == ["-A PREROUTING -i claw-cage0 -j CLAW-CAGE-PRE", "-A DOCKER-USER " + J,
                          "-A INPUT " + JI, "-A INPUT ! -i claw-cage0 -j CLAW-CAGE-ROUTES"]


@pytest.mark.parametrize("family", rules.FAMILIES)
@pytest.mark.parametrize("profile", rules.PROFILES)
def test_the_routes_port_from_anywhere_but_the_bridge_drops(family, profile):
    """Linux is a weak host: a LAN neighbour routing the subnet via the host reaches
    172.30.0.1:18790 through the LAN interface. mangle INPUT, for every packet NOT from the
    bridge, drops the routes' address and port (the host's own lo passes); nothing else."""
    config = rules.default_config()._replace(profile=profile)
    chain = rules.chain_rules(config, family)[rules.ROUTES_CHAIN]
    want = (["-d 172.30.0.1/32 ! -i lo -p tcp -m tcp --dport 18790 -j DROP"]
            if (family, profile) == (4, "internet") else [])
    assert chain == want
    assert rules.TABLE_OF[rules.ROUTES_CHAIN] == "mangle"
    assert ("mangle", "INPUT", "! -i claw-cage0 -j CLAW-CAGE-ROUTES") in rules.jumps(config)


def test_removal_names_only_own_chains_and_jumps():
    saved = readback.parse_tables(
        "*mangle\n:PREROUTING ACCEPT [0:0]\n:CLAW-CAGE-PRE - [0:0]\n"
        "-A PREROUTING -i claw-cage0 -j CLAW-CAGE-PRE\n-A PREROUTING -j MARK --set-mark 1\n"
        "-A CLAW-CAGE-PRE -j RETURN\nCOMMIT\n*filter\n:DOCKER-USER - [0:0]\n"
        ":CLAW-CAGE-FWD - [0:0]\n-A DOCKER-USER -i lan0 -j DROP\n"
        "-A DOCKER-USER -i old0 -j CLAW-CAGE-FWD\nCOMMIT\n")
    assert rules.render_removal(saved).splitlines() == [
        "*mangle", "-D PREROUTING -i claw-cage0 -j CLAW-CAGE-PRE", "-F CLAW-CAGE-PRE",
        "-X CLAW-CAGE-PRE", "COMMIT", "*filter", "-D DOCKER-USER -i old0 -j CLAW-CAGE-FWD",
        "-F CLAW-CAGE-FWD", "-X CLAW-CAGE-FWD", "COMMIT"]
    assert rules.render_removal(readback.parse_tables("*filter\n:INPUT ACCEPT\nCOMMIT\n")) is None


def test_rollback_puts_back_each_table_whole_and_an_absent_one_empty():
    saved = ("# Generated by iptables-save\n*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n"
             ":OUTPUT ACCEPT [0:0]\n-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT\nCOMMIT\n"
             "*nat\n:PREROUTING ACCEPT [0:0]\nCOMMIT\n")
    text = rules.render_rollback(saved)
    assert text.splitlines() == [
        "*mangle", ":PREROUTING ACCEPT [0:0]", ":INPUT ACCEPT [0:0]", ":FORWARD ACCEPT [0:0]",
        ":OUTPUT ACCEPT [0:0]", ":POSTROUTING ACCEPT [0:0]", "COMMIT",
        "*filter", ":INPUT ACCEPT [0:0]", ":FORWARD DROP [0:0]", ":OUTPUT ACCEPT [0:0]",
        "-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT", "COMMIT"]
    assert "*nat" not in text     # tables claw-cage never writes are never rolled back


@pytest.mark.parametrize("spec, kind, net, port", [
    ("192.168.1.50:11434", "net", "192.168.1.50/32", 11434),
    ("192.168.1.0/24", "net", "192.168.1.0/24", None),
    ("10.0.0.7", "net", "10.0.0.7/32", None),
    ("host:11434", "host", None, 11434),
    ("[fd00::5]:53", "net", "fd00::5/128", 53),
    ("[fd00::/64]:53", "net", "fd00::/64", 53),
    ("fd00::/64", "net", "fd00::/64", None),
])
def test_allow_spec_parses(spec, kind, net, port):
    entry = allow.parse(spec)
    assert (entry.kind, str(entry.net) if entry.net else None, entry.port) == (kind, net, port)
    assert allow.parse(allow.describe(entry)) == entry


@pytest.mark.parametrize("spec", ["", "host", "host:0", "host:65536", "192.168.1.5/24",
                                  "192.168.1.300", "example.com", "example.com:443",
                                  "fd00::5:53:", "[fd00::5]:", "1.2.3.4:x", "1.2.3.4/33"])
def test_allow_spec_refuses(spec):
    with pytest.raises(UsageError) as err:
        allow.parse(spec)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("profile, address, port, verdict", [
    ("internet", "203.0.113.10", 443, "RETURN"),
    ("local-only", "203.0.113.10", 443, "DROP"),
    ("internet", "192.168.1.50", 11434, "RETURN"),     # allowed
    ("internet", "192.168.1.50", 22, "DROP"),          # allowed address, other port
    ("internet", "10.9.8.7", None, "RETURN"),          # allowed network, any port
    ("internet", "169.254.169.254", 80, "DROP"),
    ("internet", "172.30.0.5", 80, "RETURN"),          # the claw-cage network itself
    ("internet", "2001:db8::1", 443, "DROP"),          # no IPv6 out
    ("internet", "fd00::5", 53, "RETURN"),             # ... unless allowed
])
def test_forward_verdict_follows_the_table(profile, address, port, verdict):
    config = rules.Config("claw-cage0", NET, ALLOWS, profile)
    assert rules.forward_verdict(config, address, port) == verdict


def test_blocked_resolvers_warns_only_for_lan_servers(tmp_path):
    from claw_cage.firewall import dns
    conf = tmp_path / "resolv.conf"
    conf.write_text("# comment\nnameserver 127.0.0.53\nnameserver 192.168.1.1\n"
                    "nameserver 1.1.1.1\nnameserver fe80::1%eth0\nnameserver 192.168.1.1\n"
                    "search lan\n")
    config = rules.default_config()
    assert [str(a) for a in dns.blocked_resolvers(config, [str(conf)])] == \
        ["192.168.1.1"]
    allowed = config._replace(allows=allow.parse_all(["192.168.1.1:53"]))
    assert dns.blocked_resolvers(allowed, [str(conf)]) == []


def test_the_host_opens_port_by_port_only():
    """ADDRESS:PORT (the address may be one of the host's) is judged before the LOCAL drop; a
    network or an address without a port after it, and never in INPUT: an allow that covers
    the host's addresses without naming a port opens none of its ports (issue 17)."""
    config = rules.Config("claw-cage0", NET, allow.parse_all(
        ["10.255.0.1:8081", "10.255.0.0/30", "10.9.0.0/16:53"]), "internet")
    pre = rules.chain_rules(config, 4)[rules.PRE_CHAIN]
    local = pre.index("-m addrtype --dst-type LOCAL -j DROP")
    assert pre.index("-d 10.255.0.1/32 -p tcp -m tcp --dport 8081 -j RETURN") < local
    assert pre.index("-d 10.255.0.0/30 -j RETURN") > local
    assert pre.index("-d 10.9.0.0/16 -p udp -m udp --dport 53 -j RETURN") > local
    inp = rules.chain_rules(config, 4)[rules.IN_CHAIN]
    assert "-d 10.255.0.1/32 -p tcp -m tcp --dport 8081 -j RETURN" in inp
    assert not [r for r in inp if "10.255.0.0/30" in r or "10.9.0.0/16" in r]


def test_the_key_routes_row_opens_the_bridge_address_on_18790_alone():
    """Issue 29: under internet the gateway reaches the proxy's routes on the host at the
    bridge's own address, TCP 18790 only; local-only has no such row; never forwarded."""
    config = rules.default_config()
    for chain in (rules.PRE_CHAIN, rules.IN_CHAIN):
        specs = rules.chain_rules(config, 4)[chain]
        # INPUT: ACCEPT, final, so the host's firewall (ufw's default deny) cannot drop it
        route = "-d 172.30.0.1/32 -p tcp -m tcp --dport 18790 -j %s" % (
            "RETURN" if chain == rules.PRE_CHAIN else "ACCEPT")
        assert specs.count(route) == 1
        assert specs.index(route) < specs.index("-m addrtype --dst-type LOCAL -j DROP"
                                                if chain == rules.PRE_CHAIN else "-j DROP")
    assert not any("18790" in s for s in rules.chain_rules(config, 4)[rules.FWD_CHAIN])
    assert not any("18790" in s for s in rules.chain_rules(config, 6)[rules.IN_CHAIN])
    local = config._replace(profile="local-only")
    assert not any("18790" in s for c in rules.chain_rules(local, 4).values() for s in c)


# ---- readback.split: shlex.split's answer, faster ---------------------------------------------
# A re-apply compares a few hundred rules; readback.split takes str.split's fast path when the
# rule has nothing shlex treats specially. Every word list must be shlex.split's: a fast path
# that split a quoted comment, kept a backslash or split on a whitespace shlex keeps would
# compare a rule wrongly, and these fail.
SPLIT_CASES = [
    "", "   ", "-j RETURN", "  -d 10.0.0.0/8   -j DROP ",
    '-m comment --comment "claw-cage: LAN block" -j DROP',
    "-m comment --comment 'single quoted' -j DROP",
    r'-m comment --comment "a \"quoted\" word" -j DROP',
    r"-i eth\ 0 -j DROP", "-i a\\b -j DROP",
    "-m comment --comment x\x0by -j DROP", "-m comment --comment x\x0cy -j DROP",
    "-m comment --comment x\x1cy\x1dz\x1ew\x1fv -j DROP",
    "-m comment --comment x\xa0y -j DROP", "-m comment --comment x\u2003y -j DROP",
    "-m comment --comment caf\xe9 -j DROP", "-d 10.0.0.0/8\t-j\tDROP", "-j DROP\r\n",
    "-p tcp -m tcp --dport 53 # not a comment to shlex.split -j DROP",
    "! -i claw-cage0 -j RETURN",
]


def _rule_corpus():
    out = list(SPLIT_CASES)
    for config in CONFIGS:
        for family in rules.FAMILIES:
            out += [r for chain in rules.chain_rules(config, family).values() for r in chain]
        out += [spec for _, _, spec in rules.jumps(config)]
    return out


def test_readback_split_is_shlex_split():
    import shlex
    corpus = _rule_corpus()
    assert len(corpus) > 100
    for rule in corpus:
        assert readback.split(rule) == shlex.split(rule), repr(rule)
    # each character that is special to shlex, alone in an otherwise plain rule
    for ch in "'\"\\\x0b\x0c\x1c\x1d\x1e\x1f\x85\xa0\u2028 \t\n\r#;&|<>()$`*?[]{}~=%,":
        rule = "-m comment --comment a%sb -j DROP" % ch
        try:
            want = shlex.split(rule)
        except ValueError:   # an unbalanced quote: both refuse it
            with pytest.raises(ValueError):
                readback.split(rule)
            continue
        assert readback.split(rule) == want, repr(rule)
