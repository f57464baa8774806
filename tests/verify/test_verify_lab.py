"""--verify in the network-namespace lab (tests/lab/netlab.py), run as users run it: the BUILT
program's --firewall, then --verify, in the lab's host namespace.

The probe part runs from the lab's container namespace: the lab has no Docker, so --verify's
test mode (CLAW_CAGE_PROBE_NETNS) runs the same PROBE_JS with the host's node inside that
namespace instead of in a throwaway container. Targets, timeouts and verdicts are unchanged.

What is proven:
- control: before --firewall, every probe that must be blocked FAILS (its target answers), so
  each later `blocked` is a real block, not a dead address;
- on the correct setup every row passes (audit rows may warn) and the exit is 0;
- each deliberate breakage turns exactly the expected rows to `fail` (exit 7) or `warn`: the rule
  row it breaks, plus the probe rows whose packets now get through - only when both anchors are
  broken - (and no other row changes);
- --allow and --profile local-only, persisted by --firewall, are what --verify expects;
- without root, the firewall rows say `skip` (not pass) and why.
The lab only holds addresses in namespaces it made; nothing leaves them.
"""

import ipaddress
import json
import os
import shutil
import subprocess

import pytest

from conftest import PYTHON, ROOT
from lab import netlab

EXIT_VERIFY = 7
HOST_ADDRS = (netlab.HOST_LAN_SIDE, "172.30.0.1")   # the host itself: INPUT, not FORWARD
INTERNET = "api.lab.test"                            # stands for an internet API (the wan ns)
# Addresses --verify probes that the lab's lan namespace does not already hold.
EXTRA_LAN_ADDRS = ("10.0.0.1", "172.16.0.1")


class Cage:
    """A lab with claw-cage installed the way a correct deployment looks, and --verify."""

    def __init__(self, lab, pyz):
        self.lab, self.pyz = lab, pyz
        self.dir = lab.compose_dir
        self.overlay = os.path.join(lab.tmp, "etc")   # /etc for the program: persistence lands here
        self.gateway = None
        self._etc_netns = []
        try:
            self._build()
        except BaseException:
            self.close()
            raise

    def _build(self):
        lab = self.lab
        h = lab.host
        # the host's LAN: default route via the "home router" in the lan namespace
        lab.sh(h, "ip route add default via 10.255.0.2")
        lab.sh(lab.lan, "\n".join("ip addr add %s/32 dev lo" % a for a in EXTRA_LAN_ADDRS))
        # publish the gateway as `127.0.0.1:18789:18789` does (the lab publishes it LAN-wide)
        lab.sh(h, "iptables -t nat -F PREROUTING\n"
                  "iptables -t nat -A OUTPUT -d 127.0.0.1/32 -p tcp -m tcp --dport 18789 -j DNAT "
                  "--to-destination 172.30.0.2:18789")
        self.listen_gateway("127.0.0.1")
        env = os.path.join(self.dir, ".env")
        with open(env, "w") as f:
            f.write("OPENCLAW_GATEWAY_TOKEN=%s\n" % ("ab" * 32))
        os.chmod(env, 0o600)
        # the internet API's name resolves to the wan address, in the host and container ns
        for ns in (lab.host, lab.ctr):
            d = os.path.join("/etc/netns", ns)
            os.makedirs(d)
            self._etc_netns.append(d)
            with open(os.path.join(d, "hosts"), "w") as f:
                f.write("127.0.0.1 localhost\n%s %s\n" % (netlab.WAN_V4, INTERNET))

    def listen_gateway(self, address):
        if self.gateway:
            self.gateway.kill()
            self.gateway.wait()
        code = ("import socket, sys; s = socket.socket(); s.bind((sys.argv[1], 18789)); "
                "s.listen(8); print('ready', flush=True); sys.stdin.read()")
        self.gateway = subprocess.Popen(["ip", "netns", "exec", self.lab.host, PYTHON, "-c", code,
                                         address], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        universal_newlines=True)
        assert self.gateway.stdout.readline().strip() == "ready"

    def firewall(self, *extra):
        p = self.lab.run_program([PYTHON, self.pyz, "--firewall", "--dir", self.dir] + list(extra),
                                 etc_overlay=self.overlay)
        assert p.returncode == 0, p.stderr
        return p

    def verify(self, *extra, user=None, stderr=None):
        """(exit code, {check: (status, detail)}, stdout) of --verify --json. stderr: a list
        that gets the run's standard error appended."""
        env_before = dict(os.environ)
        os.environ.update({"CLAW_CAGE_PROBE_NETNS": self.lab.ctr,
                           "CLAW_CAGE_INTERNET_PROBE": "%s:%d" % (INTERNET, netlab.TCP_PORT)})
        try:
            p = self.lab.run_program([PYTHON, self.pyz, "--verify", "--dir", self.dir] +
                                     list(extra), etc_overlay=self.overlay, user=user)
        finally:
            os.environ.clear()
            os.environ.update(env_before)
        if stderr is not None:
            stderr.append(p.stderr)
        if "--json" not in extra:
            return p.returncode, None, p.stdout
        rows = json.loads(p.stdout)
        assert all(set(r) == {"check", "status", "detail"} for r in rows)
        return p.returncode, dict((r["check"], (r["status"], r["detail"])) for r in rows), p.stdout

    def close(self):
        if self.gateway:
            self.gateway.kill()
            self.gateway.wait()
        for d in self._etc_netns:
            shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def cage(pyz):
    netlab.require_lab()
    if not shutil.which("node"):
        pytest.fail("node is needed: --verify's probe script runs with it (apt-get install nodejs)")
    with netlab.Lab() as lab:
        c = Cage(lab, pyz)
        try:
            yield c
        finally:
            c.close()


