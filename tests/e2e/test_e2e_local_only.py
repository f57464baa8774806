"""The local-only profile on every engine of the suite: the api-only stack (the same fixture,
`api` from test_e2e_api_only.py: the namespace holder, the real relay, the gateway stand-in,
the host proxy in the foreground), with the proxy's list the one `--firewall --profile
local-only` writes: the Ollama endpoint of the installed openclaw.local-only.json (copied as
the user copies it) and one `--allow ADDRESS:PORT` for an Ollama box on the LAN.

Stand-in Ollamas: HTTP servers on the engine host's 127.0.0.1:11434 (listed) and
127.0.0.1:11435 (off the list), and the LAN box's server (listed on its one port). From inside
the agent's namespace:
  - both listed endpoints are reached through the proxy (CONNECT via the relay's 3128), and the
    host's 127.0.0.1:11434 through the "ollama" route (the relay's 127.0.0.1:18790): its
    /api/tags answers, its /api/pull is refused with 403, and the namespace's own
    127.0.0.1:11434 is no raw tunnel any more;
  - the off-list port, the host's other services, the LAN box's other ports, the internet and
    unlisted names are refused by the proxy (each target answers from the host's namespace:
    the control);
  - no direct connection leaves the namespace;
and all of it again after every firewall rule of the engine's namespace is flushed.
Packets go only to namespaces the lab made.
"""

import json
import os
import shutil
import tempfile

import pytest

from conftest import ROOT

from lab import engines as eng
from test_e2e_api_only import DIRECT, GATEWAY_PORT, _write, api  # noqa: F401 (the fixture)

import sys
sys.path.insert(0, os.path.join(ROOT, "bootstrap"))
from claw_cage.egress import config, domains, keys  # noqa: E402

OLLAMA, OFF = 11434, 11435
LAN = eng.LAN_HOST
REACHED = {"127.0.0.1:%d" % OLLAMA: "peer 127.0.0.1", "%s:%d" % (LAN, eng.PEER_PORT):
           "peer %s" % LAN}
# target -> (address the control connects to from the host's namespace, port), or None
REFUSED = {"127.0.0.1:%d" % OFF: ("127.0.0.1", OFF),
           "127.0.0.1:%d" % eng.HOST_PORT: ("127.0.0.1", eng.HOST_PORT),
           "%s:%d" % (eng.HOST_LAN, eng.HOST_PORT): (eng.HOST_LAN, eng.HOST_PORT),
           "%s:%d" % (LAN, OLLAMA): None,
           "%s:%d" % (eng.WAN_HOST, eng.PEER_PORT): (eng.WAN_HOST, eng.PEER_PORT),
           "localhost:%d" % OLLAMA: None, "host.docker.internal:%d" % OLLAMA: None,
           "[::ffff:127.0.0.1]:%d" % OLLAMA: None, "api.anthropic.com:443": None}


@pytest.fixture(scope="module")
def local(api):  # noqa: F811
    """The api fixture's stack, its proxy restarted with local-only's list, and the stand-in
    Ollamas on the engine host's loopback."""
    d = tempfile.mkdtemp(prefix="claw-local-")
    try:   # the user's step: cp openclaw.local-only.json openclaw.json
        shutil.copy(os.path.join(api.st.dir, "openclaw.local-only.json"),
                    os.path.join(d, "openclaw.json"))
        entries, why, _ = domains.endpoints(d, ["%s:%d" % (LAN, eng.PEER_PORT)])
    finally:
        shutil.rmtree(d)
    assert entries == list(REACHED), entries
    cfg = json.loads(config.render(entries, ()))
    # the Ollama endpoint is also the "ollama" route (its path allow-list), which the relay's
    # 127.0.0.1:18790 reaches through routes.sock, as --firewall --profile local-only sets up
    cfg.update(routes=keys.routes({}, ollama="127.0.0.1:%d" % OLLAMA),
               routes_listen=["unix:%s/routes.sock" % api.egress])
    cfg.update(listen=["unix:%s/proxy.sock" % api.egress], log=api.proxy_log,
               forward=[{"listen": "127.0.0.1:%d" % GATEWAY_PORT,
                         "to": "unix:%s/gateway.sock" % api.gateway}])
    for port in (OLLAMA, OFF):
        api.lab._serve(api.lab.ns, eng._HTTP, "127.0.0.1", port)
        api.lab._wait_port(api.lab.ns, "127.0.0.1", port)
    api.kill_proxy()
    with open(api.proxy_cfg, "w") as f:
        json.dump(cfg, f)
    api.start_proxy()
    api.wait_serving()
    return api


