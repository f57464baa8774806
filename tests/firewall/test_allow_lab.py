"""What an --allow may open (issue 17), proven with packets in the namespace lab (netlab.py).

The BUILT program runs in the lab's host namespace (bridge claw-cage0 at 172.30.0.1, LAN-side
address 10.255.0.1); a TCP service of the host listens on port 2222 on every address. Every
refusal is one line, exit 2, and iptables-save of both families stays byte-identical; every
"blocked" stands next to a control probe that reaches the same target without the rules.
"""

import pytest

from lab import netlab
from lab.netlab import Lab, Probe
from lab.netlab import ok as _ok

pytestmark = pytest.mark.usefixtures("_lab_possible")

HOST_PORT = 2222
WIDE = "--unsafe-wide-allow"


def _host_service(lab):
    """A TCP service of the host on port 2222, every address (an SSH stand-in)."""
    lab._serve(lab.host, str(HOST_PORT), "")


def _probes(lab):
    c = lab.ctr
    return {
        "gw:2222": Probe("host 172.30.0.1:2222", c, "tcp", "172.30.0.1", HOST_PORT),
        "lanside:2222": Probe("host %s:2222" % netlab.HOST_LAN_SIDE, c, "tcp",
                              netlab.HOST_LAN_SIDE, HOST_PORT),
        "gw:8080": Probe("host 172.30.0.1:8080", c, "tcp", "172.30.0.1", netlab.TCP_PORT),
        "lan 192.168.1.1": Probe("LAN 192.168.1.1:8080", c, "tcp", "192.168.1.1", 8080),
        "lan 10.1.2.3": Probe("LAN 10.1.2.3:8080", c, "tcp", "10.1.2.3", 8080),
        "metadata": Probe("metadata 169.254.169.254:8080", c, "tcp", "169.254.169.254", 8080),
        "ula": Probe("IPv6 ULA [%s]:8080" % netlab.LAN_V6, c, "tcp", netlab.LAN_V6, 8080),
    }


def _reach(lab, probes, should=()):
    got = lab.probe(list(probes.values()), retry=[probes[k] for k in should])
    result = {k: got[p] for k, p in probes.items()}
    for k in sorted(result):
        print("  %-8s %s" % ("REACHED" if result[k] else "blocked", probes[k].name))
    return result


def _control(lab):
    probes = _probes(lab)
    got = _reach(lab, probes, should=probes)
    assert all(got.values()), "control: unreachable even without rules: %s" % got
    return probes


REFUSED = [
    (["0.0.0.0/0"], "169.254.169.254"),
    (["0.0.0.0/1", "128.0.0.0/1"], "169.254.169.254"),
    (["172.30.0.1"], "this host's own address"),
    (["::/0"], "fd00:ec2::254"),
    (["::ffff:10.0.0.1"], "IPv4-mapped"),
    (["192.168.0.0/16"], "whole blocked range 192.168.0.0/16"),
    (["192.168.1.0/24", "192.168.2.0/24"], "together would open 512 blocked IPv4 addresses"),
    (["10.0.0.0/9", "10.128.0.0/9"], "whole blocked range 10.0.0.0/8"),
    (["10.255.0.1"], "this host's own address"),
    (["[::1]"], "this host's own address"),
    (["127.0.0.1"], "this host's own address"),
    (["169.254.169.254:80"], WIDE),
    (["fd00::/63"], "/64"),
    (["255.255.255.255"], "this host's own address: the host opens only port by port "
                          "(--allow host:PORT)"),
    (["255.255.255.255:2222"], "whole blocked range"),
]


def test_wide_or_host_allows_are_refused_in_one_line_and_change_nothing(pyz):
    """Table rows 2-4 and the findings: every spelling of 'everything', of the host and of a
    wide LAN range is refused before anything is touched, on a fresh host and on a caged one."""
    with Lab() as lab:
        _host_service(lab)
        probes = _control(lab)
        for caged in (False, True):
            if caged:
                _ok(lab.firewall(pyz, "--no-persist"))
            before = (lab.save(4), lab.save(6))
            for specs, why in REFUSED:
                argv = ["--no-persist"]
                for s in specs:
                    argv += ["--allow", s]
                proc = lab.firewall(pyz, *argv)
                print(specs, "->", proc.returncode, proc.stderr.strip())
                assert proc.returncode == 2, (specs, proc.stdout, proc.stderr)
                assert proc.stderr.count("\n") == 1, proc.stderr
                assert why is None or why in proc.stderr, (specs, proc.stderr)
                assert (lab.save(4), lab.save(6)) == before, "%s changed iptables" % specs
        got = _reach(lab, probes)
        assert not got["gw:2222"] and not got["lan 192.168.1.1"], got


