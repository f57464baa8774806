"""--verify's building blocks, each checked against the real thing it reads: the probe script run
by real node against servers on 127.0.0.1, /proc/net/tcp of real listening sockets, rules read
back from real iptables in a throwaway network namespace, /proc/net/route of a namespace with a
known default route. No internet: every packet goes to 127.0.0.0/8 or into a namespace made here.
"""

import http.server
import ipaddress
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import uuid

import pytest

from conftest import ROOT, require_root

sys.path.insert(0, os.path.join(ROOT, "bootstrap"))

from claw_cage.firewall import readback  # noqa: E402
from claw_cage.verify import (audit, container, exposure, probe_plan, probes,  # noqa: E402
                              report)

NODE = shutil.which("node")


# ---- PROBE_JS with real node ----------------------------------------------------------------

@pytest.fixture
def http_server():
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            code = 200 if self.path == "/healthz" else 503
            self.send_response(code)
            self.end_headers()
            self.wfile.write(b"secret-body-must-not-leak")

        def log_message(self, *a):
            pass
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield srv.server_address[1]
    srv.shutdown()


def node_probe(*args):
    if not NODE:
        pytest.skip("node is not installed (tests/apt-packages.txt lists nodejs)")
    started = time.monotonic()
    proc = subprocess.run([NODE, "-e", probes.PROBE_JS] + [str(a) for a in args],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, timeout=30)
    return proc, time.monotonic() - started


def test_probe_http_2xx_passes_and_5xx_fails_without_leaking_the_body(http_server):
    ok, _ = node_probe("http", "http://127.0.0.1:%d/healthz" % http_server, 3000)
    bad, _ = node_probe("http", "http://127.0.0.1:%d/other?token=abc" % http_server, 3000)
    assert ok.returncode == 0, ok.stderr
    assert bad.returncode == 1
    assert bad.stderr.strip() == "HTTP 503"
    for proc in (ok, bad):
        assert "secret" not in proc.stdout + proc.stderr and "token" not in proc.stderr


def test_probe_tcp_open_refused_and_silent():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]
    opened, _ = node_probe("tcp", "127.0.0.1", port, 3000)
    assert opened.returncode == 0
    listener.close()
    refused, _ = node_probe("tcp", "127.0.0.1", port, 3000)
    assert (refused.returncode, refused.stderr.strip()) == (1, "ECONNREFUSED")


def test_probe_timeout_is_bounded():
    # A listener that never accepts and whose backlog is full: the handshake never completes,
    # like a silently dropped SYN. The probe must give up at its timeout, not hang.
    full = socket.socket()
    full.bind(("127.0.0.1", 0))
    full.listen(0)
    port = full.getsockname()[1]
    fillers = []
    for _ in range(4):
        s = socket.socket()
        s.setblocking(False)
        s.connect_ex(("127.0.0.1", port))
        fillers.append(s)
    proc, took = node_probe("http", "http://127.0.0.1:%d/" % port, 700)
    assert proc.returncode == 1
    assert 0.6 < took < 3.0, took
    for s in fillers + [full]:
        s.close()


def test_probe_dns_and_usage():
    ok, _ = node_probe("dns", "localhost", 3000)
    bad, _ = node_probe("dns", "no-such-name.invalid", 3000)
    usage, _ = node_probe("ftp", "x", 1)
    assert ok.returncode == 0
    assert bad.returncode == 1 and bad.stderr.strip() == "ENOTFOUND"
    assert usage.returncode == 2


