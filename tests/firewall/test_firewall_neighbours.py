"""Issue 10: the cage holds whatever else runs on the host, proven with packets in the lab.

For each neighbour a Docker host commonly has (tests/lab/fwlab.py), and for none:
  control       the neighbour, no claw-cage rules: every row of the matrix is reached
  claw-cage     --firewall with an allow list, then the neighbour acts (tailscaled starts, ufw
                reloads, a reset script runs): every blocked target (LAN ranges TCP+UDP, IPv6,
                the host's own addresses) blocked; the internet, the other container,
                published ports and the allow-list entries reached
  second alone  the first anchor (mangle PREROUTING) deleted, leaving the filter layer that
                claw-cage 0.1 had alone: the neighbour opens the LAN again (proof that the
                neighbour is real, and that the first anchor is what holds)
The figures go to tests/output/firewall-neighbour-matrix.txt (the closing note's table).
Also: each anchor deleted alone still blocks everything, on iptables-nft, iptables-legacy and
Docker 29's nftables layout.
"""

import os

import pytest

from lab import fwlab, netlab
from lab.netlab import Lab, Probe, blocked_probes, open_probes

pytestmark = pytest.mark.usefixtures("_lab_possible")

OUT = os.path.join(netlab.ROOT, "tests", "output", "firewall-neighbour-matrix.txt")
ALLOWS = ("--allow", "192.168.1.1:8081", "--allow", "host:8081")
HOST_ADDRS = ("172.30.0.1", netlab.HOST_LAN_SIDE, "127.0.0.1", netlab.MCAST_GROUP,
              "255.255.255.255", "fd30::1")


def allowed_probes(lab):
    return [Probe("allow-list 192.168.1.1:8081 tcp", lab.ctr, "tcp", "192.168.1.1", 8081),
            Probe("allow-list host:8081 (172.30.0.1) tcp", lab.ctr, "tcp", "172.30.0.1", 8081)]


def _run_in(lab):
    def run(argv, input=None):
        return lab.exec(lab.host, argv, input=input)
    return run


def _act(lab, neighbour):
    neighbour(_run_in(lab), lab.backend, lab.ip6tables)


def docker29(lab):
    lab.exec(lab.host, ["nft", "-f", "-"], input=fwlab.nft_docker29(
        netlab.BRIDGE, netlab.PUBLISHED, "172.30.0.2:%d" % netlab.GATEWAY_PORT))


def nft_etc(tmp_path):
    """An /etc overlay whose docker/daemon.json selects the nftables backend (the engine here
    is not Docker 29, so `docker info` cannot say it: the daemon.json fallback must)."""
    etc = tmp_path / "etc"
    (etc / "upper" / "docker").mkdir(parents=True, exist_ok=True)
    (etc / "upper" / "docker" / "daemon.json").write_text('{"firewall-backend": "nftables"}\n')
    return str(etc)


NEIGHBOURS = {
    # name: (Lab kwargs, Docker 29 nftables layout, neighbour acting after claw-cage)
    "none": ({}, False, None),
    "tailscale ts-forward at FORWARD 1": ({}, False, fwlab.tailscale),
    "ufw-docker reload (DOCKER-USER flushed)": ({}, False, fwlab.ufw_docker),
    "reset script (FORWARD flushed, ACCEPT)": ({}, False, fwlab.reset_script),
    "docker 29 nftables backend": ({"docker": False}, True, None),
}


def _drop_anchor(lab, which, parent="DOCKER-USER"):
    """Delete one of claw-cage's anchors in both families: "first" (mangle PREROUTING's jump)
    or "second" (the filter jumps)."""
    for ipt in (lab.backend, lab.ip6tables):
        if which == "first":
            lab.sh(lab.host, "%s -w -t mangle -D PREROUTING -i %s -j CLAW-CAGE-PRE"
                   % (ipt, netlab.BRIDGE))
        else:
            lab.sh(lab.host, "%s -w -D %s -i %s -j CLAW-CAGE-FWD; %s -w -D INPUT -i %s -j "
                   "CLAW-CAGE-IN" % (ipt, parent, netlab.BRIDGE, ipt, netlab.BRIDGE))


