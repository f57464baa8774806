"""deploy/docker-compose.api-only.yml and deploy/openclaw.api-only.json, read back from the real
Docker Compose v2 binary (`docker compose config --format json`).

- Every service that docker-compose.yml has is the same here, setting for setting, except the
  differences the api-only design needs (listed in _expected_differences): the hardening
  cannot drift between the two files. Mutations show the comparison notices a change.
- openclaw-netns: the pinned image, the relay only, network_mode none, uid 1000, read-only,
  no capabilities, the two socket directories bind-mounted and never created by Docker.
- The gateway and the CLI join openclaw-netns's namespace; nothing publishes a port, sets
  DNS or a host entry; OpenClaw and child processes are pointed at the relay.
- openclaw.api-only.json: documented keys of the pinned release only (the vendored key list);
  it includes the user's openclaw.json and only adds the proxy settings.
- The relay (deploy/netns-relay.js) in real node, in a network namespace of its own with only
  loopback: both directions carry bytes, and with the proxy's socket gone a connection gets
  nothing (fail closed).
"""

import copy
import json
import os
import shutil
import socket
import subprocess
import threading
import time

import pytest

from conftest import ROOT, require_root

import compose_support as base

DEPLOY = os.path.join(ROOT, "deploy")
API_COMPOSE = os.path.join(DEPLOY, "docker-compose.api-only.yml")
API_POLICY = os.path.join(DEPLOY, "openclaw.api-only.json")
RELAY = os.path.join(DEPLOY, "netns-relay.js")
HOLDER = "openclaw-netns"
PROXY_URL = "http://127.0.0.1:3128"
PROXY_ENV = {"OPENCLAW_PROXY_URL": PROXY_URL, "HTTP_PROXY": PROXY_URL,
             "HTTPS_PROXY": PROXY_URL, "http_proxy": PROXY_URL, "https_proxy": PROXY_URL}
API_CONFIG = base.STATE_DIR + "/openclaw.api-only.json"
ROUTES_CONFIG = base.STATE_DIR + "/openclaw.routes.json"   # both profiles' config path
KEYS = json.load(open(os.path.join(ROOT, "tests", "policy",
                                   "openclaw-2026.7.1-config-keys.json")))


def configs(tmp_path, api_text=None):
    """(internet, api-only) resolved by the real Compose, same .env, every profile."""
    env = base.installed_env()
    for sub in ("internet", "api"):
        (tmp_path / sub).mkdir(exist_ok=True)
    internet = base.compose_config(base.project(tmp_path / "internet", env), ("cli",))
    d = base.project(tmp_path / "api", env, api_text if api_text is not None
                     else base.read(API_COMPOSE))
    api = base.compose_config(d, ("cli",))
    # the install dir's own files (openclaw.json ...) as if both lived in one directory
    here = json.dumps(str(tmp_path / "api"))[1:-1]
    there = json.dumps(str(tmp_path / "internet"))[1:-1]
    return internet, json.loads(json.dumps(api).replace(here, there))


def _is_api_policy_mount(v):
    return (v.get("type") == "bind" and v.get("read_only") is True
            and v.get("target") == API_CONFIG
            and str(v.get("source", "")).endswith("/openclaw.api-only.json"))


def _api_policy_mounts(volumes):
    """The internet file's policy mount (openclaw.json) plus the same for the api-only file."""
    extra = []
    for v in volumes:
        if base.policy_mount(v) and v["target"].endswith("/openclaw.json"):
            m = copy.deepcopy(v)
            m["source"] = m["source"][:-len("openclaw.json")] + "openclaw.api-only.json"
            m["target"] = API_CONFIG
            extra.append(m)
    assert len(extra) == 1, volumes
    return volumes + extra


RELAY_HEALTH = ('node -e "$$0" http http://127.0.0.1:18789/healthz 3000 && '
                'exec node -e "$$0" tcp 127.0.0.1 3128 3000')