def test_run_probe_reads_exit_codes_like_the_protocol(tmp_path):
    """run_probe on real commands: exit 0 reached, 1 not reached (reason kept), else unknown."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]
    if not NODE:
        pytest.skip("node is not installed")
    p = probes.Probe("x", "tcp", ("127.0.0.1", port), False, "why")
    argv = [NODE, "-e", probes.PROBE_JS] + p.protocol_args(2000)
    assert probes.run_probe(argv).reached is True
    listener.close()
    out = probes.run_probe(argv)
    assert (out.reached, out.reason) == (False, "ECONNREFUSED")
    assert probes.run_probe(["/nonexistent/docker"]).reached is None
    assert probes.run_probe(["sh", "-c", "exit 125"]).reached is None
    assert probes.run_probe(["sleep", "5"], timeout=0.3).reached is None


def test_docker_argv_shapes():
    p = probes.Probe("x", "tcp", ("10.0.0.1", 80), False, "why")
    q = probes.Probe("y", "dns", ("api.example",), True, "why")
    for argv, entry in ((probes.docker_argv("claw-cage_claw-net", "sha256:abc", p, ms=1500),
                         "node"),
                        (probes.batch_docker_argv("claw-cage_claw-net", "sha256:abc", [p, q],
                                                  ms=1500), "sh")):
        i = argv.index("sha256:abc")
        assert argv[:2] == ["docker", "run"] and "--rm" in argv[:i]
        assert argv[argv.index("--network") + 1] == "claw-cage_claw-net"
        assert argv[argv.index("--entrypoint") + 1] == entry
        assert argv[argv.index("--user") + 1] == "1000:1000"
        assert argv[argv.index("--pull") + 1] == "never"
        assert "--read-only" in argv[:i] and argv[argv.index("--cap-drop") + 1] == "ALL"
        tail = argv[i + 1:]
    assert tail == ["-c", probes.BATCH_SH, "sh", probes.PROBE_JS, "tcp 10.0.0.1 80 1500",
                    "dns api.example 1500"]
    with pytest.raises(ValueError):
        probes.spec(probes.Probe("z", "dns", ("a b; reboot",), True, "why"))


def test_batch_runs_each_probe_with_real_sh_and_node(http_server):
    """BATCH_SH as --verify runs it (here with the host's sh and node, as in test mode)."""
    if not NODE:
        pytest.skip("node is not installed")
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    closed_port = closed.getsockname()[1]
    closed.close()
    plan = [probes.Probe("a", "http", ("http://127.0.0.1:%d/healthz" % http_server,), True, ""),
            probes.Probe("b", "tcp", ("127.0.0.1", closed_port), False, ""),
            probes.Probe("c", "http", ("http://127.0.0.1:%d/x" % http_server,), True, ""),
            probes.Probe("d", "dns", ("localhost",), True, ""),
            probes.Probe("e", "dns", ("no-such-name.invalid",), True, "")]
    argv = ["sh", "-c", probes.BATCH_SH, "sh", probes.PROBE_JS] + [probes.spec(p) for p in plan]
    got = [(o.reached, o.reason) for o in probes.run_batch(argv, len(plan), timeout=20)]
    assert got == [(True, "connected"), (False, "ECONNREFUSED"), (False, "HTTP 503"),
                   (True, "connected"), (False, "ENOTFOUND")]
    with pytest.raises(probes.NoShell):
        probes.run_batch(["sh", "-c", "echo 'sh: not found' >&2; exit 127"], 2)
    lost = probes.run_batch(["sh", "-c", "echo ready; echo '1 1 ETIMEDOUT'; exit 125"], 2)
    assert [o.reached for o in lost] == [None, False]
    # Without READY the container never started: no line counts, whatever it printed.
    unstarted = probes.run_batch(["sh", "-c", "echo '1 1 ETIMEDOUT'; exit 125"], 2)
    assert [o.reached for o in unstarted] == [None, None]
    assert unstarted[0].reason.startswith("the probe container did not start")


def test_netns_name_is_validated():
    assert probes.test_netns({}) is None
    assert probes.test_netns({probes.NETNS_ENV: "lab-ctr"}) == "lab-ctr"
    with pytest.raises(ValueError):
        probes.test_netns({probes.NETNS_ENV: "x; rm -rf /"})


# ---- verdicts ---------------------------------------------------------------------------------

def test_judge_refused_counts_as_reached():
    must_block = probes.Probe("lan", "tcp", ("10.0.0.1", 80), False, "RFC 1918")

    def status(reached, reason, probe=must_block):
        return probe_plan.judge(probe, probes.Outcome(reached, reason)).status
    assert status(False, "ETIMEDOUT") == "pass"
    assert status(False, "ECONNREFUSED") == "fail"         # something answered
    assert status(False, "HTTP 404") == "fail"
    assert status(True, "connected") == "fail"
    assert status(False, "EHOSTUNREACH") == "warn"         # an ICMP error: not a silent drop
    assert status(None, "no docker") == "skip"
    # a node crash exits 1 too, with a stack trace: it must never read as "blocked"
    assert status(False, "Node.js v20.20.2") == "skip"
    must_reach = probes.Probe("wan", "tcp", ("203.0.113.10", 443), True, "internet")
    assert status(True, "connected", must_reach) == "pass"
    assert status(False, "ETIMEDOUT", must_reach) == "fail"
    assert status(False, "ENOTFOUND", must_reach) == "fail"
    dns = probes.Probe("dns", "dns", ("example.org",), True, "names")
    assert status(False, "ENOTFOUND", dns) == "fail"
    assert status(True, "connected", dns) == "pass"
    soft = probes.Probe("dns", "dns", ("example.org",), True, "names", soft=True)
    assert status(False, "EAI_AGAIN", soft) == "warn"


def test_plan_covers_every_range_and_skips_allowed_destinations():
    from claw_cage.firewall import allow
    view = probe_plan.HostView("192.168.1.1", "192.168.1.20", "172.30.0.1")
    allows = allow.parse_all(["192.168.1.50:11434", "host:11434", "10.0.0.0/8",
                                  "[fd00::1]:53"])
    targets = probe_plan.allow_targets(allows, view.bridge_address)
    assert targets == [("192.168.1.50:11434", "192.168.1.50", 11434),
                       ("host:11434", "172.30.0.1", 11434)]
    plan = probe_plan.plan(view, targets, local_only=False, internet=("api.example", 443))
    blocked = [p.args[0] for p in plan if not p.expect_reach]
    # the LAN gateway is probed once (not again as "192.168.1.1" of the range list)
    assert blocked.count("192.168.1.1") == 1
    for special in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10",
                    "169.254.0.0/16", "192.0.0.0/24", "198.18.0.0/15"):
        net = ipaddress.ip_network(special)
        assert any(ipaddress.ip_address(a) in net for a in blocked), special
    assert "169.254.169.254" in blocked and "192.168.1.20" in blocked
    reach = [(p.mode, p.args[:2]) for p in plan if p.expect_reach]
    assert reach == [("tcp", ("192.168.1.50", "11434")), ("tcp", ("172.30.0.1", "11434")),
                     ("tcp", ("api.example", "443")), ("dns", ("api.example",))]
    literal = probe_plan.plan(view, targets, local_only=False, internet=("203.0.113.7", 443))
    assert [p.mode for p in literal if p.expect_reach] == ["tcp", "tcp", "tcp"]  # no DNS row
    local = probe_plan.plan(view, targets, local_only=True, internet=("api.example", 443))
    assert [p.expect_reach for p in local if p.mode == "tcp" and p.args[0] == "api.example"] \
        == [False]