def _reached(got, rows):
    return [r.name for r in rows if got[r]]


def _write_matrix(name, figures):
    head = ["neighbour | control: LAN reached without rules | claw-cage: LAN reached | "
            "claw-cage: host reached | claw-cage: open+allowed reached | filter layer alone "
            "(first anchor deleted): LAN reached", "--- | --- | --- | --- | --- | ---"]
    rows = []
    if os.path.exists(OUT):
        with open(OUT) as f:
            rows = [l for l in f.read().splitlines()[2:] if not l.startswith(name + " |")]
    rows.append("%s | %s" % (name, " | ".join(figures)))
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as f:
        f.write("\n".join(head + sorted(rows)) + "\n")


@pytest.mark.parametrize("name", sorted(NEIGHBOURS))
def test_neighbour_cannot_open_the_cage(pyz, tmp_path, name):
    kwargs, nft_layout, neighbour = NEIGHBOURS[name]
    with Lab(**kwargs) as lab:
        if nft_layout:
            docker29(lab)
        blocked, reach = blocked_probes(lab), open_probes(lab) + allowed_probes(lab)
        lan = [r for r in blocked if r.addr not in HOST_ADDRS]
        host = [r for r in blocked if r.addr in HOST_ADDRS]
        if neighbour:
            _act(lab, neighbour)
        # control: with the neighbour and no claw-cage rules, every row is reached
        got = lab.probe(blocked + reach, retry=blocked + reach)
        assert not [r.name for r in blocked + reach if not got[r]], "control incomplete"
        control = len(_reached(got, lan))
        netlab.ok(lab.firewall(pyz, "--no-persist", *ALLOWS,
                               etc_overlay=nft_etc(tmp_path) if nft_layout else None))
        if neighbour:
            _act(lab, neighbour)   # after claw-cage: tailscaled starts, ufw reloads, ...
        got = lab.probe(blocked + reach, retry=reach)
        leaks, broken = _reached(got, blocked), [r.name for r in reach if not got[r]]
        caged = (len(_reached(got, lan)), len(_reached(got, host)), len(reach) - len(broken))
        assert not leaks, "%s opened the cage: %s" % (name, leaks)
        assert not broken, "with %s these must stay reachable: %s" % (name, broken)
        # the filter layer alone, as claw-cage 0.1 had it: does the neighbour open it?
        _drop_anchor(lab, "first")
        alone = len(_reached(lab.probe(lan), lan))
        _write_matrix(name, ["%d/%d" % (control, len(lan)), "%d/%d" % (caged[0], len(lan)),
                             "%d/%d" % (caged[1], len(host)), "%d/%d" % (caged[2], len(reach)),
                             "%d/%d" % (alone, len(lan))])
        if neighbour is None and not nft_layout:
            assert alone == 0, "the second anchor alone must block the LAN"
        elif neighbour is not None:
            assert alone, "%s does not open a filter-only cage: the test proves nothing" % name


@pytest.mark.parametrize("variant", ["iptables-nft", "iptables-legacy", "docker29-nftables"])
@pytest.mark.parametrize("anchor", ["first", "second"])
def test_each_anchor_alone_blocks_every_target(pyz, tmp_path, variant, anchor):
    backend = "iptables-legacy" if variant == "iptables-legacy" else "iptables-nft"
    nft_layout = variant == "docker29-nftables"
    with Lab(backend=backend, docker=not nft_layout) as lab:
        if nft_layout:
            docker29(lab)
        blocked, reach = blocked_probes(lab), open_probes(lab) + allowed_probes(lab)
        netlab.ok(lab.firewall(pyz, "--no-persist", *ALLOWS,
                               etc_overlay=nft_etc(tmp_path) if nft_layout else None))
        _drop_anchor(lab, anchor, "FORWARD" if nft_layout else "DOCKER-USER")
        got = lab.probe(blocked + reach, retry=reach)
        leaks, broken = _reached(got, blocked), [r.name for r in reach if not got[r]]
        left = "second" if anchor == "first" else "first"
        assert not leaks, "with only the %s anchor left: %s" % (left, leaks)
        assert not broken, broken