def failing(rows):
    return set(k for k, (status, _) in rows.items() if status == "fail")


def _blocked_names(rows):
    return set(k for k, (s, d) in rows.items() if k.startswith("probe ")
               and (d.startswith("blocked") or d.startswith("REACHABLE")))


def test_control_then_correct_setup(cage):
    # control run: Docker's chains, no claw-cage rules. Every must-block probe gets through.
    code, before, _ = cage.verify("--json")
    assert code == EXIT_VERIFY
    must_block = _blocked_names(before)
    assert len(must_block) >= 10, sorted(before)
    for name in must_block:
        assert before[name][0] == "fail", (name, before[name])
    assert before["probe internet %s:%d" % (INTERNET, netlab.TCP_PORT)][0] == "pass"

    cage.firewall()
    code, after, _ = cage.verify("--json")
    assert failing(after) == set(), dict((k, after[k]) for k in failing(after))
    assert code == 0
    assert _blocked_names(after) == must_block
    for name in must_block:
        assert after[name][0] == "pass" and after[name][1].startswith("blocked"), after[name]
    for name in ("firewall backend", "firewall rules IPv4", "firewall rules IPv6",
                 "DOCKER-USER jump", "INPUT jump", "FORWARD order", "persistence",
                 "gateway port 18789", ".env"):
        assert after[name][0] == "pass", (name, after[name])
    assert "ab" * 8 not in json.dumps(after)  # the token is never shown

    code, _, table = cage.verify()
    assert code == 0
    # kept for reviewers, like the e2e tests' tables (tests/output/ is not committed)
    out = os.path.join(ROOT, "tests", "output")
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "verify-lab.txt"), "w") as f:
        f.write(table)


def _target(name):
    """The address in a probe row's name: `probe LAN gateway 10.255.0.2:80` -> 10.255.0.2."""
    return ipaddress.ip_address(name.rsplit(" ", 1)[-1].rsplit(":", 1)[0])