def test_a_public_default_gateway_is_not_probed_as_the_lan():
    """A VPS's default gateway is a public address: the internet profile lets it through, so
    probing it as "LAN gateway" would fail a cage that works. Under local-only it is blocked."""
    def gateway_rows(gw, local_only):
        view = probe_plan.HostView(gw, "203.0.113.20", "172.30.0.1")
        return [p for p in probe_plan.plan(view, [], local_only, None)
                if p.name.startswith("LAN gateway")]
    assert gateway_rows("198.51.100.1", local_only=False) == []
    assert len(gateway_rows("198.51.100.1", local_only=True)) == 1
    for private in ("192.168.1.1", "10.0.0.1", "172.31.1.1", "100.64.0.1"):
        assert len(gateway_rows(private, local_only=False)) == 1, private


def test_internet_target_override():
    assert probe_plan.internet_target({}) == probe_plan.INTERNET_DEFAULT
    assert probe_plan.internet_target({probe_plan.INTERNET_ENV: "off"}) is None
    assert probe_plan.internet_target({probe_plan.INTERNET_ENV: "api.x.test:8443"}) == \
        ("api.x.test", 8443)
    for bad in ("api.x.test", ":443", "h:0", "h:99999", "a b:443", "x?y:443"):
        with pytest.raises(ValueError):
            probe_plan.internet_target({probe_plan.INTERNET_ENV: bad})


# ---- listeners and DNAT -----------------------------------------------------------------------

def _proc_net():
    text = ""
    for name in ("tcp", "tcp6"):
        with open("/proc/net/" + name) as f:
            text += f.read() if not text else "".join(f.read().splitlines(True)[1:])
    return text


@pytest.mark.parametrize("family,bind,loopback", [
    (socket.AF_INET, "127.0.0.1", True), (socket.AF_INET, "0.0.0.0", False),
    (socket.AF_INET6, "::1", True), (socket.AF_INET6, "::", False)])
