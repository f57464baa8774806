"""Keys outside the agent, end to end under the api-only profile, on every engine of the suite
(issue 29, "Proof"): the api-only stack of test_e2e_api_only.py (the `api` fixture: the
namespace holder, the real relay, the gateway stand-in, the host proxy in the foreground in the
engine's namespace with a private /etc/hosts), with keys planted in the install's .env.

What --firewall does is done by its own code: `setup.prepare` (the real parser's arguments)
gives the routes, the CONNECT list and the gateway's config; `keys.write_store` fills the key
store; `config.render` writes proxy.json (its socket paths moved to this test's folders, the
keys read from keys_dir: no systemd in the engine's namespace); `setup._write_openclaw` writes
openclaw.routes.json. The stack is then recreated (`compose up -d --force-recreate`), so every
container is made from compose files and a .env that hold the keys.

A stand-in provider (tests/lab/provider.py) serves HTTPS with a certificate of a test CA in the
lab's uplink namespace (203.0.113.20:443, beyond the engine host's default route); the
providers' real names map to it in the proxy's hosts file only, and the proxy trusts the test
CA through SSL_CERT_FILE in its own environment. From inside the agent's namespace (nsenter into
the gateway's network namespace), at the URLs of the generated openclaw.routes.json, with its
placeholders:
  - OpenAI's bearer and Anthropic's x-api-key forms reach the stand-in with the real key and no
    placeholder; a streamed answer (server-sent events) arrives event by event;
  - Telegram's /bot<id>:placeholder/getMe reaches it as /bot<real token>/getMe; another path
    is refused 403 and never reaches it;
  - CONNECT to a routed provider through the relay's 127.0.0.1:3128 is refused (control: a
    listed name is tunnelled);
and no planted key is in `docker inspect` of any container of the stack, in the gateway's
/proc/1/environ, in the state volumes' files or in the install's OpenClaw configs, each scan
with a control that finds what it looks for; the proxy's log has each request line, never a
key or a query; `--verify --json`'s Keys rows pass and print no key.
Packets go only to namespaces the lab made.
"""

import json
import os
import re
import subprocess
import sys
import time
import uuid

import pytest

from conftest import PYTHON, ROOT

from lab import e2e_support as e2e
from lab import engines as eng
from lab.provider import make_certs
from test_e2e_api_only import ALLOWED, _write, api  # noqa: F401 (the fixture)

sys.path.insert(0, os.path.join(ROOT, "bootstrap"))
from claw_cage import cli  # noqa: E402
from claw_cage.egress import config, keys, setup  # noqa: E402

STANDIN = "203.0.113.20"           # the stand-in provider, in the uplink namespace
PROVIDERS = ("api.openai.com", "api.anthropic.com", "api.telegram.org")
TAG = uuid.uuid4().hex[:12]
BOT = "123456"
PLANTED = {"OPENAI_API_KEY": "sk-planted-openai-%s" % TAG,
           "ANTHROPIC_API_KEY": "sk-ant-planted-%s" % TAG,
           "TELEGRAM_BOT_TOKEN": "%s:AAplanted%s" % (BOT, TAG)}
SSE_N, SSE_GAP = 5, 700

# Run in the agent's namespace (nsenter --net): each request in argv[1] on its own connection
# (Connection: close), every read stamped; JSON out: status, head, body, [[time, bytes]].
AGENT_HTTP = r"""
import json, socket, sys, time
out = []
for q in json.loads(sys.argv[1]):
    s = socket.socket(); s.settimeout(20); reads = []
    try:
        s.connect((q["host"], q["port"]))
        body = q.get("body", "").encode()
        head = "%s %s HTTP/1.1\r\nHost: %s:%d\r\nConnection: close\r\n" % (
            q["method"], q["path"], q["host"], q["port"])
        head += "".join("%s: %s\r\n" % tuple(kv) for kv in q.get("headers", []))
        if body:
            head += "Content-Length: %d\r\n" % len(body)
        s.sendall(head.encode() + b"\r\n" + body)
        while True:
            b = s.recv(65536)
            if not b:
                break
            reads.append([time.time(), b.decode("latin-1")])
    except OSError as e:
        out.append({"error": type(e).__name__ + " " + str(e)}); continue
    finally:
        s.close()
    data = "".join(r[1] for r in reads)
    head, _, rest = data.partition("\r\n\r\n")
    status = int(head.split(" ")[1]) if head.startswith("HTTP/1.") else None
    out.append({"status": status, "head": head, "body": rest, "reads": reads})
print(json.dumps(out))
"""