def _expected_differences(name, internet_svc, api_svc):
    """The internet profile's service turned into what the api-only one must be."""
    want = copy.deepcopy(internet_svc)
    want["volumes"] = _api_policy_mounts(want["volumes"])
    if name == "volumes-init":
        return want
    env = want["environment"]
    env["OPENCLAW_CONFIG_PATH"] = API_CONFIG
    env.update(PROXY_ENV)
    if name in ("openclaw", "openclaw-cli"):
        for key in ("ports", "networks", "extra_hosts", "dns"):
            want.pop(key, None)
        want["network_mode"] = "service:" + HOLDER
        want["depends_on"] = dict(want["depends_on"])
        want["depends_on"][HOLDER] = {"condition": "service_started", "restart": True,
                                      "required": True}
    if name == "openclaw":   # the same probe, then the relay's port in the namespace
        js = want["healthcheck"]["test"][3]
        want["healthcheck"]["test"] = ["CMD", "sh", "-c", RELAY_HEALTH, js]
    return want


def drift(internet, api):
    """Every difference between the two files beyond the api-only design's, as sentences."""
    p = []
    extra = set(api["services"]) - set(internet["services"])
    if extra != {HOLDER}:
        p.append("services only in api-only: %r, want only %s" % (sorted(extra), HOLDER))
    for name, svc in internet["services"].items():
        got = api["services"].get(name)
        if got is None:
            p.append("%s missing" % name)
            continue
        want = _expected_differences(name, svc, got)
        for key in sorted(set(want) | set(got)):
            if want.get(key) != got.get(key):
                p.append("%s.%s: %r, want %r" % (name, key, got.get(key), want.get(key)))
    if api.get("networks"):
        p.append("networks %r: the api-only profile has none" % api.get("networks"))
    if api.get("volumes") != internet.get("volumes"):
        p.append("volumes %r differ" % api.get("volumes"))
    return p


def holder_problems(svc, image):
    p = []
    if svc.get("network_mode") != "none" or svc.get("networks") or svc.get("ports"):
        p.append("has a network: %r %r %r" % (svc.get("network_mode"), svc.get("networks"),
                                             svc.get("ports")))
    if svc.get("image") != image:
        p.append("image %r is not the gateway's %r" % (svc.get("image"), image))
    entry = svc.get("entrypoint") or []
    if entry[:2] != ["sh", "-c"] or 'node "$$CLAW_RELAY_JS"' not in entry[2] or \
            "while :" not in entry[2] or svc.get("command") or \
            (svc.get("environment") or {}).get("CLAW_RELAY_JS") != "/claw-cage/netns-relay.js":
        p.append("runs %r %r, not the relay under its loop" % (entry, svc.get("command")))
    for key, want in (("user", "65100:65100"), ("read_only", True), ("init", True),
                      ("cap_drop", ["ALL"]), ("restart", "unless-stopped")):
        if svc.get(key) != want:
            p.append("%s is %r, want %r" % (key, svc.get(key), want))
    if svc.get("cap_add") or svc.get("privileged") or svc.get("devices"):
        p.append("privileges: %r %r %r" % (svc.get("cap_add"), svc.get("privileged"),
                                           svc.get("devices")))
    if "no-new-privileges:true" not in (svc.get("security_opt") or []):
        p.append("no no-new-privileges:true")
    if not (svc.get("mem_limit") and svc.get("cpus") and svc.get("pids_limit")):
        p.append("no resource limits")
    heap = base.heap_mb(svc)
    if heap is None or heap * base.MIB > 0.75 * base.to_bytes(svc.get("mem_limit") or 0):
        p.append("heap %r not pinned within 3/4 of mem_limit %r" % (heap, svc.get("mem_limit")))
    if (svc.get("logging") or {}).get("driver") != "json-file":
        p.append("logs not json-file")
    env = svc.get("environment") or {}
    if env.get("CLAW_EGRESS_SOCK") != "/run/claw-cage/egress/proxy.sock" or \
            env.get("CLAW_GATEWAY_SOCK") != "/run/claw-cage/gateway/gateway.sock":
        p.append("relay sockets %r" % env)
    if base.TOKEN_VAR in env or svc.get("env_file"):
        p.append("the relay gets .env (secrets it never needs)")
    mounts = sorted((v.get("type"), v.get("target"), bool(v.get("read_only")),
                     # long syntax: false (omitted) unless asked; never a root-made dir
                     bool((v.get("bind") or {}).get("create_host_path")))
                    for v in svc.get("volumes") or [])
    want = sorted([("bind", "/claw-cage/netns-relay.js", True, True),
                   ("bind", "/run/claw-cage/egress", False, False),
                   ("bind", "/run/claw-cage/gateway", False, False)])
    if mounts != want:
        p.append("mounts %r, want %r" % (mounts, want))
    test = (svc.get("healthcheck") or {}).get("test") or []
    if test[:3] != ["CMD", "node", "-e"] or test[4:] != ["tcp", "127.0.0.1", "3128", "3000"]:
        p.append("healthcheck %r does not probe the relay's port" % test)
    return p