def _forwarded(rows, within="0.0.0.0/0"):
    """Must-block probe rows whose packets cross FORWARD (not aimed at the host itself), to an
    address within `within`: the rows a FORWARD-side breakage must turn to fail."""
    net = ipaddress.ip_network(within)
    return set(n for n in _blocked_names(rows) if not any(" %s:" % a in n for a in HOST_ADDRS)
               and _target(n) in net)


BREAKAGES = {
    # name: (shell run in the host ns, rule rows that must fail, rows that must turn to warn,
    #        the range whose forwarded probes must now fail too, or None). Either anchor alone
    #        blocks: packets get through only when both are broken.
    "DROP rule deleted": (
        "iptables -D CLAW-CAGE-FWD -d 10.0.0.0/8 -j DROP",
        {"firewall rules IPv4"}, set(), None),  # its --ctorigdst twin still drops the packets
    "both 10/8 DROP rules of the second anchor deleted": (
        "iptables -D CLAW-CAGE-FWD -d 10.0.0.0/8 -j DROP\n"
        "iptables -D CLAW-CAGE-FWD -m conntrack --ctorigdst 10.0.0.0/8 -j DROP",
        {"firewall rules IPv4"}, set(), None),  # the first anchor drops 10/8 before routing
    "10/8 DROP rules of both anchors deleted (packets pass)": (
        "iptables -D CLAW-CAGE-FWD -d 10.0.0.0/8 -j DROP\n"
        "iptables -D CLAW-CAGE-FWD -m conntrack --ctorigdst 10.0.0.0/8 -j DROP\n"
        "iptables -t mangle -D CLAW-CAGE-PRE -d 10.0.0.0/8 -j DROP",
        {"firewall rules IPv4"}, set(), "10.0.0.0/8"),
    "DOCKER-USER jump deleted": (
        "iptables -D DOCKER-USER -i claw-cage0 -j CLAW-CAGE-FWD",
        {"DOCKER-USER jump"}, set(), None),     # the first anchor holds
    "PREROUTING jump deleted": (
        "iptables -t mangle -D PREROUTING -i claw-cage0 -j CLAW-CAGE-PRE",
        {"PREROUTING jump"}, {"neighbours"}, None),  # the second anchor holds
    "both anchors' forward jumps deleted (packets pass)": (
        "iptables -t mangle -D PREROUTING -i claw-cage0 -j CLAW-CAGE-PRE\n"
        "iptables -D DOCKER-USER -i claw-cage0 -j CLAW-CAGE-FWD",
        {"PREROUTING jump", "DOCKER-USER jump"}, {"neighbours"}, "0.0.0.0/0"),
    "ACCEPT for the bridge above the jump in FORWARD": (
        "iptables -I FORWARD 1 -i claw-cage0 -j ACCEPT",
        set(), {"FORWARD order"}, None),        # second anchor bypassed; the first holds
    "Tailscale's ts-forward above DOCKER-USER": (
        "iptables -N ts-forward\n"
        "iptables -A ts-forward -o tailscale0 -j ACCEPT\n"
        "iptables -I FORWARD 1 -j ts-forward",
        set(), {"FORWARD order"}, None),        # no tailscale0 in the lab: no packet changes
    "IPv6 DOCKER-USER jump deleted": (
        "ip6tables -D DOCKER-USER -i claw-cage0 -j CLAW-CAGE-FWD",
        {"DOCKER-USER jump"}, set(), None),     # the probes are IPv4: claw-net has no IPv6
    "INPUT jump deleted": (
        "iptables -D INPUT -i claw-cage0 -j CLAW-CAGE-IN",
        {"INPUT jump"}, set(), None),           # the first anchor drops LOCAL destinations
    "INPUT and PREROUTING jumps deleted (host reached)": (
        "iptables -D INPUT -i claw-cage0 -j CLAW-CAGE-IN\n"
        "iptables -t mangle -D PREROUTING -i claw-cage0 -j CLAW-CAGE-PRE",
        {"INPUT jump", "PREROUTING jump"}, {"neighbours"}, "host"),  # the host itself answers
}