def test_listeners_read_from_real_sockets(family, bind, loopback):
    s = socket.socket(family)
    s.bind((bind, 0))
    s.listen(1)
    port = s.getsockname()[1]
    try:
        found = exposure.listeners(_proc_net(), port)
    finally:
        s.close()
    assert found == [ipaddress.ip_address(bind)]
    assert exposure._is_loopback(found[0]) is loopback


def test_gateway_port_row_fails_on_a_wide_listener(tmp_path):
    s = socket.socket()
    s.bind(("0.0.0.0", 0))
    s.listen(1)
    port = s.getsockname()[1]
    try:
        wide = exposure.check_gateway_port(False, port=port)
    finally:
        s.close()
    s = socket.socket()
    s.bind(("127.0.0.1", port))
    s.listen(1)
    try:
        narrow = exposure.check_gateway_port(False, port=port)
    finally:
        s.close()
    assert wide.status == "fail" and "0.0.0.0:%d" % port in wide.detail
    assert narrow.status == "skip" and "root" in narrow.detail


def test_exposing_dnat_rules():
    save = "\n".join([
        "*nat",
        "-A DOCKER -d 127.0.0.1/32 ! -i claw-cage0 -p tcp -m tcp --dport 18789 -j DNAT "
        "--to-destination 172.30.0.2:18789",
        "-A DOCKER ! -i claw-cage0 -p tcp -m tcp --dport 18789 -j DNAT --to-destination "
        "172.30.0.2:18789",
        "-A DOCKER -d 192.168.1.20/32 -p tcp -m tcp --dport 8080 -j DNAT --to-destination "
        "172.30.0.2:18789",
        "-A DOCKER ! -d 127.0.0.1/32 -p tcp -m tcp --dport 18789 -j DNAT --to-destination "
        "172.30.0.2:18789",
        "-A DOCKER -p tcp -m tcp --dport 9000 -j DNAT --to-destination 172.17.0.2:9000",
        "COMMIT"])
    bad = exposure.exposing_dnat(save, 18789)
    assert len(bad) == 3
    assert not any(r.startswith("-A DOCKER -d 127.0.0.1/32") for r in bad)


# ---- .env ----------------------------------------------------------------------------------

def test_env_row(tmp_path):
    env = tmp_path / ".env"
    assert exposure.check_env(str(tmp_path)).status == "fail"
    env.write_text("OPENCLAW_GATEWAY_TOKEN=s3cr3t-token-value\n")
    env.chmod(0o600)
    good = exposure.check_env(str(tmp_path))
    assert good.status == "pass"
    env.chmod(0o644)
    wide = exposure.check_env(str(tmp_path))
    assert wide.status == "fail" and "644" in wide.detail
    env.chmod(0o600)
    env.write_text("OPENCLAW_GATEWAY_TOKEN=\n")
    assert exposure.check_env(str(tmp_path)).status == "fail"
    env.unlink()
    os.symlink("/etc/hostname", str(env))
    assert exposure.check_env(str(tmp_path)).status == "fail"
    for row in (good, wide):
        assert "s3cr3t" not in row.detail


# ---- docker inspect ------------------------------------------------------------------------

HARDENED = {
    "Image": "sha256:feed",
    "Config": {"User": "1000:1000"},
    "HostConfig": {"CapDrop": ["ALL"], "CapAdd": None, "SecurityOpt": ["no-new-privileges:true"],
                   "ReadonlyRootfs": True, "Memory": 2 << 30, "PidsLimit": 256,
                   "NanoCpus": 2000000000, "Privileged": False,
                   "PortBindings": {"18789/tcp": [{"HostIp": "127.0.0.1", "HostPort": "18789"}]}},
    "Mounts": [{"Source": "/home/u/claw-cage/state", "Destination": "/home/node/.openclaw"}],
    "NetworkSettings": {"Networks": {"claw-cage_claw-net": {}}},
}


def _with(path, value):
    info = json.loads(json.dumps(HARDENED))
    node = info
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return info