def from_agent(api, requests):   # noqa: F811
    """Each request (method, host, port, path, headers, body) from inside the agent's
    namespace; the answers, each read stamped with its arrival time."""
    res = eng._sh(["nsenter", "--net=/proc/%d/ns/net" % api.pid("openclaw"), PYTHON, "-c",
                   AGENT_HTTP, json.dumps(requests)], timeout=120)
    return json.loads(res.stdout)


class Provider:
    """tests/lab/provider.py in one of the lab's namespaces: every request it receives is a
    JSON line of its log."""

    def __init__(self, lab, ns, specs, log):
        self.log = log
        open(log, "w").close()
        here = os.path.join(ROOT, "tests", "lab", "provider.py")
        self.proc = subprocess.Popen(lab.nsenter(ns) + [PYTHON, here, log] + specs,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     universal_newlines=True, start_new_session=True)
        line = self.proc.stdout.readline().strip()
        assert line == "ready", "the stand-in provider did not start: %r" % line

    def seen(self):
        with open(self.log) as f:
            return [json.loads(ln) for ln in f if ln.strip()]

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)


def plan(directory, profile="api-only", extra=()):
    """setup.prepare of `--firewall --profile PROFILE --dir DIRECTORY`, parsed by the real
    parser: the plan --firewall would install (its program file: the installed pyz)."""
    args = cli.build_parser().parse_args(["--firewall", "--profile", profile, "--dir",
                                          directory] + list(extra))
    real = setup.paths.program_file
    setup.paths.program_file = lambda argv0=None: os.path.join(directory, "claw-cage.pyz")
    try:
        return setup.prepare(args)
    finally:
        setup.paths.program_file = real


def hits(text, values):
    """The names of the values found in text."""
    return sorted(n for n, v in values.items() if v in text)


@pytest.fixture(scope="module")
def keyed(api):  # noqa: F811
    """The api fixture's stack with keys in .env, the store, proxy.json and the gateway's
    config as --firewall makes them, the stand-in provider up, and the stack recreated."""
    env_path = os.path.join(api.st.dir, ".env")
    for var, value in PLANTED.items():
        e2e.set_env_var(env_path, var, value)
    fw = plan(api.st.dir, extra=["--allow-domain", ALLOWED])
    assert fw.keys == ["ANTHROPIC_API_KEY", "OPENAI_API_KEY", "TELEGRAM_BOT_TOKEN"], fw.keys
    assert [r["name"] for r in fw.routes] == ["anthropic", "openai", "telegram"], fw.routes
    assert not set(PROVIDERS) & set(fw.names), fw.names   # routed: off the CONNECT list
    assert ALLOWED in fw.names, fw.names
    api.keys_dir = os.path.join(api.home, "keys")
    keys.write_store(fw.values, fw.keys, api.keys_dir)
    rendered = config.render(fw.names, (443,), fw.expires, api.proxy_log, fw.routes,
                             ["unix:%s/routes.sock" % api.egress], api.keys_dir, True)
    cfg = json.loads(rendered)
    # the socket paths of this test's folders, where --firewall writes /run/claw-cage's
    cfg.update(listen=["unix:%s/proxy.sock" % api.egress],
               forward=[{"listen": "127.0.0.1:18789", "to": "unix:%s/gateway.sock"
                         % api.gateway}])
    setup._write_openclaw(fw)
    api.plan = fw
    # the stand-in provider in the uplink namespace, beyond the engine host's default route:
    # its address on the namespace's loopback, and an exception before the rule that sends
    # every other TCP connection there to the lab's HTTP peer
    certs_dir = os.path.join(api.home, "certs")
    os.makedirs(certs_dir)
    api.certs = make_certs(certs_dir)
    wan = api.lab.wan_ns
    api.lab.in_ns(wan, ["sh", "-c", "ip addr add %s/32 dev lo && iptables -w -t nat -I "
                        "PREROUTING 1 -p tcp -d %s --dport 443 -j RETURN" % (STANDIN, STANDIN)])
    api.provider = Provider(api.lab, wan, ["%s:443:%s:%s" % ((STANDIN,) + api.certs["good"])],
                            os.path.join(api.home, "provider.jsonl"))
    try:
        with open(api.hosts, "a") as f:
            f.write("".join("%s %s\n" % (STANDIN, n) for n in PROVIDERS))
        api.kill_proxy()
        with open(api.proxy_cfg, "w") as f:
            json.dump(cfg, f)
        api.start_proxy(env={"SSL_CERT_FILE": api.certs["ca"]})
        api.st.compose("up", "-d", "--force-recreate", "--pull", "never")
        api.wait_serving()
        yield api
    finally:
        api.provider.stop()