@pytest.mark.parametrize("breakage", sorted(BREAKAGES))
def test_breakage_fails_exactly_its_rows(cage, breakage):
    script, rule_rows, warned, leaks = BREAKAGES[breakage]
    cage.firewall()
    code, good, _ = cage.verify("--json")
    assert code == 0 and failing(good) == set()
    cage.lab.sh(cage.lab.host, script)
    code, bad, _ = cage.verify("--json")
    if leaks == "host":
        leaked = _blocked_names(good) - _forwarded(good)
    else:
        leaked = _forwarded(good, leaks) if leaks else set()
    expected = set(rule_rows) | leaked
    assert failing(bad) == expected, (sorted(failing(bad)), sorted(expected))
    assert code == (EXIT_VERIFY if expected else 0)
    assert set(k for k, (st, _) in bad.items() if st == "warn") - \
        set(k for k, (st, _) in good.items() if st == "warn") == warned
    if leaks:
        assert len(expected) > len(rule_rows)  # the packets really got through
    if "ts-forward" in script:                 # named, and the cage holds despite it
        assert bad["neighbours"][0] == "pass" and "Tailscale (ts-forward)" in bad["neighbours"][1]
    # every other row kept its verdict
    for name, (status, _) in good.items():
        if name not in expected | warned:
            assert bad[name][0] == status, (name, good[name], bad[name])


def test_a_harmless_chain_above_docker_user_is_no_failure(cage):
    """The FORWARD-order check looks into the chains it meets: logging and dropping is fine."""
    cage.firewall()
    cage.lab.sh(cage.lab.host, "iptables -N audit\n"
                               "iptables -A audit -j LOG --log-prefix fwd\n"
                               "iptables -A audit -i claw-cage0 -p udp --dport 9 -j DROP\n"
                               "iptables -I FORWARD 1 -j audit")
    code, rows, _ = cage.verify("--json")
    assert code == 0 and rows["FORWARD order"][0] == "pass", rows["FORWARD order"]


def test_gateway_on_all_addresses_fails_the_port_row(cage):
    cage.firewall()
    code, good, _ = cage.verify("--json")
    assert code == 0 and good["gateway port 18789"][0] == "pass"
    cage.listen_gateway("0.0.0.0")
    code, bad, _ = cage.verify("--json")
    assert failing(bad) == {"gateway port 18789"}, sorted(failing(bad))
    assert "0.0.0.0:18789" in bad["gateway port 18789"][1] and code == EXIT_VERIFY


def test_gateway_forwarded_from_all_addresses_fails_the_port_row(cage):
    """Docker with userland-proxy off publishes `18789:18789` with a DNAT rule alone, and no
    socket listens: only the nat table shows the exposure."""
    cage.firewall()
    cage.lab.sh(cage.lab.host, "iptables -t nat -A PREROUTING -p tcp -m tcp --dport 18789 "
                               "-j DNAT --to-destination 172.30.0.2:18789")
    code, bad, _ = cage.verify("--json")
    assert failing(bad) == {"gateway port 18789"}, sorted(failing(bad))
    assert "DNAT" in bad["gateway port 18789"][1] and code == EXIT_VERIFY


def test_env_readable_by_others_fails_the_env_row(cage):
    cage.firewall()
    os.chmod(os.path.join(cage.dir, ".env"), 0o644)
    code, bad, _ = cage.verify("--json")
    assert failing(bad) == {".env"} and code == EXIT_VERIFY
    assert "644" in bad[".env"][1]