def test_inspect_rows_each_breakage_fails_its_own_row():
    good = container.inspect_rows(HARDENED)
    assert [r.status for r in good] == ["pass"] * len(container.CHECKS)
    breakages = {
        "capabilities": _with(("HostConfig", "CapDrop"), ["NET_RAW"]),
        "no-new-privileges": _with(("HostConfig", "SecurityOpt"), []),
        "read-only root": _with(("HostConfig", "ReadonlyRootfs"), False),
        "user": _with(("Config", "User"), ""),
        "docker socket": _with(("Mounts",), [{"Source": "/var/run/docker.sock",
                                             "Destination": "/var/run/docker.sock"}]),
        "port binding": _with(("HostConfig", "PortBindings"),
                              {"18789/tcp": [{"HostIp": "", "HostPort": "18789"}]}),
        "limits": _with(("HostConfig", "PidsLimit"), 0),
    }
    for check, info in breakages.items():
        failing = [r.check for r in container.inspect_rows(info) if r.status == "fail"]
        assert failing == ["container " + check], (check, failing)
    assert container.probe_network(HARDENED) == ("claw-cage_claw-net", "sha256:feed")


# ---- audit -----------------------------------------------------------------------------------

def test_sshd_first_value_wins_and_includes(tmp_path):
    inc = tmp_path / "d"
    inc.mkdir()
    (inc / "50-cloud.conf").write_text("PasswordAuthentication yes\n")
    main = tmp_path / "sshd_config"
    main.write_text("Include %s/*.conf\nPasswordAuthentication no\nPermitRootLogin no\n"
                    "Match User bob\n  PermitRootLogin yes\n" % inc)
    conf = audit.sshd_settings(str(main))
    assert conf["passwordauthentication"] == "yes"  # the include came first: it wins
    assert conf["permitrootlogin"] == "no"          # the Match block is not global
    rows = {r.check: r.status for r in audit.check_sshd(str(main))}
    assert rows == {"sshd password login": "warn", "sshd root login": "pass"}


def test_audit_rows_never_fail(tmp_path):
    daemon = tmp_path / "daemon.json"
    daemon.write_text(json.dumps({"icc": False, "no-new-privileges": True,
                                  "live-restore": True}))   # what --harden-docker writes
    assert audit.check_daemon(str(daemon))[0].status == "pass"
    daemon.write_text("{}")
    soft = audit.check_daemon(str(daemon))[0]
    assert soft.status == "warn" and "icc=true" in soft.detail
    daemon.write_text("{not json")
    assert audit.check_daemon(str(daemon))[0].status == "skip"
    with open("/proc/net/if_inet6") as f:
        text = f.read()
    for addr_if, addr in audit.global_ipv6(text):
        assert not ipaddress.ip_address(addr).is_link_local
    assert audit.check_ufw(str(tmp_path / "none"))[0].status == "warn"


# ---- reading iptables back -----------------------------------------------------------------

@pytest.fixture
def scratch_ns():
    require_root("reads rules back from real iptables in a network namespace")
    name = "ccv-%s" % uuid.uuid4().hex[:6]
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name])


def _ns(name, *argv, **kw):
    return subprocess.run(["ip", "netns", "exec", name] + list(argv), check=True,
                          stdout=subprocess.PIPE, universal_newlines=True, **kw).stdout


SPELLINGS = [
    "-m conntrack --ctstate ESTABLISHED,RELATED -j RETURN",
    "-i claw-cage0 -d 10.0.0.0/8 -j DROP",
    "-d 192.168.1.50 -p tcp --dport 11434 -j RETURN",
    "-p udp -d 192.168.1.50/32 --dport 53 -j RETURN",
    "-d 255.255.255.255 -j DROP",
    "-s 172.30.0.0/24 -d 172.30.0.0/24 -j RETURN",
    "! -i claw-cage0 -j RETURN",
    "-m addrtype --dst-type LOCAL -j DROP",
]


def test_canonical_matches_what_iptables_reads_back(scratch_ns):
    _ns(scratch_ns, "iptables", "-N", "T")
    for rule in SPELLINGS:
        _ns(scratch_ns, "iptables", "-A", "T", *rule.split())
    back = readback.parse_tables(_ns(scratch_ns, "iptables-save", "-t", "filter"))["filter"]["T"]
    assert back != SPELLINGS  # iptables really does rewrite them...
    missing, unexpected, same_order = readback.diff_chain(SPELLINGS, back)
    assert (missing, unexpected, same_order) == ([], [], True)  # ...and canonical() sees through
    # and a real difference is still a difference
    changed = SPELLINGS[:1] + ["-i claw-cage0 -d 10.0.0.0/9 -j DROP"] + SPELLINGS[2:]
    missing, unexpected, _ = readback.diff_chain(changed, back)
    assert missing == ["-i claw-cage0 -d 10.0.0.0/9 -j DROP"] and len(unexpected) == 1
    swapped = [SPELLINGS[1], SPELLINGS[0]] + SPELLINGS[2:]
    assert readback.diff_chain(swapped, back) == ([], [], False)