SPEC = {"direct": DIRECT, "loopback": {"relay 127.0.0.1:3128": ("127.0.0.1", 3128)},
        "tunnel": list(REACHED) + list(REFUSED),
        "get": {"route /ollama/api/tags": ("127.0.0.1", 18790, "/ollama/api/tags"),
                "route /ollama/api/pull": ("127.0.0.1", 18790, "/ollama/api/pull"),
                "agent's 127.0.0.1:%d (no raw tunnel)" % OLLAMA: ("127.0.0.1", OLLAMA)}}


def _problems(r):
    """What breaks the local-only promise in one probe result, as sentences."""
    p = []
    if r["interfaces"] != ["lo"] or r["routes4"]:
        p.append("a network in the namespace: %r %r" % (r["interfaces"], r["routes4"]))
    if r["loopback"]["relay 127.0.0.1:3128"] != "reached":
        p.append("control: the relay's 127.0.0.1:3128 is %s" % r["loopback"])
    p += ["direct to %s reached" % k for k, v in r["direct"].items() if v == "reached"]
    if r["udp dns 1.1.1.1"] == "sent":
        p.append("a UDP DNS query left the namespace")
    t = r["tunnel"]
    for target, peer in REACHED.items():
        if t[target]["status"] != 200 or t[target].get("peer") != peer:
            p.append("the listed %s through the proxy: %r" % (target, t[target]))
    for target in REFUSED:
        if t[target]["status"] != 403:
            p.append("%s through the proxy was not refused: %r" % (target, t[target]))
    got = r["get"]["route /ollama/api/tags"]
    if " 200 " not in got.split(" | ")[0] + " " or not got.endswith("peer 127.0.0.1"):
        p.append("the ollama route's /api/tags did not reach the host's Ollama: %r" % got)
    got = r["get"]["route /ollama/api/pull"]
    if " 403 " not in got.split(" | ")[0] + " ":
        p.append("the ollama route's /api/pull was not refused: %r" % got)
    got = r["get"]["agent's 127.0.0.1:%d (no raw tunnel)" % OLLAMA]
    if "refused" not in got.lower():
        p.append("the agent's own 127.0.0.1:%d answers (a raw tunnel to Ollama): %r"
                 % (OLLAMA, got))
    return p


def _controls(lab):
    """Each refused target that has a server answers from the host's namespace."""
    return {t: lab.connect(lab.ns, h, port, 2) for t, hp in REFUSED.items() if hp
            for h, port in (hp,)}


def _table(phases):
    rows = []
    for phase, r, controls in phases:
        rows.append("== %s" % phase)
        rows.append("interfaces %s; IPv4 routes %d" % (r["interfaces"], len(r["routes4"])))
        for k, v in list(r["loopback"].items()) + list(r["direct"].items()):
            rows.append("  direct %-30s %s" % (k, v))
        for k, v in r["get"].items():
            rows.append("  get    %-30s %s" % (k, v))
        for k, v in r["tunnel"].items():
            rows.append("  proxy  %-40s %s %s" % (k, v["status"], v.get("peer") or v["line"]))
        rows.append("  controls from the host: %s" % controls)
    return "\n".join(rows)


def test_only_the_ollama_endpoints_then_again_with_every_rule_flushed(local):
    before = local.probe(SPEC)
    controls_before = _controls(local.lab)
    direct_before = local.from_host()
    local.flush_all()
    after = local.probe(SPEC)
    controls_after = _controls(local.lab)
    direct_after = local.from_host()
    table = _table([("docker's rules in place", before, controls_before),
                    ("every rule flushed", after, controls_after)])
    _write("e2e-local-only-%s.txt" % local.name, table + "\n")
    assert _problems(before) == [], table
    assert _problems(after) == [], table
    assert all(controls_before.values()) and all(controls_after.values()), \
        "control: every refused target with a server answers from the host\n" + table
    assert all(direct_before.values()) and all(direct_after.values()), \
        "control: every direct target answers from the host's namespace\n" + table
    with open(local.proxy_log) as f:
        log = f.read()
    assert "port %d not allowed" % OFF in log   # refused before any connect
    assert "127.0.0.1:%d allowed" % OLLAMA in log