def test_metadata_stays_closed_without_a_port_even_with_the_flag(pyz):
    with Lab() as lab:
        before = (lab.save(4), lab.save(6))
        for spec in ("0.0.0.0/0", "169.254.0.0/16", "::/0", "fd00::/8"):
            proc = lab.firewall(pyz, "--no-persist", "--allow", spec, WIDE)
            assert proc.returncode == 2, proc.stderr
            assert "metadata" in proc.stderr and proc.stderr.count("\n") == 1, proc.stderr
        assert (lab.save(4), lab.save(6)) == before


def test_host_port_opens_only_through_host_port_or_its_address(pyz):
    """The host's port 2222 is reached only with host:2222 (at every address of the host) or
    172.30.0.1:2222 (there only); the summary says so; other ports stay closed."""
    with Lab() as lab:
        _host_service(lab)
        probes = _control(lab)
        out = _ok(lab.firewall(pyz, "--no-persist"))
        assert "not the LAN or this host" in out.stdout, out.stdout
        got = _reach(lab, probes)
        assert not any(got.values()), got

        out = _ok(lab.firewall(pyz, "--no-persist", "--allow", "host:2222"))
        assert "this host is reachable on port 2222" in out.stdout, out.stdout
        assert "not the LAN or this host" not in out.stdout, out.stdout
        got = _reach(lab, probes, should=["gw:2222", "lanside:2222"])
        assert got["gw:2222"] and got["lanside:2222"], got
        assert not got["gw:8080"] and not got["lan 192.168.1.1"], got

        out = _ok(lab.firewall(pyz, "--no-persist", "--allow", "172.30.0.1:2222"))
        assert "this host is reachable on port 2222 (TCP and UDP) at 172.30.0.1" in out.stdout
        got = _reach(lab, probes, should=["gw:2222"])
        assert got["gw:2222"] and not got["lanside:2222"] and not got["gw:8080"], got


def test_wide_allow_with_the_flag_says_the_lan_is_open_and_keeps_the_host_closed(pyz):
    """--allow 10.0.0.0/8 covers the host's own 10.255.0.1: with the flag the LAN range opens,
    the summary says the LAN is NOT fully blocked, and the host stays closed (old code opened
    every port of the host through INPUT)."""
    with Lab() as lab:
        _host_service(lab)
        probes = _control(lab)
        proc = lab.firewall(pyz, "--no-persist", "--allow", "10.0.0.0/8",
                            "--allow", "192.168.0.0/16")
        assert proc.returncode == 2 and WIDE in proc.stderr, proc.stderr
        out = _ok(lab.firewall(pyz, "--no-persist", "--allow", "10.0.0.0/8",
                               "--allow", "192.168.0.0/16", WIDE))
        print(out.stdout)
        assert "the LAN is NOT fully blocked" in out.stdout, out.stdout
        assert "not the LAN or this host" not in out.stdout, out.stdout
        # the host's own address and its /30's broadcast, both the host's
        assert "this host's own 10.255.0.1, 10.255.0.3 in 10.0.0.0/8 stays closed" \
            in out.stdout, out.stdout
        got = _reach(lab, probes, should=["lan 10.1.2.3", "lan 192.168.1.1"])
        assert got["lan 10.1.2.3"] and got["lan 192.168.1.1"], got
        assert not got["gw:2222"] and not got["lanside:2222"] and not got["gw:8080"], got
        assert not got["metadata"] and not got["ula"], got


def test_narrow_lan_allow_is_named_in_the_summary(pyz):
    """Row 3 of the table's spirit: the summary never says 'not the LAN' while a LAN address
    is open."""
    with Lab() as lab:
        _host_service(lab)
        probes = _control(lab)
        out = _ok(lab.firewall(pyz, "--no-persist", "--allow", "192.168.1.1:8080",
                               "--allow", "[fd00:1::5]:8080"))
        assert "the LAN is NOT fully blocked: the container reaches 192.168.1.1" in out.stdout
        assert "the LAN is NOT fully blocked: the container reaches fd00:1::5" in out.stdout
        assert "not the LAN or this host" not in out.stdout
        got = _reach(lab, probes, should=["lan 192.168.1.1", "ula"])
        assert got["lan 192.168.1.1"] and got["ula"] and not got["lan 10.1.2.3"], got


def test_verify_shows_what_is_open_as_warn_rows(pyz):
    """--verify, from the configuration --firewall persisted (into a private /etc overlay),
    shows each opening as a warn row: the same words as the summary."""
    import json
    import os
    with Lab() as lab:
        overlay = os.path.join(lab.tmp, "etc")
        out = lab.firewall(pyz, "--allow", "host:2222", "--allow", "192.168.1.1:8080",
                           etc_overlay=overlay)
        _ok(out)
        env = dict(os.environ)
        os.environ.update({"CLAW_CAGE_PROBE_NETNS": lab.ctr,   # probes stay in the lab
                           "CLAW_CAGE_INTERNET_PROBE": "%s:8080" % netlab.WAN_V4})
        try:
            proc = lab.run_program([netlab.PY, pyz, "--verify", "--json", "--dir",
                                    lab.compose_dir], etc_overlay=overlay)
        finally:
            os.environ.clear()
            os.environ.update(env)
        rows = json.loads(proc.stdout)
        opened = [r for r in rows if r["check"].startswith("opened by --allow")]
        print(json.dumps(opened, indent=1))
        assert [r["status"] for r in opened] == ["warn", "warn"], rows
        assert "this host is reachable on port 2222" in opened[0]["detail"]
        assert "the LAN is NOT fully blocked" in opened[1]["detail"]
        for r in opened:
            assert r["detail"] in out.stdout, (r, out.stdout)


