"""--verify's first firewall row: the running gateway sits on the caged bridge, and only there
(container.network_row), judged from the run's one `docker inspect` of the gateway and one
`docker network inspect` of its networks; and the network the rows judge is the one Compose
really builds (matrix.network_of: the real Compose binary on a real directory), an override
that moves it being a failing row, not a silent pass."""

import ipaddress
import json
import os
import shutil
import subprocess
import sys

import pytest

from conftest import ROOT, refuse

sys.path.insert(0, os.path.join(ROOT, "bootstrap"))
from claw_cage.verify import container, firewall_rows, matrix  # noqa: E402

BRIDGE, SUBNET = "claw-cage0", ipaddress.IPv4Network("172.30.0.0/24")
CAGED = {"Name": "claw-cage_claw-net", "Id": "a" * 64, "Driver": "bridge",
         "Options": {"com.docker.network.bridge.name": "claw-cage0"}}
OTHER = {"Name": "claw-cage_lan", "Id": "b" * 64, "Driver": "bridge", "Options": {}}
HOSTNET = {"Name": "host", "Id": "c" * 64, "Driver": "host", "Options": {}}


def info(mode, **attached):
    nets = dict((name, {"NetworkID": net["Id"], "IPAddress": addr})
                for name, (net, addr) in attached.items())
    return {"HostConfig": {"NetworkMode": mode}, "NetworkSettings": {"Networks": nets}}


def row(inf, networks=(CAGED, OTHER, HOSTNET)):
    r = container.network_row(firewall_rows.SECTION, inf, "why", BRIDGE, SUBNET, list(networks))
    print(r)
    return r


def test_on_the_caged_bridge_only_passes():
    r = row(info("claw-cage_claw-net", **{"claw-cage_claw-net": (CAGED, "172.30.0.2")}))
    assert r.status == "pass" and "claw-cage0" in r.detail and r.check == "gateway network"


@pytest.mark.parametrize("inf, words", [
    (info("claw-cage_lan", claw_cage_lan=(OTHER, "172.31.0.2")), "br-bbbbbbbbbbbb"),
    (info("claw-cage_claw-net", **{"claw-cage_claw-net": (CAGED, "172.30.0.2"),
                                   "claw-cage_lan": (OTHER, "172.31.0.2")}), "claw-cage_lan"),
    (info("host", host=(HOSTNET, "")), "not a bridge network"),
    (info("claw-cage_claw-net", **{"claw-cage_claw-net": (CAGED, "10.9.9.9")}), "10.9.9.9"),
    (info("bridge"), "no network"),
], ids=["other-bridge", "two-networks", "host-network", "address-outside", "nothing"])
def test_anywhere_else_fails(inf, words):
    r = row(inf)
    assert r.status == "fail" and words in r.detail, r


def test_could_not_look_is_never_a_pass():
    assert row(None).status == "skip"
    inf = info("claw-cage_claw-net", **{"claw-cage_claw-net": (CAGED, "172.30.0.2")})
    r = container.network_row(firewall_rows.SECTION, inf, None, BRIDGE, SUBNET, None,
                              "docker network inspect: no answer")
    assert r.status == "skip" and "no answer" in r.detail
    shared = container.network_row(firewall_rows.SECTION, info("container:" + "d" * 64), None,
                                   BRIDGE, SUBNET, [])
    assert shared.status == "skip"
    alone = row(info("none"))
    assert alone.status == "pass" and "loopback" in alone.detail


def _compose():
    if not shutil.which("docker") or subprocess.run(
            ["docker", "compose", "version"], stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL).returncode != 0:
        refuse("the real Docker Compose v2 plugin is missing, NOT RUN: tests/run installs it")


def test_the_rows_judge_the_network_compose_builds(tmp_path):
    _compose()
    d = tmp_path / "claw-cage"
    d.mkdir()
    shutil.copy(os.path.join(ROOT, "deploy", "docker-compose.yml"), str(d))
    net, problem = matrix.network_of(str(d))
    assert problem is None and net.name == "claw-cage_claw-net" and net.how == "compose"
    assert (net.bridge, net.subnet) == (BRIDGE, SUBNET)
    (d / "docker-compose.override.yml").write_text(
        "networks:\n  claw-net:\n    driver_opts:\n      com.docker.network.bridge.name: br-x\n")
    net, problem = matrix.network_of(str(d))
    print(problem)
    assert (net.bridge, net.subnet) == (BRIDGE, SUBNET)   # the rows still judge the cage's
    assert problem.status == "fail" and "br-x" in problem.detail
    assert problem.section == firewall_rows.SECTION


def test_the_row_on_real_containers_and_networks():
    """Real Docker: a container on a bridge network named like the cage's passes; one on a
    network with Docker's own bridge name, and one on both, fail. The row reads the real
    `docker inspect` and `docker network inspect` (the containers only sleep: no packet)."""
    import uuid
    from conftest import require_docker
    require_docker("reads `docker inspect` of real containers on real networks")
    from lab import e2e_support
    sh = e2e_support.sh
    cleanup = e2e_support.Cleanup()
    tag = uuid.uuid4().hex[:6]
    try:
        image = e2e_support.StandIn(cleanup).build()
        used = e2e_support.used_ipv4_networks()
        caged = e2e_support.pick_subnet(["10.213.%d.0/24" % i for i in range(10, 60)], used)
        other = e2e_support.pick_subnet(["10.213.%d.0/24" % i for i in range(60, 110)],
                                        used + [caged])
        bridge = "ccgw%s0" % tag
        nets = {}
        for name, subnet, opts in (("caged", caged, ["--opt", container.BRIDGE_KEY + "=" +
                                                     bridge]),
                                   ("other", other, [])):
            net = "claw-gwrow-%s-%s" % (name, tag)
            sh(["docker", "network", "create", "--driver", "bridge", "--subnet", str(subnet)]
               + opts + [net])
            cleanup.push("remove network " + net, sh, ["docker", "network", "rm", net])
            nets[name] = net
        infos = {}
        for name, on in (("inside", ["caged"]), ("outside", ["other"]),
                         ("both", ["caged", "other"])):
            cid = sh(["docker", "run", "-d", "--network", nets[on[0]], "--entrypoint",
                      "/bin/sleep", image, "120"]).stdout.strip()
            cleanup.push("remove " + name, sh, ["docker", "rm", "-f", cid])
            for more in on[1:]:
                sh(["docker", "network", "connect", nets[more], cid])
            infos[name] = json.loads(sh(["docker", "inspect", cid]).stdout)[0]
        got = {}
        for name, inf in infos.items():
            networks, why = container.networks_of(inf)
            assert networks is not None, why
            got[name] = container.network_row(firewall_rows.SECTION, inf, None, bridge, caged,
                                              networks, why)
            print(name, got[name])
        assert got["inside"].status == "pass" and bridge in got["inside"].detail
        assert got["outside"].status == "fail" and "br-" in got["outside"].detail
        assert got["both"].status == "fail" and nets["other"] in got["both"].detail
    finally:
        errors = [e for e in cleanup.run() if not e.startswith("remove build tag")]
        assert not errors, errors
