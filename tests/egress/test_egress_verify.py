"""--verify's Egress rows against the REAL proxy (the built program's --proxy), from a network
namespace standing for the agent's: only loopback, the proxy on its 127.0.0.1:3128 as the
relay puts it there. --verify runs in that namespace too (test mode CLAW_CAGE_PROBE_NETNS:
`ip netns exec` instead of `docker exec`), with /etc as a private overlay holding proxy.json.

Proven: on a correct cage every egress row passes (the allowed name is an honest skip: no
internet here); with the proxy killed, the rows that need it fail or say they could not look;
in a namespace that HAS a route out (a veth to a namespace holding 1.1.1.1 and 192.168.1.1),
the direct rows fail. Packets go only to namespaces this test made.
"""

import json
import os
import subprocess
import sys
import time
import uuid

import pytest

from conftest import PYTHON, ROOT
from lab import netlab
from support import install_dir, run, upper

sys.path.insert(0, os.path.join(ROOT, "bootstrap"))
from claw_cage.egress import config  # noqa: E402
from claw_cage.proxy import config as proxy_config  # noqa: E402

EGRESS_CHECKS = ("proxy list", "proxy service", "proxy answers", "proxy reachable",
                 "off-list name refused", "LAN address refused", "metadata refused",
                 "direct LAN fails", "direct host fails", "direct internet fails",
                 "allowed name reached", "openclaw proxy validate")


def sh(script):
    subprocess.run(["sh", "-euc", script], check=True, timeout=30)


class Agent:
    """A namespace with only loopback (route=False) or with a way out (route=True: a veth to
    an "outside" namespace holding 1.1.1.1 and 192.168.1.1, its default route)."""

    def __init__(self, route=False):
        tag = uuid.uuid4().hex[:6]
        self.ns, self.out = "cceg%s-agent" % tag, "cceg%s-out" % tag
        self.route, self.proxy = route, None

    def __enter__(self):
        sh("ip netns add %s && ip -n %s link set lo up" % (self.ns, self.ns))
        if self.route:
            sh("""ip netns add {o} && ip -n {o} link set lo up
                  ip link add ceg-a netns {a} type veth peer name ceg-o netns {o}
                  ip -n {a} addr add 10.99.0.2/24 dev ceg-a && ip -n {a} link set ceg-a up
                  ip -n {o} addr add 10.99.0.1/24 dev ceg-o && ip -n {o} link set ceg-o up
                  ip -n {o} addr add 1.1.1.1/32 dev lo && ip -n {o} addr add 192.168.1.1/32 dev lo
                  ip -n {a} route add default via 10.99.0.1""".format(a=self.ns, o=self.out))
        return self

    def start_proxy(self, pyz, cfg_path):
        self.proxy = subprocess.Popen(["ip", "netns", "exec", self.ns, PYTHON, pyz, "--proxy",
                                       "--config", cfg_path], stdout=subprocess.DEVNULL,
                                      stderr=subprocess.PIPE, universal_newlines=True)
        line = self.proxy.stderr.readline()
        assert "listening on" in line, line

    def stop_proxy(self):
        if self.proxy and self.proxy.poll() is None:
            self.proxy.terminate()
            self.proxy.wait(10)

    def __exit__(self, *exc):
        self.stop_proxy()
        for ns in (self.ns, self.out):
            subprocess.run(["ip", "netns", "del", ns], stderr=subprocess.DEVNULL)


@pytest.fixture
def cage(tmp_path, pyz):
    """(agent namespace factory, base of the overlays, install dir)."""
    netlab.require_lab()
    base = str(tmp_path / "ov")
    cfg = json.loads(config.render(["allowed.lab.test", "*.lab.test"]))
    cfg["listen"] = ["127.0.0.1:3128"]   # the agent's side of the relay
    cfg["forward"] = []
    text = json.dumps(cfg)
    path = upper(base, config.PATH)
    os.makedirs(os.path.dirname(path))
    with open(path, "w") as f:
        f.write(text)
    return base, path, install_dir(tmp_path / "home")