SUBNET = ipaddress.ip_network("172.30.0.0/24")


@pytest.mark.parametrize("rule,dangerous", [
    ("-j ts-forward", True),                                   # Tailscale's jump
    ("-i claw-cage0 -j ACCEPT", True),
    ("-i claw+ -j ACCEPT", True),
    ("! -i eth0 -j ACCEPT", True),
    ("-s 172.30.0.0/16 -j ACCEPT", True),
    ("-i docker0 -j ACCEPT", False),
    ("! -i claw-cage0 -j ACCEPT", False),
    ("-s 10.0.0.0/8 -j ACCEPT", False),
    ("! -s 172.16.0.0/12 -j ACCEPT", False),
    ("-o claw-cage0 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT", False),
    ("-m conntrack --ctstate NEW,ESTABLISHED -j ACCEPT", True),
    ("-i claw-cage0 -j DROP", False),
    ("-j LOG --log-prefix x", False),
])
def test_may_accept_bridge(rule, dangerous):
    assert readback.may_accept_bridge(rule, "claw-cage0", SUBNET) is dangerous


def test_may_accept_bridge_looks_into_the_chains_it_jumps_to():
    # Tailscale's chain as tailscaled writes it (netfilter mode on)
    chains = {"ts-forward": ["-i tailscale0 -j MARK --set-xmark 0x40000/0xff0000",
                             "-m mark --mark 0x40000/0xff0000 -j ACCEPT",
                             "-s 100.64.0.0/10 -o tailscale0 -j DROP",
                             "-o tailscale0 -j ACCEPT"],
              "audit": ["-j LOG --log-prefix fwd", "-i claw-cage0 -j DROP"],
              "outer": ["-j audit", "-j inner"], "inner": ["-p tcp -j ACCEPT"]}
    assert readback.may_accept_bridge("-j ts-forward", "claw-cage0", SUBNET, chains)
    assert not readback.may_accept_bridge("-j audit", "claw-cage0", SUBNET, chains)
    assert readback.may_accept_bridge("-j outer", "claw-cage0", SUBNET, chains)
    assert not readback.may_accept_bridge("-i eth0 -j outer", "claw-cage0", SUBNET, chains)
    assert readback.may_accept_bridge("-j unknown-chain", "claw-cage0", SUBNET, chains)


def test_jump_position():
    rules = ["-j ts-forward", "-j DOCKER-USER", "-i x -j DOCKER-USER"]
    assert readback.jump_position(rules, "DOCKER-USER") == [2, 3]
    assert readback.jump_position(rules, "DOCKER") == []


def test_default_gateway_from_a_real_route_table():
    require_root("reads /proc/net/route inside a namespace with a known default route")
    name = "ccv-%s" % uuid.uuid4().hex[:6]
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        _ns(name, "ip", "link", "add", "d0", "type", "veth", "peer", "name", "d1")
        _ns(name, "ip", "link", "set", "d1", "up")
        _ns(name, "ip", "addr", "add", "10.9.8.7/24", "dev", "d0")
        _ns(name, "ip", "link", "set", "d0", "up")
        _ns(name, "ip", "route", "add", "default", "via", "10.9.8.1", "metric", "50")
        _ns(name, "ip", "route", "add", "default", "via", "10.9.8.2", "metric", "10")
        text = _ns(name, "cat", "/proc/net/route")
        assert probe_plan.default_gateway(text) == "10.9.8.2"
        code = ("import sys; sys.path.insert(0, %r); from claw_cage.verify import probe_plan as p; "
                "print(p.source_address('10.9.8.2'), p.interface_address('d0'))"
                % os.path.join(ROOT, "bootstrap"))
        assert _ns(name, sys.executable, "-c", code).split() == ["10.9.8.7", "10.9.8.7"]
    finally:
        subprocess.run(["ip", "netns", "del", name])


# ---- output ----------------------------------------------------------------------------------

