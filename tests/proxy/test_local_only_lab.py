"""local-only by packets: the real relay (deploy/netns-relay.js, under this machine's Node.js)
in an agent namespace that has only loopback, the BUILT proxy in the lab's proxy namespace (the
"host"), with the list `--firewall --profile local-only` writes (egress/config.render of
egress/domains.endpoints). Stand-in Ollamas: the lab's servers on the host's 127.0.0.1 and on
the LAN box 192.168.1.10 (tests/lab/proxylab.py; ports 80, 443, 8443).

What it shows: a listed endpoint is reached through the proxy, and so is the host's own
127.0.0.1 through the relay's loopback port (OpenClaw's direct path for Ollama embeddings);
every other port of the same address, the LAN box's other ports, the internet, and the host's
loopback under another spelling are refused by the proxy; a direct connection finds no route.
Each refusal has its control: the same server answers a direct connection from the proxy's
namespace, and its own record shows nothing arrived through the proxy.
"""

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid

import pytest

from conftest import ROOT
from lab.proxylab import LAN, WAN, read_head, read_response
from proxy_setup import lab  # noqa: F401 (the module's lab fixture)
from test_proxy_lab import arrivals, direct

sys.path.insert(0, os.path.join(ROOT, "bootstrap"))
from claw_cage.egress import config, domains  # noqa: E402

OLLAMA = 8443                # the stand-in Ollama's port, on the host's 127.0.0.1 and the LAN
ALIAS_PORT = 80              # host.docker.internal:80, listed: the host's 127.0.0.1:80


def _install_dir(tmp_path):
    """A user's install folder whose openclaw.json is the local-only template, pointed at the
    stand-in's port."""
    d = str(tmp_path / "claw-cage")
    os.makedirs(d)
    with open(os.path.join(ROOT, "deploy", "openclaw.local-only.json")) as f:
        cfg = json.load(f)
    assert cfg["models"]["providers"]["ollama"]["baseUrl"] == "http://127.0.0.1:11434"
    cfg["models"]["providers"]["ollama"]["baseUrl"] = "http://127.0.0.1:%d" % OLLAMA
    with open(os.path.join(d, "openclaw.json"), "w") as f:
        json.dump(cfg, f)
    return d


@pytest.fixture(scope="module")
def agent(lab, pyz, tmp_path_factory):  # noqa: F811
    node = shutil.which("node")
    if not node:
        pytest.fail("node is not installed (tests/apt-packages.txt: nodejs)")
    d = _install_dir(tmp_path_factory.mktemp("lo"))
    entries, _why, _ = domains.endpoints(d, ["%s:%d" % (LAN, OLLAMA)])
    entries.append("host.docker.internal:%d" % ALIAS_PORT)
    cfg = json.loads(config.render(entries, ()))
    assert cfg["allow"] == ["127.0.0.1:%d" % OLLAMA, "%s:%d" % (LAN, OLLAMA),
                            "host.docker.internal:%d" % ALIAS_PORT] and cfg["ports"] == []
    del cfg["forward"], cfg["listen"]   # the lab gives the socket
    proxy = lab.start_proxy(pyz, cfg, name="localonly")
    ns = "ccpx%s-agent" % uuid.uuid4().hex[:6]
    subprocess.run(["ip", "netns", "add", ns], check=True)
    relay = None
    try:
        lab.exec(ns, ["ip", "link", "set", "lo", "up"])
        env = dict(os.environ, CLAW_EGRESS_SOCK=proxy.sock_path,
                   CLAW_GATEWAY_SOCK=os.path.join(lab.tmp, "gateway.sock"),
                   CLAW_LOOPBACK_PORTS="%d %d 443" % (OLLAMA, ALIAS_PORT))
        log = open(os.path.join(lab.tmp, "relay.log"), "w")
        relay = subprocess.Popen(["ip", "netns", "exec", ns, node,
                                  os.path.join(ROOT, "deploy", "netns-relay.js")],
                                 stdout=log, stderr=log, stdin=subprocess.DEVNULL, env=env)
        log.close()
        end = time.monotonic() + 20
        while open(os.path.join(lab.tmp, "relay.log")).read().count("->") < 5:
            assert relay.poll() is None and time.monotonic() < end, \
                open(os.path.join(lab.tmp, "relay.log")).read()
            time.sleep(0.05)
        yield ns, proxy
    finally:
        if relay:
            relay.kill()
            relay.wait(10)
        proxy.stop()
        subprocess.run(["ip", "netns", "del", ns])


def _logged(proxy, seen):
    """Wait (5 s at most) for the proxy's log to hold what seen(text) looks for: a line is
    written when its connection ends."""
    end = time.monotonic() + 5
    while not seen(proxy.log_text()):
        assert time.monotonic() < end, proxy.log_text()[-800:]
        time.sleep(0.05)