def test_api_only_is_docker_compose_yml_plus_the_namespace(tmp_path):
    internet, api = configs(tmp_path)
    assert api["name"] == internet["name"] == "claw-cage"
    assert drift(internet, api) == []
    gw = api["services"]["openclaw"]
    assert holder_problems(api["services"][HOLDER], gw["image"]) == []
    # the hardening checks of docker-compose.yml hold here too (the network ones aside)
    for name in base.SERVICES:
        svc = copy.deepcopy(api["services"][name])
        assert svc["environment"].pop("OPENCLAW_CONFIG_PATH") == API_CONFIG
        svc["environment"]["OPENCLAW_CONFIG_PATH"] = ROUTES_CONFIG
        svc["volumes"] = [v for v in svc["volumes"] if not _is_api_policy_mount(v)]
        problems = base.write_path_problems(svc)
        assert problems == [], (name, problems)


def test_paths_come_from_env_with_the_contract_defaults(tmp_path):
    _, api = configs(tmp_path)
    sources = {v["target"]: v["source"] for v in api["services"][HOLDER]["volumes"]}
    assert sources["/run/claw-cage/egress"] == "/run/claw-cage/egress"
    assert sources["/run/claw-cage/gateway"] == "/run/claw-cage/gateway"
    env = base.installed_env() + "CLAW_EGRESS_DIR=/srv/e\nCLAW_GATEWAY_DIR=/srv/g\n"
    (tmp_path / "moved").mkdir()
    d = base.project(tmp_path / "moved", env, base.read(API_COMPOSE))
    moved = base.compose_config(d, ("cli",))
    sources = {v["target"]: v["source"] for v in moved["services"][HOLDER]["volumes"]}
    assert (sources["/run/claw-cage/egress"], sources["/run/claw-cage/gateway"]) == \
        ("/srv/e", "/srv/g")


API_MUTATIONS = [
    ("    network_mode: none\n    environment:\n      CLAW_RELAY_JS",
     "    environment:\n      CLAW_RELAY_JS"),
    ("    network_mode: \"service:openclaw-netns\"\n    healthcheck:",
     "    ports:\n      - \"127.0.0.1:18789:18789\"\n    healthcheck:"),
    ("      OPENCLAW_PROXY_URL: http://127.0.0.1:3128\n", ""),
    ("      https_proxy: http://127.0.0.1:3128\n", ""),
    ("          create_host_path: false\n", "          create_host_path: true\n"),
    ("    user: \"65100:65100\"\n    init: true\n    read_only: true\n    volumes:\n"
     "      - ./netns-relay.js",
     "    user: \"0:0\"\n    init: true\n    read_only: true\n    volumes:\n"
     "      - ./netns-relay.js"),
    ("    user: \"65100:65100\"\n", "    user: \"1000:1000\"\n"),
    ("        while :; do node", "        node"),
    ("tcp 127.0.0.1 3128 3000\n", "true\n"),
    ("    mem_limit: 128m\n", "    mem_limit: 128m\n    cap_add:\n      - NET_ADMIN\n"),
    ("      - ./openclaw.api-only.json:/home/node/.openclaw/openclaw.api-only.json:ro\n", ""),
    ("      OPENCLAW_CONFIG_PATH: /home/node/.openclaw/openclaw.api-only.json\n",
     "      OPENCLAW_CONFIG_PATH: /home/node/.openclaw/openclaw.routes.json\n"),
    ("      - /tmp:size=${CLAW_TMP_SIZE:-64m},mode=1777,nosuid,nodev\n", ""),
    ("    read_only: true\n", "    read_only: false\n"),
]


