"""The local-only profile on every engine of the suite: the api-only stack (the same fixture,
`api` from test_e2e_api_only.py: the namespace holder, the real relay, the gateway stand-in,
the host proxy in the foreground), with the proxy's list the one `--firewall --profile
local-only` writes: the Ollama endpoint of the installed openclaw.local-only.json (copied as
the user copies it) and one `--allow ADDRESS:PORT` for an Ollama box on the LAN.

The proxy's list and routes are what --firewall's own code plans (setup.prepare of
`--firewall --profile local-only --allow LAN:PORT`, on a copy of the install folder whose
openclaw.json is the local-only one): the LAN box's one endpoint on the CONNECT list, the
host's Ollama endpoint the "ollama" route and NOT on the CONNECT list.

Stand-in Ollamas: on the engine host's 127.0.0.1:11434 a recording one (tests/lab/provider.py,
plain HTTP: every request that reaches it is a line of its log), an HTTP server on
127.0.0.1:11435 (off the list), and the LAN box's server (listed on its one port). From inside
the agent's namespace:
  - the LAN endpoint is reached through the proxy (CONNECT via the relay's 3128), and the
    host's 127.0.0.1:11434 through the "ollama" route alone (the relay's 127.0.0.1:18790): its
    /api/tags answers, its /api/pull is refused with 403, and the namespace's own
    127.0.0.1:11434 is no raw tunnel any more;
  - the recording Ollama shows what arrived: GET /api/tags and POST /api/chat through the
    route; /api/pull never, by any path;
  - the host's Ollama by CONNECT, the off-list port, the host's other services, the LAN box's
    other ports, the internet and unlisted names are refused by the proxy (each target answers
    from the host's namespace: the control);
  - no direct connection leaves the namespace;
and all of it again after every firewall rule of the engine's namespace is flushed.
Packets go only to namespaces the lab made.
"""

import json
import os
import re
import shutil
import tempfile

import pytest

from conftest import ROOT

from lab import engines as eng
from test_e2e_api_only import DIRECT, GATEWAY_PORT, _write, api  # noqa: F401 (the fixture)
from test_e2e_keys import Provider, from_agent, plan

import sys
sys.path.insert(0, os.path.join(ROOT, "bootstrap"))
from claw_cage.egress import config, keys  # noqa: E402

OLLAMA, OFF = 11434, 11435
LAN = eng.LAN_HOST
REACHED = {"%s:%d" % (LAN, eng.PEER_PORT): "peer %s" % LAN}
# target -> (address the control connects to from the host's namespace, port), or None
REFUSED = {"127.0.0.1:%d" % OLLAMA: ("127.0.0.1", OLLAMA),   # the route's, never by CONNECT
           "127.0.0.1:%d" % OFF: ("127.0.0.1", OFF),
           "127.0.0.1:%d" % eng.HOST_PORT: ("127.0.0.1", eng.HOST_PORT),
           "%s:%d" % (eng.HOST_LAN, eng.HOST_PORT): (eng.HOST_LAN, eng.HOST_PORT),
           "%s:%d" % (LAN, OLLAMA): None,
           "%s:%d" % (eng.WAN_HOST, eng.PEER_PORT): (eng.WAN_HOST, eng.PEER_PORT),
           "localhost:%d" % OLLAMA: None, "host.docker.internal:%d" % OLLAMA: None,
           "[::ffff:127.0.0.1]:%d" % OLLAMA: None, "api.anthropic.com:443": None}