def _routes_config(api):
    with open(os.path.join(api.st.dir, keys.CONFIG)) as f:
        return json.load(f)


def _url(base):
    """"http://HOST:PORT/PATH" -> (host, port, path)"""
    rest = base.split("//", 1)[1]
    hostport, _, path = rest.partition("/")
    host, _, port = hostport.rpartition(":")
    return host, int(port), "/" + path


def _header(entry, name):
    return [v for k, v in entry["headers"] if k.lower() == name]


def _new(api, before):
    return api.provider.seen()[before:]


# ---- the tests, in the order they run on each engine ------------------------------------------

def test_the_gateway_config_points_at_the_routes_with_placeholders(keyed):
    cfg = _routes_config(keyed)
    providers = cfg["models"]["providers"]
    assert providers["openai"] == {"baseUrl": "http://127.0.0.1:18790/openai/v1",
                                   "apiKey": keys.PLACEHOLDER}, providers
    assert providers["anthropic"] == {"baseUrl": "http://127.0.0.1:18790/anthropic",
                                      "apiKey": keys.PLACEHOLDER}, providers
    assert cfg["channels"]["telegram"] == {"apiRoot": "http://127.0.0.1:18790/telegram",
                                           "botToken": "%s:%s" % (BOT, keys.PLACEHOLDER)}
    st = os.stat(os.path.join(keyed.st.dir, keys.CONFIG))
    assert (st.st_uid, st.st_mode & 0o777) == (1000, 0o600), st   # what the gateway reads
    # the store: root 0700, one 0600 file per key, the value and no newline
    assert os.stat(keyed.keys_dir).st_mode & 0o777 == 0o700
    for var, value in PLANTED.items():
        path = os.path.join(keyed.keys_dir, var)
        assert os.stat(path).st_mode & 0o777 == 0o600
        with open(path) as f:
            assert f.read() == value, var


def test_openai_and_anthropic_get_the_real_key_in_their_form(keyed):
    providers = _routes_config(keyed)["models"]["providers"]
    oh, op, opath = _url(providers["openai"]["baseUrl"])
    ah, ap, apath = _url(providers["anthropic"]["baseUrl"])
    body = '{"model": "m", "messages": []}'
    n = len(keyed.provider.seen())
    got = from_agent(keyed, [
        {"method": "POST", "host": oh, "port": op, "path": opath + "/chat/completions",
         "headers": [["Authorization", "Bearer " + keys.PLACEHOLDER],
                     ["Content-Type", "application/json"]], "body": body},
        {"method": "POST", "host": ah, "port": ap, "path": apath + "/v1/messages",
         "headers": [["x-api-key", keys.PLACEHOLDER], ["anthropic-version", "2023-06-01"]],
         "body": body}])
    assert [g.get("status") for g in got] == [200, 200], got
    assert [g["body"] for g in got] == ['{"ok": true}'] * 2, got
    seen = _new(keyed, n)
    assert [(e["method"], e["target"]) for e in seen] == [
        ("POST", "/v1/chat/completions"), ("POST", "/v1/messages")], seen
    openai, anthropic = seen
    assert _header(openai, "authorization") == ["Bearer " + PLANTED["OPENAI_API_KEY"]], openai
    assert _header(openai, "host") == ["api.openai.com"]
    assert _header(anthropic, "x-api-key") == [PLANTED["ANTHROPIC_API_KEY"]], anthropic
    assert _header(anthropic, "authorization") == [] and _header(anthropic, "host") == [
        "api.anthropic.com"]
    assert _header(anthropic, "anthropic-version") == ["2023-06-01"]
    assert openai["body"] == body and anthropic["body"] == body
    for e in seen:
        assert keys.PLACEHOLDER not in json.dumps(e), e
    # each route adds its own key, never another's
    assert PLANTED["ANTHROPIC_API_KEY"] not in json.dumps(openai)
    assert PLANTED["OPENAI_API_KEY"] not in json.dumps(anthropic)