@pytest.mark.parametrize("old,new", API_MUTATIONS, ids=[
    "holder-networked", "gateway-own-namespace", "no-proxy-url", "no-lowercase-proxy",
    "docker-creates-dirs", "holder-root", "holder-host-uid", "relay-unsupervised",
    "health-no-relay", "holder-cap-add", "no-api-config-mount",
    "internet-config-path", "gateway-no-tmp", "holder-writable-root"])
def test_comparison_catches_a_weakened_api_only_file(tmp_path, old, new):
    text = base.read(API_COMPOSE)
    assert old in text, "mutation no longer applies: %r" % old
    internet, api = configs(tmp_path, text.replace(old, new, 1))
    gw = api["services"]["openclaw"]
    problems = drift(internet, api) + holder_problems(api["services"][HOLDER], gw["image"])
    assert problems, "mutation %r -> %r went unnoticed" % (old, new)


# ---------------------------------------------------------------- openclaw.api-only.json

def _leaves(node, path=""):
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _leaves(v, path + "." + k if path else k)
    else:
        yield path, node


def test_api_only_policy_adds_only_documented_proxy_keys():
    with open(API_POLICY, encoding="utf-8") as f:
        cfg = json.load(f)
    # the user's policy, included whole (OpenClaw's $include: siblings deep-merged over it)
    assert cfg.pop("$include") == "./openclaw.routes.json"   # openclaw.json with the routes
    leaves = dict(_leaves(cfg))
    assert leaves == {"proxy.enabled": True, "proxy.proxyUrl": PROXY_URL,
                      "proxy.loopbackMode": "gateway-only",
                      "tools.web.fetch.useTrustedEnvProxy": True}
    for path, value in leaves.items():
        spec = KEYS["keys"].get(path)
        assert spec is not None, "%s is not a documented key of the pinned release" % path
        if "enum" in spec:
            assert value in spec["enum"], (path, value)
        elif spec.get("type") == "boolean":
            assert isinstance(value, bool), path
        else:
            assert spec.get("type") == "string" and isinstance(value, str), path
    assert "$include" in KEYS["keys"], "root $include is documented for the pinned release"


def test_api_only_policy_touches_no_key_of_openclaw_json():
    """Sibling keys override what $include brings: none may override a setting of the
    internet template (their deep merge adds the proxy and nothing else)."""
    with open(API_POLICY, encoding="utf-8") as f:
        cfg = json.load(f)
    cfg.pop("$include")
    with open(os.path.join(DEPLOY, "openclaw.json"), encoding="utf-8") as f:
        user = dict(_leaves(json.load(f)))
    for path in dict(_leaves(cfg)):
        assert not [u for u in user if u == path or u.startswith(path + ".")
                    or path.startswith(u + ".")], path


# ---------------------------------------------------------------- the relay, in real node

def _serve_unix(path, reply):
    srv = socket.socket(socket.AF_UNIX)
    srv.bind(path)
    srv.listen(8)

    def loop():
        while True:
            try:
                c, _ = srv.accept()
            except OSError:
                return
            with c:
                data = c.recv(100)
                c.sendall(reply + data)
    threading.Thread(target=loop, daemon=True).start()
    return srv