@pytest.fixture(scope="module")
def local(api):  # noqa: F811
    """The api fixture's stack, its proxy restarted with what --firewall --profile local-only
    plans, the recording Ollama and the off-list server on the engine host's loopback."""
    d = tempfile.mkdtemp(prefix="claw-local-")
    try:   # the user's step (cp openclaw.local-only.json openclaw.json), in a copy
        for name in (".env", "docker-compose.yml", "docker-compose.api-only.yml"):
            shutil.copy(os.path.join(api.st.dir, name), os.path.join(d, name))
        shutil.copy(os.path.join(api.st.dir, "openclaw.local-only.json"),
                    os.path.join(d, "openclaw.json"))
        fw = plan(d, "local-only", ["--allow", "%s:%d" % (LAN, eng.PEER_PORT)])
    finally:
        shutil.rmtree(d)
    assert fw.names == list(REACHED), fw.names   # the Ollama endpoint left the CONNECT list
    assert fw.keys == [] and fw.routes == keys.routes({}, ollama="127.0.0.1:%d" % OLLAMA), \
        fw.routes   # its route, with the path allow-list
    # the routes on routes.sock, which the relay's 127.0.0.1:18790 reaches, as --firewall
    # --profile local-only sets up; the socket paths of this test's folders
    cfg = json.loads(config.render(fw.names, (), fw.expires, api.proxy_log, fw.routes,
                                   ["unix:%s/routes.sock" % api.egress]))
    cfg.update(listen=["unix:%s/proxy.sock" % api.egress],
               forward=[{"listen": "127.0.0.1:%d" % GATEWAY_PORT,
                         "to": "unix:%s/gateway.sock" % api.gateway}])
    api.ollama = Provider(api.lab, api.lab.ns, ["127.0.0.1:%d:-:-" % OLLAMA],
                          os.path.join(api.home, "ollama.jsonl"))
    api.lab._serve(api.lab.ns, eng._HTTP, "127.0.0.1", OFF)
    api.lab._wait_port(api.lab.ns, "127.0.0.1", OFF)
    try:
        api.kill_proxy()
        with open(api.proxy_cfg, "w") as f:
            json.dump(cfg, f)
        api.start_proxy()
        api.wait_serving()
        yield api
    finally:
        api.ollama.stop()


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
    if " 200 " not in got.split(" | ")[0] + " " or not got.endswith('{"ok": true}'):
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
    for port in (OLLAMA, OFF):   # refused before any connect: 127.0.0.1 is on no CONNECT list
        assert re.search(r"proxy 127\.0\.0\.1:%d \S+ refused-403 .*IP address not on the "
                         r"allow list" % port, log), log[-3000:]
    assert "route ollama GET /ollama/api/tags 200 " in log
    assert "route ollama GET /ollama/api/pull 403 " in log


def test_the_recording_ollama_sees_chat_arrive_and_never_pull(local):
    """What reaches the host's Ollama, by its own log: the inference paths through the route;
    /api/pull never, through the route or a CONNECT tunnel."""
    body = '{"model": "llama3.2:latest", "messages": [{"role": "user", "content": "hi"}]}'
    ask = {"method": "POST", "host": "127.0.0.1", "port": keys.PORT, "body": body}
    got = from_agent(local, [dict(ask, path="/ollama/api/chat"),
                             dict(ask, path="/ollama/api/pull",
                                  body='{"model": "attacker.example/x/m", "insecure": true}'),
                             dict(ask, path="/ollama/api/create"),
                             dict(ask, path="/ollama/api/delete")])
    assert [g.get("status") for g in got] == [200, 403, 403, 403], got
    tunnel = local.probe({"direct": {}, "loopback": {}, "tunnel": ["127.0.0.1:%d" % OLLAMA]})
    assert tunnel["tunnel"]["127.0.0.1:%d" % OLLAMA]["status"] == 403, tunnel
    seen = [(e["method"], e["target"]) for e in local.ollama.seen()]
    _write("e2e-local-only-ollama-%s.txt" % local.name, "\n".join("%s %s" % x for x in seen))
    assert ("POST", "/api/chat") in seen and ("GET", "/api/tags") in seen, seen
    chat = [e for e in local.ollama.seen() if e["target"] == "/api/chat"]
    assert chat[-1]["body"] == body, chat
    assert [t for _m, t in seen if t not in keys.OLLAMA_PATHS] == [], seen   # no pull, ever