def _get(lab, ns, host, port):  # noqa: F811
    """A plain GET from inside the agent namespace, direct to host:port: the body, or the
    error's name."""
    s = lab.socket_in(ns, socket.AF_INET6 if ":" in host else socket.AF_INET)
    s.settimeout(5)
    try:
        s.connect((host, port))
        s.sendall(b"GET /ollama HTTP/1.0\r\nHost: x\r\n\r\n")
        status, _head, body = read_response(s)
        return body.decode() if status == 200 else "status %d" % status
    except OSError as err:
        return type(err).__name__ + (" " + os.strerror(err.errno) if err.errno else "")
    finally:
        s.close()


def _tunnel(lab, ns, target):  # noqa: F811
    """CONNECT target through the relay's 127.0.0.1:3128 in the agent namespace: (status,
    what the server behind answers a GET)."""
    s = lab.socket_in(ns)
    s.settimeout(10)
    try:
        s.connect(("127.0.0.1", 3128))
        s.sendall(("CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n" % (target, target)).encode())
        status, _ = read_head(s)
        if status != 200:
            return status, None
        s.sendall(b"GET /ollama HTTP/1.0\r\nHost: x\r\n\r\n")
        return status, read_response(s)[2].decode()
    finally:
        s.close()


def test_the_listed_endpoints_are_reached_through_the_proxy(lab, agent):  # noqa: F811
    ns, proxy = agent
    assert _tunnel(lab, ns, "127.0.0.1:%d" % OLLAMA) == \
        (200, "hello from 127.0.0.1 path=/ollama host=x\n")
    assert _tunnel(lab, ns, "%s:%d" % (LAN, OLLAMA)) == \
        (200, "hello from %s path=/ollama host=x\n" % LAN)
    # the older template's name for the host: its own loopback, on the listed port
    assert _tunnel(lab, ns, "host.docker.internal:%d" % ALIAS_PORT) == \
        (200, "hello from 127.0.0.1 path=/ollama host=x\n")
    assert "127.0.0.1:%d" % OLLAMA in proxy.log_text()


def test_a_direct_connection_to_the_agents_loopback_reaches_the_hosts_ollama(lab, agent):  # noqa: F811,E501
    """OpenClaw's Ollama embeddings connect to a loopback baseUrl directly: the relay's
    127.0.0.1:PORT carries it to the proxy, which reaches the HOST's 127.0.0.1:PORT (the
    answer names the proxy namespace's server) and logs it."""
    ns, proxy = agent
    before = proxy.log_text().count("127.0.0.1:%d allowed" % OLLAMA)
    assert _get(lab, ns, "127.0.0.1", OLLAMA) == "hello from 127.0.0.1 path=/ollama host=x\n"
    _logged(proxy, lambda t: t.count("127.0.0.1:%d allowed" % OLLAMA) > before)
    # the same loopback path to a port off the list: the proxy refuses, the relay closes
    got = _get(lab, ns, "127.0.0.1", 443)
    assert not got.startswith("hello"), got
    _logged(proxy, lambda t: "refused-403 up=0 down=0" in t and "port 443 not allowed" in t)


def test_everything_else_is_refused_with_a_control(lab, agent):  # noqa: F811
    ns, proxy = agent
    refused = ["127.0.0.1:443", "127.0.0.1:80", "%s:443" % LAN, "%s:80" % LAN,
               "%s:443" % WAN, "localhost:%d" % OLLAMA, "127.0.0.2:%d" % OLLAMA,
               "[::ffff:127.0.0.1]:%d" % OLLAMA, "host.docker.internal:%d" % OLLAMA,
               "example.com:443"]
    for target in refused:
        host = target.rpartition(":")[0].strip("[]")
        counted = host in ("127.0.0.1", LAN, WAN)
        before = arrivals(lab, host, settle=0.2) if counted else None
        status, _ = _tunnel(lab, ns, target)
        assert status == 403, (target, status)
        if counted:
            port = int(target.rpartition(":")[2])
            assert direct(lab, host, port), "control: %s answers from the host" % target
            assert arrivals(lab, host, settle=0.2) == before + 1, \
                "only the control arrived at %s" % target


def test_no_direct_way_out_of_the_agent_namespace(lab, agent):  # noqa: F811
    ns, _ = agent
    for host, port in ((LAN, OLLAMA), (WAN, 443)):
        got = _get(lab, ns, host, port)
        assert "unreachable" in got.lower(), (host, port, got)
        assert direct(lab, host, port), "control: %s:%d answers from the host" % (host, port)
    # control: the agent's only path, its proxy port, is open
    assert _tunnel(lab, ns, "127.0.0.1:%d" % OLLAMA)[0] == 200
