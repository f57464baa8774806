"""--proxmox: the Proxmox VM firewall file, rendered from --firewall's rule table.

Golden files (golden/*.fw) per profile and allow-list are the program's real output, run in a
network namespace whose interface holds known addresses; every line of them must pass the
parser written from pve-docs (pvefw_grammar.py), and their IP sets must hold exactly the rule
table's ranges. CLAW_CAGE_UPDATE_GOLDEN=1 rewrites the golden files instead of comparing."""

import ipaddress
import os
import shutil
import subprocess
import sys
import uuid

import pytest

import pvefw_grammar as grammar
from conftest import ROOT, require_root

sys.path.insert(0, os.path.join(ROOT, "bootstrap"))

from claw_cage.firewall import allow, rules  # noqa: E402
from claw_cage.proxmox import render  # noqa: E402

GOLDEN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "golden")
ALLOWS = ["192.168.1.50:11434", "10.0.5.0/26", "10.0.6.0/26:443", "[fd00::50]:53", "host:11434"]
CASES = {  # golden file -> (profile, allows)
    "internet.fw": ("internet", []),
    "internet-allow.fw": ("internet", ALLOWS),
    "local-only.fw": ("local-only", []),
    "local-only-allow.fw": ("local-only", ALLOWS),
}
ADMIN = "192.168.1.10"
OWN = ("192.168.1.20", "2001:db8::20")   # the namespace's interface holds these


def args_for(profile, allows):
    out = ["--proxmox", "--vmid", "105", "--admin-source", ADMIN]
    if profile != "internet":
        out += ["--profile", profile]
    for spec in allows:
        out += ["--allow", spec]
    return out


def golden(name):
    with open(os.path.join(GOLDEN, name)) as f:
        return f.read()


@pytest.fixture(scope="module")
def vm_namespace():
    """A namespace standing for the VM: one interface with OWN and a default route, and
    (through `ip netns exec`'s /etc/netns/NS/resolv.conf) a resolver on the internet."""
    require_root("a network namespace with known addresses stands for the VM")
    ns = "claw-px-" + uuid.uuid4().hex[:8]
    sh = ("ip netns add {ns} && ip -n {ns} link add eth0 type veth peer name eth1 && "
          "ip -n {ns} link set eth1 up && ip -n {ns} link set eth0 up && "
          "ip -n {ns} addr add {v4}/24 dev eth0 && "
          "ip -n {ns} addr add {v6}/64 dev eth0 nodad && "
          "ip -n {ns} route add default via 192.168.1.1 dev eth0").format(
              ns=ns, v4=OWN[0], v6=OWN[1])
    etc = os.path.join("/etc/netns", ns)
    try:
        subprocess.run(["sh", "-c", sh], check=True)
        os.makedirs(etc)
        resolv(ns, "nameserver 198.51.100.53\n")
        yield ns
    finally:
        subprocess.run(["ip", "netns", "del", ns])
        shutil.rmtree(etc, ignore_errors=True)


def resolv(ns, text):
    with open(os.path.join("/etc/netns", ns, "resolv.conf"), "w") as f:
        f.write(text)


def run_in(ns, pyz, args, env=None):
    """The built program in namespace ns, as `python3 claw-cage.pyz ARGS`."""
    return subprocess.run(["ip", "netns", "exec", ns, sys.executable, pyz] + list(args),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, env=dict(os.environ, **(env or {})),
                          timeout=60)


@pytest.mark.parametrize("name", sorted(CASES))
def test_output_is_the_golden_file(name, pyz, vm_namespace):
    res = run_in(vm_namespace, pyz, args_for(*CASES[name]))
    assert res.returncode == 0, res.stderr
    assert res.stderr == ("" if CASES[name][0] == "internet" else   # the resolver: internet
                          "warning: this file cuts the VM off from its DNS server "
                          "198.51.100.53: add --allow 198.51.100.53:53\n")
    if os.environ.get("CLAW_CAGE_UPDATE_GOLDEN") == "1":
        with open(os.path.join(GOLDEN, name), "w") as f:
            f.write(res.stdout)
    assert res.stdout == golden(name)


@pytest.mark.parametrize("name", sorted(CASES))
def test_golden_file_is_the_rule_table_in_proxmox_grammar(name):
    profile, specs = CASES[name]
    text = golden(name)
    fw = grammar.parse(text, "vm")                 # every line, or GrammarError names it
    assert fw.options == {"enable": "1", "policy_in": "DROP", "policy_out": "ACCEPT",
                          "macfilter": "1", "ipfilter": "1", "ndp": "1", "dhcp": "1"}
    for family in rules.FAMILIES:
        entries = fw.ipsets["claw-cage-v%d" % family]
        assert [net for nomatch, net in entries if not nomatch] == [
            ipaddress.ip_network(cidr) for cidr, _ in rules.SPECIAL_RANGES[family]]
        assert all(not nomatch for nomatch, _ in entries)
    assert [str(net) for _, net in fw.ipsets["ipfilter-net0"]] == [
        OWN[0] + "/32", OWN[1] + "/128"]
    assert "!" not in "".join(r.get("opts", {}).get("-dest", "") for r in fw.rules)

    inbound = [r for r in fw.rules if r["direction"] == "IN"]
    assert [r["opts"] for r in inbound] == [{"-source": ADMIN, "-p": "tcp", "-dport": "22"}]
    outbound = [r for r in fw.rules if r["direction"] == "OUT"]
    accepts = [(r["opts"]["-dest"], r["opts"].get("-p"), r["opts"].get("-dport"))
               for r in outbound if r["action"] == "ACCEPT"]
    drops = [r["opts"].get("-dest") for r in outbound if r["action"] == "DROP"]
    expected = []
    for entry in allow.parse_all(specs):
        if entry.kind == "host":
            continue                               # inside the VM: nothing to say here
        dest = (str(entry.net.network_address) if entry.net.num_addresses == 1
                else str(entry.net))
        expected += ([(dest, None, None)] if entry.port is None else
                     [(dest, p, str(entry.port)) for p in rules.PROTOCOLS])
    assert accepts == expected
    assert drops == ["+claw-cage-v4", "+claw-cage-v6"] + (
        [None] if profile == "local-only" else [])
    assert outbound[-len(drops)].get("action") == "DROP"   # every accept before the drops