RELAY_PROBE = r"""
import socket, sys, time
def ask(target, payload):
    fam = socket.AF_UNIX if isinstance(target, str) else socket.AF_INET
    s = socket.socket(fam); s.settimeout(3)
    try:
        s.connect(target); s.sendall(payload); return s.recv(100).decode() or "EOF"
    except OSError as e:
        return "ERR " + type(e).__name__
    finally:
        s.close()
up = socket.socket(); up.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
up.bind(("127.0.0.1", 18789)); up.listen(4)
import threading
def gw():
    while True:
        c, _ = up.accept(); c.sendall(b"gateway:" + c.recv(100)); c.close()
threading.Thread(target=gw, daemon=True).start()
import subprocess, os
env = dict(os.environ, CLAW_EGRESS_SOCK=sys.argv[2], CLAW_GATEWAY_SOCK=sys.argv[3])
relay = subprocess.Popen([sys.argv[4], sys.argv[1]], env=env, stderr=subprocess.PIPE)
for _ in range(100):
    if os.path.exists(sys.argv[3]) and ask(("127.0.0.1", 3128), b"") != "ERR ConnectionRefusedError":
        break
    time.sleep(0.05)
print("egress", ask(("127.0.0.1", 3128), b"hello"))
print("ingress", ask(sys.argv[3], b"dash"))
print("mode", oct(os.stat(sys.argv[3]).st_mode & 0o777))
print("interfaces", sorted(n for _, n in socket.if_nameindex()))
sys.stdout.flush()
input()                      # the test removes the proxy's socket
print("egress-down", ask(("127.0.0.1", 3128), b"hello"))
relay.terminate(); relay.wait(5)
print("socket-left", os.path.exists(sys.argv[3]))
"""


def test_relay_carries_both_ways_and_fails_closed(tmp_path):
    require_root("the relay runs in a network namespace of its own (unshare -n)")
    node = shutil.which("node")
    if not node:
        pytest.fail("node is not installed: tests/apt-packages.txt (nodejs)")
    d = tmp_path / "socks"
    d.mkdir()
    egress, gateway = str(d / "proxy.sock"), str(d / "gateway.sock")
    srv = _serve_unix(egress, b"proxy:")
    probe = subprocess.Popen(
        ["unshare", "-n", "sh", "-c", "ip link set lo up && exec \"$@\"", "sh",
         base.sys.executable,
         "-c", RELAY_PROBE, RELAY, egress, gateway, node],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        universal_newlines=True)
    try:
        lines = [probe.stdout.readline().strip() for _ in range(4)]
        srv.close()
        os.unlink(egress)
        out, err = probe.communicate("go\n", timeout=20)
    finally:
        if probe.poll() is None:
            probe.kill()
    lines += out.split("\n")
    assert lines[0] == "egress proxy:hello", (lines, err)
    assert lines[1] == "ingress gateway:dash", (lines, err)
    assert lines[2] == "mode 0o666", lines
    assert lines[3] == "interfaces ['lo']", lines
    assert lines[4] in ("egress-down EOF", "egress-down ERR ConnectionResetError"), lines
    assert lines[5] == "socket-left False", lines


def test_every_variable_is_the_internet_files_or_documented():
    """${VARS} of the api-only file: those of docker-compose.yml (documented in .env.example),
    plus the two socket directories and the relay's loopback ports, documented with the
    profile."""
    import re
    names = lambda text: set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)", text))
    extra = names(base.read(API_COMPOSE)) - names(base.read(base.COMPOSE_PATH))
    assert extra == {"CLAW_EGRESS_DIR", "CLAW_GATEWAY_DIR", "CLAW_LOOPBACK_PORTS"}, extra
    doc = base.read(os.path.join(ROOT, "docs", "api-only-namespace.md"))
    assert all("`%s`" % n in doc for n in extra), extra


def test_compose_lint_finds_only_the_two_socket_directories(tmp_path):
    """compose-lint, with the same config as docker-compose.yml: its only findings are the two
    CL-0013 (a host path under /run mounted) on openclaw-netns, for /run/claw-cage/egress and
    /run/claw-cage/gateway. Those two directories are the design: the only way through the
    namespace, claw-cage's own, holding one socket each, and mounted into the relay alone
    (not into OpenClaw). Anything else compose-lint says fails this test."""
    d = base.project(tmp_path, base.shipped_env(), base.read(API_COMPOSE))
    rc, report = base.run_lint(d, "--config", base.LINT_CONFIG, "--strict-config")
    open_findings = sorted((f["rule_id"], f["service"], f["message"].split("'")[1])
                           for f in report["findings"] if not f.get("suppressed"))
    assert open_findings == [("CL-0013", HOLDER, "/run/claw-cage/egress"),
                             ("CL-0013", HOLDER, "/run/claw-cage/gateway")], report["findings"]
    assert not report["errors"], report["errors"]