def test_broadcast_and_multicast_allows_are_the_host_and_say_so(pyz):
    """The host's broadcast (172.30.0.255, the bridge's subnet) and multicast addresses are the
    host: ADDRESS:PORT there opens that port OF THE HOST (its UDP service on every address
    answers), so the run must say "this host is reachable", never call it a LAN opening; and
    without a port they are refused like any of the host's own addresses."""
    port = netlab.UDP_PORT
    with Lab() as lab:
        c = lab.ctr
        probes = {
            "bcast": Probe("host broadcast 172.30.0.255:%d" % port, c, "udp-bcast",
                           "172.30.0.255", port),
            "all-hosts": Probe("host multicast 224.0.0.1:%d" % port, c, "udp", "224.0.0.1",
                               port),
        }
        got = _reach(lab, probes, should=probes)
        assert all(got.values()), "control: the host's UDP service does not answer: %s" % got
        _ok(lab.firewall(pyz, "--no-persist"))
        got = _reach(lab, probes)
        assert not any(got.values()), "the cage lets broadcast/multicast reach the host: %s" % got
        out = _ok(lab.firewall(pyz, "--no-persist", "--allow", "172.30.0.255:%d" % port,
                               "--allow", "224.0.0.1:%d" % port))
        print(out.stdout, out.stderr)
        got = _reach(lab, probes, should=probes)
        assert all(got.values()), "the allowed host ports stay closed: %s" % got
        said = out.stdout + out.stderr
        # the packets reached the host: the words must say so, for each entry
        for addr in ("172.30.0.255", "224.0.0.1"):
            assert ("this host is reachable on port %d (TCP and UDP) at %s" % (port, addr)) \
                in said, said
        assert "not the LAN or this host" not in said and "LAN is NOT" not in said, said
        before = (lab.save(4), lab.save(6))
        for spec in ("172.30.0.255", "224.0.0.1", "[ff02::1]"):
            proc = lab.firewall(pyz, "--no-persist", "--allow", spec)
            print(spec, "->", proc.returncode, proc.stderr.strip())
            assert proc.returncode == 2 and "this host's own address" in proc.stderr, proc.stderr
            assert (lab.save(4), lab.save(6)) == before


EMBEDDED_REFUSED = [
    ("::172.30.0.1", "IPv4-compatible"),          # was a read-back failure (exit 6)
    ("[::a00:1]:80", "IPv4-compatible"),
    ("fd00:ec2::254:80", "[fd00:ec2::254]:80"),    # was another address, every port open
    ("64:ff9b::/96", "metadata"),                  # every IPv4 address through NAT64
    ("2002:c0a8::/32", "whole blocked range 192.168.0.0/16"),   # 6to4
    ("[64:ff9b::ac1e:1]", "this host's own address"),
]


def test_embedded_ipv4_and_ambiguous_spellings_by_the_program(pyz):
    """Words decide here: each refusal is exit 2 and one line, iptables unchanged; an embedded
    form that is accepted says which IPv4 address it reaches. Control: a plain IPv6 allow
    is accepted and called what it is."""
    with Lab() as lab:
        _ok(lab.firewall(pyz, "--no-persist"))
        before = (lab.save(4), lab.save(6))
        for spec, words in EMBEDDED_REFUSED:
            proc = lab.firewall(pyz, "--no-persist", "--allow", spec)
            print(spec, "->", proc.returncode, proc.stderr.strip())
            assert proc.returncode == 2, (spec, proc.returncode, proc.stdout, proc.stderr)
            assert proc.stderr.count("\n") == 1 and words in proc.stderr, proc.stderr
            assert (lab.save(4), lab.save(6)) == before, "%s changed iptables" % spec
        out = _ok(lab.firewall(pyz, "--no-persist", "--allow", "[64:ff9b::c0a8:101]"))
        said = out.stdout + out.stderr
        assert "the LAN is NOT fully blocked: the container reaches 64:ff9b::c0a8:101 (NAT64 " \
               "of 192.168.1.1)" in said, said
        assert "not the LAN or this host" not in said
        out = _ok(lab.firewall(pyz, "--no-persist", "--allow", "[%s]:8080" % netlab.LAN_V6))
        assert "the LAN is NOT fully blocked: the container reaches %s" % netlab.LAN_V6 \
            in out.stdout + out.stderr