def test_allow_and_local_only_come_from_the_persisted_configuration(cage):
    lan_host = "192.168.1.1"
    cage.firewall("--profile", "local-only", "--allow", "%s:%d" % (lan_host, netlab.TCP_PORT),
                  "--allow", "host:%d" % netlab.TCP_PORT)
    # local-only also installs the egress proxy (its Egress rows: tests/egress); these are the
    # rules it keeps on the bridge as the second layer, judged as for anything attached there
    os.unlink(os.path.join(cage.overlay, "upper", "claw-cage", "proxy.json"))
    env = os.path.join(cage.dir, ".env")
    with open(env) as f:
        kept = [l for l in f if l != "COMPOSE_FILE=docker-compose.api-only.yml\n"]
    with open(env, "w") as f:   # the lab's compose dir has no api-only stack
        f.writelines(kept)
    code, rows, _ = cage.verify("--json")
    assert failing(rows) == set(), dict((k, rows[k]) for k in failing(rows))
    allowed = [k for k in rows if k.startswith("probe allowed ")]
    assert sorted(allowed) == ["probe allowed %s:%d" % (lan_host, netlab.TCP_PORT),
                               "probe allowed host:%d" % netlab.TCP_PORT]
    for name in allowed:
        assert rows[name][1].startswith("reachable"), rows[name]
    internet = rows["probe internet %s:%d" % (INTERNET, netlab.TCP_PORT)]
    assert internet[0] == "pass" and internet[1].startswith("blocked")  # local-only
    # the same live rules judged against the defaults (persistence removed) do not match:
    # proof that the allow list and profile really came from the persisted file
    shutil.rmtree(os.path.join(cage.overlay, "upper", "claw-cage"))
    code, rows, _ = cage.verify("--json")
    assert {"firewall rules IPv4", "persistence"} <= failing(rows)


def test_verify_reads_the_host_firewall_once(cage):
    """Each iptables flavour's tables are read by one bare *-save (the rows and the gateway
    port's DNAT check share it: no second `-t nat` read), and `iptables -V` runs at most once
    per tool. -v logs every command the program runs."""
    cage.firewall()
    err = []
    cage.verify("-v", stderr=err)
    commands = [l.strip()[2:] for l in err[0].splitlines() if l.strip().startswith("$ ")]
    saves = [c for c in commands if c.split()[0].endswith("tables-save") or "tables-" in
             c.split()[0] and c.split()[0].endswith("-save")]
    versions = [c for c in commands if c.endswith(" -V")]
    assert saves and all(len(c.split()) == 1 for c in saves), saves   # bare: every table
    assert len(set(saves)) == len(saves), saves
    assert len(set(versions)) == len(versions), versions


def test_not_root_says_skip_not_pass(cage):
    cage.firewall()
    os.chmod(cage.lab.tmp, 0o755)
    os.chmod(cage.dir, 0o755)
    cage.pyz = shutil.copy(cage.pyz, os.path.join(cage.lab.tmp, "claw-cage.pyz"))
    os.chmod(cage.pyz, 0o644)
    code, rows, _ = cage.verify("--json", user=65534)
    for name in ("firewall backend", "firewall rules IPv4", "PREROUTING jump", "DOCKER-USER jump",
                 "INPUT jump", "FORWARD order", "neighbours"):
        assert rows[name][0] == "skip" and "sudo" in rows[name][1], rows[name]
    assert rows[".env"][0] == "skip"            # root's 600 file: unreadable, not "fine"
    assert rows["persistence"][0] == "pass"     # world-readable files under /etc
    assert rows["probes"][0] == "skip"         # test mode needs root for `ip netns exec`
    # nothing fails, but the packet probes could not run: incomplete, never "ok" (issue 11)
    assert code == 9 and failing(rows) == set()


def _state(lab):
    """Everything --verify could change in the host ns: every table of both families (nf_tables
    view), which legacy tables exist, the files under the program's /etc overlay."""
    legacy = lab.sh(lab.host, "cat /proc/net/ip_tables_names /proc/net/ip6_tables_names "
                              "2>/dev/null || true").stdout
    return lab.save(4), lab.save(6), sorted(legacy.split())