def test_a_streamed_answer_arrives_event_by_event(keyed):
    """SSE_N events, one every SSE_GAP ms (the stand-in stamps each when it sends it): the
    agent reads each before the stand-in sent the last, and the arrivals spread like the
    sends. No speed of this machine is asserted: arrivals are compared with the sends."""
    host, port, path = _url(_routes_config(keyed)["models"]["providers"]["openai"]["baseUrl"])
    got = from_agent(keyed, [{"method": "GET", "host": host, "port": port,
                              "path": "%s/sse?n=%d&gap=%d" % (path, SSE_N, SSE_GAP),
                              "headers": [["Authorization", "Bearer " + keys.PLACEHOLDER]]}])[0]
    assert got.get("status") == 200 and "text/event-stream" in got["head"], got
    arrived, sent, text = {}, {}, ""
    for t, chunk in got["reads"]:
        text += chunk
        for i in range(SSE_N):
            m = "data: event %d " % i
            if i not in arrived and m in text:
                arrived[i] = t
                sent[i] = float(text.split(m, 1)[1].split("\n", 1)[0])
    table = "\n".join("event %d sent %.3f arrived %.3f (+%.3f)" % (
        i, sent[i], arrived[i], arrived[i] - sent[i]) for i in sorted(arrived))
    _write("e2e-keys-sse-%s.txt" % keyed.name, table + "\nreads: %d\n" % len(got["reads"]))
    assert sorted(arrived) == list(range(SSE_N)), got
    assert arrived[0] < sent[SSE_N - 1], "the first event waited for the last:\n" + table
    assert arrived[SSE_N - 1] - arrived[0] >= 0.5 * (sent[SSE_N - 1] - sent[0]), \
        "the events arrived together, not as they were sent:\n" + table
    assert len(got["reads"]) >= SSE_N // 2, table


def test_telegram_path_gets_the_real_token_and_other_paths_are_refused(keyed):
    tg = _routes_config(keyed)["channels"]["telegram"]
    host, port, root = _url(tg["apiRoot"])
    n = len(keyed.provider.seen())
    got = from_agent(keyed, [
        {"method": "GET", "host": host, "port": port,
         "path": "%s/bot%s/getMe" % (root, tg["botToken"])},
        {"method": "GET", "host": host, "port": port, "path": root + "/getUpdates"},
        {"method": "GET", "host": host, "port": port,
         "path": "%s/x/bot%s/getMe" % (root, tg["botToken"])}])
    assert [g.get("status") for g in got] == [200, 403, 403], got
    assert "/bot<token>/" in got[1]["body"], got[1]
    seen = _new(keyed, n)
    assert [e["target"] for e in seen] == ["/bot%s/getMe" % PLANTED["TELEGRAM_BOT_TOKEN"]], seen
    assert _header(seen[0], "host") == ["api.telegram.org"]
    assert keys.PLACEHOLDER not in json.dumps(seen), seen


def test_connect_to_a_routed_provider_is_refused(keyed):
    targets = ["%s:443" % n for n in PROVIDERS] + ["%s:443" % ALLOWED]
    n = len(keyed.provider.seen())
    r = keyed.probe({"direct": {}, "loopback": {}, "tunnel": targets})
    t = r["tunnel"]
    assert t["%s:443" % ALLOWED]["status"] == 200, "control: a listed name is tunnelled: %r" % t
    for name in PROVIDERS:
        assert t["%s:443" % name]["status"] == 403, (name, t)
    assert _new(keyed, n) == []
    with open(keyed.proxy_log) as f:
        log = f.read()
    for name in PROVIDERS:
        assert re.search(r"proxy %s:443 \S+ refused-403 " % re.escape(name), log), log[-3000:]


# ---- no key where the agent (or anyone reading the stack) can look ---------------------------

def _stack_ids(api):
    return api.lab.docker("ps", "-aq", "--no-trunc", "--filter",
                          "label=com.docker.compose.project=" + e2e.PROJECT).stdout.split()


def _inspect_text(api):
    ids = _stack_ids(api)
    return ids, api.lab.docker("inspect", *ids).stdout


def _volume_files(api):
    """{volume/relative path: bytes} of every file of the stack's volumes, read from the
    engine's data root as root (what a backup or a host user with Docker would read)."""
    out = {}
    names = api.lab.docker("volume", "ls", "-q", "--filter",
                           "label=com.docker.compose.project=" + e2e.PROJECT).stdout.split()
    assert names, "the stack has no volume"
    for name in names:
        top = api.lab.docker("volume", "inspect", "-f", "{{.Mountpoint}}", name).stdout.strip()
        for d, _dirs, files in os.walk(top):
            for f in files:
                p = os.path.join(d, f)
                if os.path.isfile(p) and not os.path.islink(p):
                    with open(p, "rb") as fh:
                        out["%s/%s" % (name, os.path.relpath(p, top))] = fh.read()
    return out