def test_table_and_json():
    rows = [report.Row("Host", ".env", "pass", "mode 600"),
            report.Row("Host", "gateway port 18789", "fail", "listening on 0.0.0.0:18789"),
            report.Row("Audit", "ufw", "warn", "not installed")]
    table = report.render_table(rows)
    assert "\033" not in table
    lines = table.splitlines()
    assert lines[0] == "Host" and lines[2].split()[:1] == ["FAIL"]
    assert json.loads(report.render_json(rows))[1] == {
        "check": "gateway port 18789", "status": "fail", "detail": "listening on 0.0.0.0:18789"}
    assert report.summary(rows) == "1 pass, 1 fail, 1 warn, 0 skip"


# ---- bad input: one line, exit 2, before anything is probed ----------------------------------

@pytest.mark.parametrize("args,env,says", [
    (["--dir", "/nonexistent/claw-cage"], {}, "no such directory"),
    ([], {"CLAW_CAGE_PROBE_NETNS": "x y"}, "CLAW_CAGE_PROBE_NETNS"),
    ([], {"CLAW_CAGE_INTERNET_PROBE": "api.example.com"}, "HOST:PORT"),
    ([], {"CLAW_CAGE_PROBE_START_TIMEOUT": "soon"}, "CLAW_CAGE_PROBE_START_TIMEOUT"),
])
def test_bad_input_is_one_line_and_exit_2(run_pyz, tmp_path, args, env, says):
    if "--dir" not in args:
        args = args + ["--dir", str(tmp_path)]
    p = run_pyz(["--verify"] + args, how="path", env=env, timeout=60)
    err = p.stderr.decode()
    assert p.returncode == 2, err
    assert err.count("\n") == 1 and says in err and p.stdout == b""


# ---- docker inspect of real containers (created, never started: no packet is sent) ----------

def test_inspect_rows_on_real_containers():
    from conftest import require_docker
    require_docker("reads `docker inspect` of real containers")
    from lab import e2e_support
    if not os.path.exists(e2e_support.BUSYBOX):
        pytest.skip("no %s to build a local image from" % e2e_support.BUSYBOX)
    cleanup = e2e_support.Cleanup()
    try:
        image = e2e_support.StandIn(cleanup).build()
        created = {}
        for name, flags in (
                ("hardened", ["--cap-drop", "ALL", "--security-opt", "no-new-privileges:true",
                              "--read-only", "--user", "1000:1000", "--memory", "256m",
                              "--pids-limit", "64", "-p", "127.0.0.1:18789:18789"]),
                ("loose", ["-p", "18789:18789", "-v", "/var/run/docker.sock:/var/run/docker.sock",
                           "--user", "0"])):
            cid = e2e_support.sh(["docker", "create"] + flags + [image]).stdout.strip()
            cleanup.push("remove " + name, e2e_support.sh, ["docker", "rm", "-f", cid])
            created[name] = json.loads(e2e_support.sh(["docker", "inspect", cid]).stdout)[0]
        good = dict((r.check, r.status) for r in container.inspect_rows(created["hardened"]))
        bad = dict((r.check, r.status) for r in container.inspect_rows(created["loose"]))
        assert set(good.values()) == {"pass"}, good
        assert set(bad.values()) == {"fail"}, bad
        assert container.probe_network(created["hardened"])[1] == image
    finally:
        # A build tag can outlive us when a concurrent e2e run holds the same (reproducible)
        # image in a container: harmless. A container left behind is not.
        errors = [e for e in cleanup.run() if not e.startswith("remove build tag")]
        assert not errors, errors


def test_a_crashing_probe_is_skip_never_blocked():
    """Real node, a script that throws: exit 1 like a failed connection, but it proves nothing."""
    if not NODE:
        pytest.skip("node is not installed")
    p = probes.Probe("lan", "tcp", ("127.0.0.1", 9), False, "RFC 1918")
    argv = ["sh", "-c", probes.BATCH_SH, "sh", "throw new Error('boom')", probes.spec(p)]
    outcome = probes.run_batch(argv, 1, timeout=20)[0]
    assert outcome.reached is False                 # exit 1, as a refused or dropped probe
    assert probe_plan.judge(p, outcome).status == "skip", outcome.reason


def test_broken_compose_file_is_a_target_error(run_pyz, tmp_path):
    (tmp_path / "docker-compose.yml").write_text("services: {}\n")  # no claw-cage network
    p = run_pyz(["--verify", "--dir", str(tmp_path)], how="path", timeout=60)
    assert p.returncode == 5 and p.stderr.decode().count("\n") == 1, p.stderr