def verify(pyz, base, directory, ns, checks=EGRESS_CHECKS):
    proc = run(base, [PYTHON, pyz, "--verify", "--json", "--dir", directory], netns=ns,
               env={"CLAW_CAGE_PROBE_NETNS": ns, "CLAW_CAGE_INTERNET_PROBE": "off"}, timeout=180,
               overlaid=("/etc",))
    rows = {r["check"]: r for r in json.loads(proc.stdout)}
    return proc.returncode, {c: rows[c] for c in checks if c in rows}


def status(rows):
    return {c: r["status"] for c, r in rows.items()}


def test_the_render_is_a_config_the_proxy_accepts():
    proxy_config.validate(json.loads(config.render(["api.anthropic.com", "*.telegram.org"])))
    with pytest.raises(ValueError):   # nothing renders a file the proxy would refuse
        config.render(["not a name"])


# Files the old loose reader of --verify passed (a dict with an allow and a listen list) and
# the proxy refuses: --verify reads them with the proxy's own validation now.
REFUSED_BY_THE_PROXY = [
    dict(allow=["*.10.0.0.1"]), dict(ports=["443"]), dict(max_conns=0), dict(listen=["nowhere"]),
    dict(extra=1), dict(forward=[{"listen": "127.0.0.1:1"}]), dict(header_timeout=True)]


@pytest.mark.parametrize("change", REFUSED_BY_THE_PROXY, ids=lambda c: sorted(c)[0])
def test_verify_never_passes_a_file_the_proxy_refuses(tmp_path, monkeypatch, change):
    from claw_cage.verify import egress_rows
    good = json.loads(config.render(["api.anthropic.com"]))
    path = tmp_path / "proxy.json"
    monkeypatch.setattr(egress_rows.proxy_config, "PATH", str(path))
    path.write_text(json.dumps(good))
    assert egress_rows.config_row(*egress_rows.read_config()).status == "pass"
    proxy_config.load(str(path))                    # the control: both accept the good file
    good.update(change)
    path.write_text(json.dumps(good))
    cfg, why = egress_rows.read_config()
    assert egress_rows.config_row(cfg, why).status == "fail" and "refused by the proxy" in why
    with pytest.raises(proxy_config.ConfigError):
        proxy_config.load(str(path))


def test_a_correct_cage_passes_every_egress_row(pyz, cage):
    base, cfg_path, d = cage
    with Agent() as agent:
        agent.start_proxy(pyz, cfg_path)
        code, rows = verify(pyz, base, d, agent.ns)
    got = status(rows)
    assert set(got) == set(EGRESS_CHECKS), got
    assert got.pop("proxy service") == "skip"         # no systemd here: said so
    assert got.pop("allowed name reached") == "skip"  # no internet here: honest skip
    assert "cannot reach it either" in rows["allowed name reached"]["detail"]
    assert got.pop("openclaw proxy validate") == "skip"
    assert set(got.values()) == {"pass"}, rows
    assert "2 names: allowed.lab.test, *.lab.test" in rows["proxy list"]["detail"]
    for check in ("off-list name refused", "LAN address refused", "metadata refused"):
        assert "refused (HTTP 4" in rows[check]["detail"] or \
            "refused (HTTP 5" in rows[check]["detail"], rows[check]
    assert "ENETUNREACH" in rows["direct internet fails"]["detail"]


def test_proxy_killed_fails_and_never_passes_a_refusal(pyz, cage):
    base, cfg_path, d = cage
    with Agent() as agent:
        code, rows = verify(pyz, base, d, agent.ns)   # never started
    got = status(rows)
    assert code == 7
    assert got["proxy answers"] == "fail" and got["proxy reachable"] == "fail"
    for check in ("off-list name refused", "LAN address refused", "metadata refused",
                  "direct LAN fails", "direct host fails", "direct internet fails"):
        assert got[check] == "skip", (check, rows[check])


def test_an_agent_with_a_route_out_fails_the_direct_rows(pyz, cage):
    base, cfg_path, d = cage
    with Agent(route=True) as agent:
        agent.start_proxy(pyz, cfg_path)
        code, rows = verify(pyz, base, d, agent.ns)
    got = status(rows)
    assert code == 7
    assert got["direct internet fails"] == "fail", rows["direct internet fails"]
    assert got["direct LAN fails"] == "fail", rows["direct LAN fails"]
    # the proxy itself still refuses: those rows are not what failed
    assert got["off-list name refused"] == "pass" and got["metadata refused"] == "pass"