def test_verify_changes_nothing(cage):
    before = _state(cage.lab)
    code, _, _ = cage.verify("--json")           # control state: no claw-cage rules
    assert code == EXIT_VERIFY and _state(cage.lab) == before
    cage.firewall()
    etc = os.path.join(cage.overlay, "upper")
    files = sorted(os.path.join(d, f) for d, _, fs in os.walk(etc) for f in fs)
    before = _state(cage.lab)
    code, _, _ = cage.verify("--json")
    assert code == 0 and _state(cage.lab) == before
    assert sorted(os.path.join(d, f) for d, _, fs in os.walk(etc) for f in fs) == files


def _flush_ruleset(lab):
    """What `nft flush ruleset` does to a host: every table of both families gone, so every
    chain Docker made (and FORWARD's jump to DOCKER-USER) too. iptables-nft sees it as empty
    tables; a legacy-iptables host is given the same end state table by table."""
    if "nf_tables" in lab.exec(lab.host, [lab.backend, "-V"]).stdout:
        lab.exec(lab.host, ["nft", "flush", "ruleset"])
        return
    for ipt in (lab.backend, lab.ip6tables):
        for table in ("filter", "nat", "mangle"):
            lab.sh(lab.host, "%s -w -t %s -F && %s -w -t %s -X" % (ipt, table, ipt, table))
        lab.sh(lab.host, "for c in INPUT FORWARD OUTPUT; do %s -w -P $c ACCEPT; done" % ipt)


def test_judged_twice_only_when_forward_reaches_docker_user(cage):
    """After a flush of the whole ruleset and a re-apply, the second anchor's rules are in
    DOCKER-USER but FORWARD no longer jumps there: no packet meets them. The run must not say
    "judged twice" and --verify must fail the DOCKER-USER row, naming the fix; packets prove
    that the second anchor really judges nothing then. Control: the same before the flush."""
    lab = cage.lab
    lan = netlab.Probe("lan", lab.ctr, "tcp", "10.1.2.3", netlab.TCP_PORT)
    wan = netlab.Probe("wan", lab.ctr, "tcp", netlab.WAN_V4, netlab.TCP_PORT)
    no_first_anchor = "iptables -t mangle -D PREROUTING -i claw-cage0 -j CLAW-CAGE-PRE"

    p = cage.firewall()                                 # control: Docker's jump in place
    assert "judged twice" in p.stdout and "judged once" not in p.stdout, p.stdout
    code, rows, _ = cage.verify("--json")
    assert code == 0 and rows["DOCKER-USER jump"][0] == "pass", rows["DOCKER-USER jump"]
    lab.sh(lab.host, no_first_anchor)                   # the second anchor alone still blocks
    seen = lab.probe([lan, wan], retry=[wan])
    assert seen == {lan: False, wan: True}, seen

    _flush_ruleset(lab)
    p = cage.firewall()                                 # re-apply: exit 0, but one anchor
    assert "judged twice" not in p.stdout, p.stdout
    # IPv4 only: after the flush no chain of Docker's is left in ip6tables either, and IPv6
    # where Docker keeps no chain is judged by the first anchor alone (host.parent_reached)
    assert "warning: judged once, by mangle PREROUTING: FORWARD does not jump to DOCKER-USER " \
           "(IPv4)" in p.stdout, p.stdout
    assert "restart docker" in p.stdout
    code, rows, _ = cage.verify("--json")
    status, detail = rows["DOCKER-USER jump"]
    assert code == EXIT_VERIFY and status == "fail", rows["DOCKER-USER jump"]
    assert "FORWARD does not jump to DOCKER-USER" in detail and "restart Docker" in detail
    lab.sh(lab.host, no_first_anchor)                   # and indeed nothing judges it now
    seen = lab.probe([lan, wan], retry=[wan, lan])
    assert seen == {lan: True, wan: True}, seen

    lab.dockerd_start()                                 # the fix named: Docker puts it back
    p = cage.firewall()
    assert "judged twice" in p.stdout and "judged once" not in p.stdout, p.stdout
    code, rows, _ = cage.verify("--json")
    assert rows["DOCKER-USER jump"][0] == "pass", rows["DOCKER-USER jump"]