def _file_hits(files):
    return dict((k, hits(v.decode("latin-1"), PLANTED)) for k, v in files.items()
                if hits(v.decode("latin-1"), PLANTED))


def test_no_key_in_docker_inspect_of_any_container_of_the_stack(keyed):
    ids, text = _inspect_text(keyed)
    services = sorted(i["Config"]["Labels"]["com.docker.compose.service"]
                      for i in json.loads(text))
    assert {"openclaw", "openclaw-netns", "volumes-init"} <= set(services), services
    assert hits(text, PLANTED) == [], services
    # control: a value .env hands a container (the gateway's token) is found by the same scan
    token = e2e.read_env(os.path.join(keyed.st.dir, ".env"))
    token = [ln.split("=", 1)[1] for ln in token.splitlines()
             if ln.startswith("OPENCLAW_GATEWAY_TOKEN=")][0]
    assert hits(text, {"token": token}) == ["token"]
    # control: a container of the stack given a key is found by the same enumeration and scan
    cid = keyed.lab.docker("create", "--label", "com.docker.compose.project=" + e2e.PROJECT,
                           "-e", "OPENAI_API_KEY=" + PLANTED["OPENAI_API_KEY"],
                           keyed.image, "true").stdout.strip()
    try:
        assert hits(_inspect_text(keyed)[1], PLANTED) == ["OPENAI_API_KEY"]
    finally:
        keyed.lab.docker("rm", "-f", cid)
    assert hits(_inspect_text(keyed)[1], PLANTED) == []