def test_no_gateway_to_look_into_is_incomplete_never_ok(pyz, cage, tmp_path):
    """Outside test mode the probes go through `docker exec` into the gateway: with no docker
    to ask, the namespace rows are a needed skip, and the run is not ok."""
    base, cfg_path, d = cage
    bin_dir = tmp_path / "bin"   # the host's programs, docker left out
    bin_dir.mkdir()
    for folder in ("/usr/sbin", "/usr/bin", "/sbin", "/bin"):
        for name in os.listdir(folder):
            if not name.startswith("docker") and not (bin_dir / name).exists():
                os.symlink(os.path.join(folder, name), str(bin_dir / name))
    with Agent() as agent:
        agent.start_proxy(pyz, cfg_path)
        proc = run(base, [PYTHON, pyz, "--verify", "--json", "--dir", d], netns=agent.ns,
                   env={"PATH": str(bin_dir), "CLAW_CAGE_INTERNET_PROBE": "off"},
                   overlaid=("/etc",))
    rows = {r["check"]: r for r in json.loads(proc.stdout)}
    assert proc.returncode != 0
    assert rows["agent namespace"]["status"] == "skip"
    assert "docker is not installed" in rows["agent namespace"]["detail"]
    assert rows["proxy answers"]["status"] == "pass"
    assert not [c for c in EGRESS_CHECKS[3:] if c in rows]   # nothing judged without a look


OLLAMA = 11434


def test_local_only_the_ollama_endpoint_is_reached_and_its_next_port_refused(pyz, tmp_path):
    """local-only's proxy.json (HOST:PORT entries, no default port) with a stand-in Ollama on
    the proxy's 127.0.0.1:11434, and a server on 11435 too: the Egress rows reach the first
    and see the second refused (its server listens: the refusal is the proxy's), and the
    direct rows fail as under api-only."""
    netlab.require_lab()
    base = str(tmp_path / "ov")
    cfg = json.loads(config.render(["127.0.0.1:%d" % OLLAMA], ()))
    cfg["listen"], cfg["forward"] = ["127.0.0.1:3128"], []
    path = upper(base, config.PATH)
    os.makedirs(os.path.dirname(path))
    with open(path, "w") as f:
        json.dump(cfg, f)
    d = install_dir(tmp_path / "home")
    servers = []
    with Agent() as agent:
        try:
            for port in (OLLAMA, OLLAMA + 1):
                servers.append(subprocess.Popen(
                    ["ip", "netns", "exec", agent.ns, PYTHON, "-m", "http.server", str(port),
                     "--bind", "127.0.0.1"], stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL))
            for _ in range(100):   # control: both stand-ins answer where the proxy runs
                ok = subprocess.run(
                    ["ip", "netns", "exec", agent.ns, PYTHON, "-c",
                     "import socket\nfor p in (%d, %d): socket.create_connection(('127.0.0.1', "
                     "p), 1).close()" % (OLLAMA, OLLAMA + 1)], stderr=subprocess.DEVNULL)
                if ok.returncode == 0:
                    break
                time.sleep(0.1)
            assert ok.returncode == 0, "the stand-ins do not listen"
            agent.start_proxy(pyz, path)
            code, rows = verify(pyz, base, d, agent.ns,
                                EGRESS_CHECKS + ("other port refused",))
        finally:
            for s in servers:
                s.kill()
                s.wait(10)
    got = status(rows)
    assert got["allowed name reached"] == "pass", rows["allowed name reached"]
    assert "CONNECT 127.0.0.1:%d" % OLLAMA in rows["allowed name reached"]["detail"]
    assert got["other port refused"] == "pass", rows["other port refused"]
    assert "127.0.0.1:%d" % (OLLAMA + 1) in rows["other port refused"]["detail"]
    assert "1 name: 127.0.0.1:%d" % OLLAMA in rows["proxy list"]["detail"]
    for check in ("off-list name refused", "LAN address refused", "metadata refused",
                  "direct LAN fails", "direct host fails", "direct internet fails"):
        assert got[check] == "pass", (check, rows[check])