def test_render_follows_the_table_for_every_forward_verdict():
    """Each special range dropped by --firewall is in an IP set the VM's OUT rules drop."""
    config = rules.default_config()
    text = render(config, ipaddress.ip_network(ADMIN), [ipaddress.ip_address(OWN[0])])
    fw = grammar.parse(text, "vm")
    for family in rules.FAMILIES:
        for cidr, _ in rules.SPECIAL_RANGES[family]:
            address = ipaddress.ip_network(cidr).network_address
            assert rules.forward_verdict(config, address) == "DROP"
            assert any(ipaddress.ip_network(cidr) == net
                       for _, net in fw.ipsets["claw-cage-v%d" % family])
    assert "VMID.fw" in text.splitlines()[0]


def test_admin_source_from_the_ssh_session(pyz, vm_namespace):
    res = run_in(vm_namespace, pyz, ["--proxmox"], env={"SSH_CLIENT": "198.51.100.7 50022 22"})
    assert res.returncode == 0, res.stderr
    assert "IN ACCEPT -source 198.51.100.7 -p tcp -dport 22 # SSH\n" in res.stdout


@pytest.mark.parametrize("args, code, message", [
    (["--proxmox"], 2, "--proxmox needs --admin-source CIDR"),
    (["--proxmox", "--admin-source", "10.0.0.1/8"], 2, "has host bits set"),
    (["--proxmox", "--admin-source", "lan"], 2, "--admin-source lan:"),
    (["--proxmox", "--admin-source", "10.0.0.1", "--allow", "nas.local"], 2, "--allow nas.local"),
    (["--proxmox", "--vmid", "99", "--admin-source", "10.0.0.1"], 2, "not a Proxmox VM id"),
    (["--proxmox", "--admin-source", "10.0.0.1", "--dry-run"], 2, "--dry-run cannot be used"),
    (["--proxmox", "--admin-source", "10.0.0.1", "--remove"], 2, "--remove cannot be used"),
    (["--firewall", "--vmid", "105"], 2, "--vmid cannot be used with --firewall (only with --proxmox)"),
    (["--proxmox", "--admin-source", "10.0.0.1", "--allow", "10.0.0.0/8"], 2,
     "would open the whole blocked range 10.0.0.0/8; to open it anyway, add --unsafe-wide-allow"),
    (["--proxmox", "--admin-source", "10.0.0.1", "--allow", "192.168.1.20"], 2,
     "is this host's own address"),
    (["--harden-docker", "--unsafe-wide-allow"], 2,
     "--unsafe-wide-allow cannot be used with --harden-docker"),
])

def test_bad_input_is_one_line_and_prints_no_file(args, code, message, pyz, vm_namespace):
    env = {"SSH_CLIENT": ""}
    res = run_in(vm_namespace, pyz, args, env=env)
    assert res.returncode == code, res.stderr
    assert message in res.stderr and len(res.stderr.strip().splitlines()) == 1
    assert res.stdout == ""


def test_no_default_route_is_a_missing_prerequisite(pyz):
    require_root("an empty network namespace")
    ns = "claw-px-" + uuid.uuid4().hex[:8]
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        res = run_in(ns, pyz, ["--proxmox", "--admin-source", ADMIN])
    finally:
        subprocess.run(["ip", "netns", "del", ns])
    assert res.returncode == 3, res.stderr
    assert "no global address on a default route" in res.stderr and res.stdout == ""


def test_a_resolver_the_file_cuts_off_is_named_with_the_allow_that_keeps_it(pyz, vm_namespace):
    resolv(vm_namespace, "nameserver 192.168.1.1\nnameserver 127.0.0.53\n"
                         "nameserver fd00::53\nnameserver 198.51.100.53\n")
    try:
        res = run_in(vm_namespace, pyz, args_for("internet", []))
        assert res.returncode == 0 and res.stdout == golden("internet.fw"), res.stderr
        assert res.stderr.splitlines() == [
            "warning: this file cuts the VM off from its DNS server 192.168.1.1: "
            "add --allow 192.168.1.1:53",
            "warning: this file cuts the VM off from its DNS server fd00::53: "
            "add --allow [fd00::53]:53"]
        allowed = run_in(vm_namespace, pyz, args_for("internet", ["192.168.1.1:53"]))
        assert "192.168.1.1" not in allowed.stderr and "fd00::53" in allowed.stderr
        local = run_in(vm_namespace, pyz, args_for("local-only", ["192.168.1.1:53"]))
        assert "DNS server 198.51.100.53: add --allow 198.51.100.53:53" in local.stderr
    finally:
        resolv(vm_namespace, "nameserver 198.51.100.53\n")


def test_a_wide_allow_needs_the_same_flag_as_for_the_firewall(pyz, vm_namespace):
    res = run_in(vm_namespace, pyz, args_for("internet", ["10.0.0.0/8"]) + ["--unsafe-wide-allow"])
    assert res.returncode == 0, res.stderr
    assert "OUT ACCEPT -dest 10.0.0.0/8 # --allow 10.0.0.0/8\n" in res.stdout
    assert "--allow 10.0.0.0/8 --unsafe-wide-allow --vmid 105" in res.stdout   # the command