def test_no_key_in_the_gateway_environment(keyed):
    pid = keyed.pid("openclaw")
    with open("/proc/%d/environ" % pid, "rb") as f:
        environ = f.read().decode("latin-1")
    assert hits(environ, PLANTED) == []
    assert "OPENCLAW_CONFIG_PATH=" in environ, "control: the gateway's own environment was read"
    # control: the same scan finds a key in the environment of a process of the gateway's
    # container given one (docker exec -e), read the same way
    proc = subprocess.Popen(keyed.lab.nsenter() + ["docker", "exec", "-e", "OPENAI_API_KEY="
                            + PLANTED["OPENAI_API_KEY"], keyed.cid("openclaw"), "sleep", "30"],
                            env=keyed.lab.env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        found, deadline = [], time.time() + 20
        while not found and time.time() < deadline:
            for p in filter(str.isdigit, os.listdir("/proc")):
                try:
                    if os.readlink("/proc/%s/ns/pid" % p) != os.readlink(
                            "/proc/%d/ns/pid" % pid) or p == str(pid):
                        continue
                    with open("/proc/%s/environ" % p, "rb") as f:
                        found += hits(f.read().decode("latin-1"), PLANTED)
                except OSError:
                    continue
            time.sleep(0.3)
        assert found == ["OPENAI_API_KEY"], found
    finally:
        proc.kill()
        proc.wait(10)


def test_no_key_in_the_state_volumes(keyed):
    files = _volume_files(keyed)
    assert _file_hits(files) == {}, sorted(files)
    # control: a key written into the state volume is found by the same reading and scan
    top = keyed.lab.docker("volume", "inspect", "-f", "{{.Mountpoint}}",
                           "%s_claw-data" % e2e.PROJECT).stdout.strip()
    planted = os.path.join(top, "control-%s.json" % TAG)
    try:
        with open(planted, "w") as f:
            json.dump({"apiKey": PLANTED["ANTHROPIC_API_KEY"]}, f)
        assert _file_hits(_volume_files(keyed)) == {
            "%s_claw-data/control-%s.json" % (e2e.PROJECT, TAG): ["ANTHROPIC_API_KEY"]}
    finally:
        os.unlink(planted)
    assert _file_hits(_volume_files(keyed)) == {}


def test_no_key_in_the_install_configs_only_in_env(keyed):
    """Every file of the install folder: the keys are in .env alone (the control: the scan
    finds them there), never in an OpenClaw config the gateway mounts."""
    files = {}
    for name in os.listdir(keyed.st.dir):
        p = os.path.join(keyed.st.dir, name)
        if os.path.isfile(p):
            with open(p, "rb") as f:
                files[name] = f.read()
    assert {"openclaw.json", keys.CONFIG, "openclaw.api-only.json"} <= set(files), sorted(files)
    assert _file_hits(files) == {".env": sorted(PLANTED)}, _file_hits(files)


def test_the_proxy_log_has_each_request_line_and_no_key_or_query(keyed):
    with open(keyed.proxy_log) as f:
        log = f.read()
    lines = [ln for ln in log.splitlines() if " route " in ln]
    text = "\n".join(lines)
    assert "route openai POST /openai/v1/chat/completions 200 " in text, text
    assert "route anthropic POST /anthropic/v1/messages 200 " in text, text
    assert "route openai GET /openai/v1/sse 200 " in text, text
    assert "route telegram GET /telegram/bot<token>/getMe 200 " in text, text
    assert "route telegram GET /telegram/getUpdates 403 " in text, text
    assert hits(log, PLANTED) == [], "a key in the proxy's log"
    assert "gap=" not in log and "?" not in text, "a query string in the proxy's log"
    # control: the scan finds a key in text of the log's form
    assert hits(lines[0] + " " + PLANTED["OPENAI_API_KEY"], PLANTED) == ["OPENAI_API_KEY"]


def test_verify_keys_rows_pass_and_print_no_key(keyed):
    etc = os.path.join(keyed.st.etc, "upper", "claw-cage")
    os.makedirs(etc, exist_ok=True)
    with open(keyed.proxy_cfg) as src, open(os.path.join(etc, "proxy.json"), "w") as dst:
        dst.write(src.read())
    res = keyed.st.verify("--json")
    assert hits(res.stdout + res.stderr, PLANTED) == [], "--verify printed a key"
    rows = {r["check"]: r for r in json.loads(res.stdout)}
    want = ["no key in docker inspect", "no key in the OpenClaw configs",
            "no key in the gateway's environment", "no key readable in the state volume",
            "route anthropic", "route openai", "route telegram", "budget"] + [
        "CONNECT %s:443 refused" % n for n in PROVIDERS]
    _write("e2e-keys-verify-%s.txt" % keyed.name, json.dumps(rows, indent=1) + res.stderr)
    assert {c: (rows.get(c) or {}).get("status") for c in want} == dict.fromkeys(want, "pass"), \
        json.dumps(rows, indent=1) + res.stderr
    assert "a key inside the agent" not in rows
    for var in PLANTED:   # named, never shown
        assert var in rows["no key in docker inspect"]["detail"]
    # control: a key written into the state volume is found by --verify's own scan (in the
    # running gateway), named by its variable and never shown
    top = keyed.lab.docker("volume", "inspect", "-f", "{{.Mountpoint}}",
                           "%s_claw-data" % e2e.PROJECT).stdout.strip()
    planted = os.path.join(top, "control-verify-%s.txt" % TAG)
    try:
        with open(planted, "w") as f:
            f.write("a pasted key: %s\n" % PLANTED["OPENAI_API_KEY"])
        os.chmod(planted, 0o644)
        res = keyed.st.verify("--json")
    finally:
        os.unlink(planted)
    assert hits(res.stdout + res.stderr, PLANTED) == [], "--verify printed a key"
    row = {r["check"]: r for r in json.loads(res.stdout)}["no key readable in the state volume"]
    assert row["status"] == "fail" and "OPENAI_API_KEY in control-verify-%s.txt" % TAG in \
        row["detail"], row


def test_without_the_test_ca_the_route_refuses_the_provider(keyed):
    """The control of the whole proof: the proxy verifies the provider's certificate against
    its CA store. Without the test CA in its environment the same request is refused (502,
    the reason said) and nothing, no key, reaches the stand-in; with it back, it passes."""
    host, port, path = _url(_routes_config(keyed)["models"]["providers"]["openai"]["baseUrl"])
    ask = [{"method": "GET", "host": host, "port": port, "path": path + "/models"}]
    ca = keyed.proxy_env
    n = len(keyed.provider.seen())
    keyed.kill_proxy()
    try:
        keyed.start_proxy(env={})
        got = from_agent(keyed, ask)[0]
    finally:
        keyed.kill_proxy()
        keyed.start_proxy(env=ca)
    assert got.get("status") == 502 and "TLS with api.openai.com failed" in got["body"], got
    assert _new(keyed, n) == []
    assert from_agent(keyed, ask)[0].get("status") == 200
