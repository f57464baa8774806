"""Keys outside the agent under the internet profile, on every engine of the suite (issue 29).

The engines' stack (test_e2e_engines.py's `stack`: the built pyz installed, the stand-in
gateway up, `--firewall` applied by the program), then what a user does: distinctive fake keys
(OPENAI_API_KEY, ANTHROPIC_API_KEY, TELEGRAM_BOT_TOKEN) in the install's .env, and
`--firewall` again. That run, the real program in a private mount namespace whose /etc,
/usr/local/lib and /run are overlays (nothing of the machine is written), produces the key
store, /etc/claw-cage/proxy.json (the routes, routes_listen on the bridge's address) and
openclaw.routes.json; the test takes them as they are, changing only the proxy's log file and
keys_dir (a copy of the store, where the overlay is not mounted). There is no systemd in the
engine's namespace: the proxy runs in the foreground as the unit's ExecStart runs it, with the
test CA trusted through SSL_CERT_FILE and a private /etc/hosts (unshare -m, a bind mount)
mapping the providers' real names to the stand-in provider (tests/lab/provider.py, HTTPS with
a certificate of a test CA) in the uplink namespace. The containers are recreated after the
keys are in .env: a compose file that still handed .env to a container would be seen.

From inside the gateway container's network namespace (nsenter --net, the host's python):
  - http://<bridge address>:18790/openai/..., /anthropic/... with the placeholder: the
    stand-in receives the real key and no placeholder; a server-sent-events stream arrives in
    pieces (the spread of arrival times against the spread of the server's own send times);
    Telegram's /bot<placeholder>/ path becomes the real token;
  - the host's other ports on the bridge address (18789, 22, 8081) are not reached while 18790
    is; the control: each answers from the host's namespace;
and again with ufw enabled (default deny incoming): the route row must not be shadowed by
ufw's INPUT chains; its control: claw-cage's jumps removed, ufw drops the route too.
No key in `docker inspect` of any container of the stack, in the gateway's /proc/1/environ,
in the state volumes, in the managed configs; each scan has a control that finds a planted
value. The proxy's log has the request lines and no key or query string.
Packets go only to namespaces the lab made.
"""

import json
import os
import shutil
import signal
import subprocess
import time

import pytest

from conftest import PYTHON, ROOT, refuse

from lab import e2e_support as e2e
from lab import engines as eng
from lab.provider import make_certs

import test_e2e_engines as te
from test_e2e_engines import stack  # noqa: F401 (the fixture: one engine, the stack caged)

import sys
sys.path.insert(0, os.path.join(ROOT, "bootstrap"))
from claw_cage.egress import config as egress_config, keys  # noqa: E402
from claw_cage.firewall import rules  # noqa: E402

STANDIN = "203.0.113.20"          # the stand-in provider, in the uplink namespace
ROUTES_PORT = keys.PORT
KEYS = {"OPENAI_API_KEY": "sk-e2e-OPENAI-4b1d7f09c2a8e6",
        "ANTHROPIC_API_KEY": "sk-ant-e2e-ANTHROPIC-93e0c5a7d1f2",
        "TELEGRAM_BOT_TOKEN": "7123456789:AAE2e-TELEGRAM-secret-5c8b1e"}
BOT_ID = KEYS["TELEGRAM_BOT_TOKEN"].split(":")[0]
HOSTS = ["127.0.0.1 localhost"] + ["%s %s" % (STANDIN, n) for n in
                                   ("api.openai.com", "api.anthropic.com", "api.telegram.org")]
SSE_N, SSE_GAP_MS = 5, 400
OTHER_PORTS = (te.GATEWAY_PORT, 22, eng.HOST_PORT)   # the host's, on the bridge address

# Run inside the gateway container's network namespace: each check of the spec in turn.
PROBE = r"""
import json, socket, sys, time
def err(e):
    return getattr(e, "strerror", None) or type(e).__name__
def connect(host, port, t=2):
    s = socket.socket(); s.settimeout(t)
    try:
        s.connect((host, port)); return "reached"
    except OSError as e:
        return err(e)
    finally:
        s.close()
class Reader:
    def __init__(self, s):
        self.s, self.buf = s, b""
    def more(self):
        d = self.s.recv(65536)
        if not d:
            raise EOFError()
        self.buf += d
    def until(self, sep):
        while sep not in self.buf:
            self.more()
        out, self.buf = self.buf.split(sep, 1)
        return out
    def exactly(self, n):
        while len(self.buf) < n:
            self.more()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out
def http(host, port, method, path, headers, body):
    s = socket.socket(); s.settimeout(20)
    try:
        s.connect((host, port))
        head = "%s %s HTTP/1.1\r\nHost: %s:%d\r\n" % (method, path, host, port)
        head += "".join("%s: %s\r\n" % kv for kv in headers.items())
        if body:
            head += "Content-Length: %d\r\n" % len(body)
        s.sendall((head + "\r\n").encode() + body.encode())
        r = Reader(s)
        lines = r.until(b"\r\n\r\n").decode("latin-1").split("\r\n")
        hdrs = dict((l.split(":", 1)[0].lower(), l.split(":", 1)[1].strip())
                    for l in lines[1:] if ":" in l)
        out = {"status": int(lines[0].split(" ")[1]), "headers": hdrs, "pieces": []}
        data = b""
        if hdrs.get("transfer-encoding") == "chunked":
            while True:
                n = int(r.until(b"\r\n").split(b";")[0], 16)
                if not n:
                    break
                chunk = r.exactly(n)
                out["pieces"].append([time.time(), chunk.decode("latin-1")])
                data += chunk
                r.exactly(2)
        else:
            data = r.exactly(int(hdrs.get("content-length", "0")))
        out["body"] = data.decode("latin-1")[:2000]
        return out
    except (OSError, EOFError, ValueError) as e:
        return {"status": None, "error": err(e)}
    finally:
        s.close()
out = {}
for name, c in json.loads(sys.argv[1]):
    if c["kind"] == "tcp":
        out[name] = connect(c["host"], c["port"])
    else:
        out[name] = http(c["host"], c["port"], c["method"], c["path"], c.get("headers", {}),
                         c.get("body", ""))
print(json.dumps(out))
"""


class Keyed:
    """The stack with keys in .env, --firewall's files, the proxy and the stand-in."""

    def __init__(self, st, home):
        self.st, self.lab, self.home, self.name = st, st.lab, home, st.name
        self.overlay = os.path.join(home, "overlays")
        self.proxy_cfg = os.path.join(home, "proxy.json")
        self.proxy_log = os.path.join(home, "proxy.log")
        self.standin_log = os.path.join(home, "standin.jsonl")
        self.hosts = os.path.join(home, "hosts")
        self.store = os.path.join(home, "keys")
        self.proxy = self.standin = None
        self.gw = st.bridge_gateway()

    # -- the program, as root runs it, with overlays (nothing of the machine written) --------
    def program(self, *args):
        """`sudo python3 <dir>/claw-cage.pyz ARGS` in the engine's namespace; /etc is the
        stack's overlay (as EngineStack.program), /usr/local/lib and /run overlays of their
        own: --firewall with keys copies the program there and makes the run folders."""
        mounts = []
        for top, upper, work in (
                ("/etc", os.path.join(self.st.etc, "upper"), os.path.join(self.st.etc, "work")),
                ("/usr/local/lib",) + self._dirs("usr_local_lib"),
                ("/run",) + self._dirs("run")):
            mounts.append("mount -t overlay overlay -o lowerdir=%s,upperdir=%s,workdir=%s %s"
                          % (top, upper, work, top))
        script = "mount --make-rprivate / && %s && exec \"$@\"" % " && ".join(mounts)
        argv = ["unshare", "-m", "sh", "-c", script, "sh", PYTHON,
                os.path.join(self.st.dir, "claw-cage.pyz")] + list(args)
        return self.lab.run(argv, check=False, env={"CLAW_CAGE_INTERNET_PROBE": "off"},
                            timeout=120, cwd=self.st.dir)

    def _dirs(self, sub):
        out = tuple(os.path.join(self.overlay, sub, d) for d in ("upper", "work"))
        for d in out:
            os.makedirs(d, exist_ok=True)
        return out

    def firewall(self):
        res = self.program("--firewall", "--dir", self.st.dir, "--no-persist")
        assert res.returncode == 0, "--firewall on %s failed:\n%s%s" % (
            self.name, res.stdout, res.stderr)
        return res

    def etc_file(self, path):
        """A file --firewall wrote under /etc, from the overlay's upper layer."""
        return os.path.join(self.st.etc, "upper", os.path.relpath(path, "/etc"))

    # -- the stand-in provider -------------------------------------------------------------
    def start_standin(self, certs):
        wan = self.lab.wan_ns
        # the uplink sends every TCP connection to its HTTP server: not this address's 443
        self.lab.in_ns(wan, ["sh", "-c", "ip addr add %s/32 dev lo && iptables -w -t nat -I "
                             "PREROUTING 1 -i up0 -d %s -p tcp --dport 443 -j ACCEPT"
                             % (STANDIN, STANDIN)])
        open(self.standin_log, "w").close()
        self.standin = subprocess.Popen(
            self.lab.nsenter(wan) + [PYTHON, os.path.join(ROOT, "tests", "lab", "provider.py"),
                                     self.standin_log, "%s:443:%s:%s" % ((STANDIN,) +
                                                                         certs["good"])],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, universal_newlines=True,
            start_new_session=True)
        assert self.standin.stdout.readline().strip() == "ready"

    def seen(self):
        with open(self.standin_log) as f:
            return [json.loads(ln) for ln in f if ln.strip()]

    # -- the proxy, as the unit's ExecStart runs it ------------------------------------------
    def start_proxy(self, certs, address_up=True):
        """address_up False: the bridge's address is not there; wait for the proxy's
        "listening on" line instead of a connection."""
        self.certs = certs
        with open(self.hosts, "w") as f:
            f.write("\n".join(HOSTS) + "\n")
        mount = ("mount --make-rprivate / && mount --bind %s /etc/hosts && exec \"$@\""
                 % self.hosts)
        argv = self.lab.nsenter() + ["unshare", "-m", "sh", "-c", mount, "sh", PYTHON,
                                     self.st.pyz, "--proxy", "--config", self.proxy_cfg]
        err = open(os.path.join(self.home, "proxy.stderr"), "ab")
        self.proxy = subprocess.Popen(argv, stdout=err, stderr=err, stdin=subprocess.DEVNULL,
                                      env=dict(os.environ, SSL_CERT_FILE=certs["ca"]),
                                      start_new_session=True)
        err.close()
        deadline = time.time() + 20
        while time.time() < deadline:
            assert self.proxy.poll() is None, "the proxy exited %d: %s" % (
                self.proxy.returncode, self.tail("proxy.stderr"))
            if self.lab.connect(self.lab.ns, self.gw, ROUTES_PORT, 1) if address_up else \
                    "listening on" in self.tail("proxy.stderr"):
                return
            time.sleep(0.2)
        raise AssertionError("the proxy does not listen: " + self.tail("proxy.stderr"))

    def stop(self, standin=True):
        for proc in (self.proxy, self.standin if standin else None):
            if proc and proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
        self.proxy = None
        if standin:
            self.standin = None

    def tail(self, name):
        try:
            with open(os.path.join(self.home, name), errors="replace") as f:
                return f.read()[-2000:]
        except OSError:
            return "(none)"

    def log_text(self):
        with open(self.proxy_log, errors="replace") as f:
            return f.read()

    # -- from inside the gateway's network namespace -------------------------------------------
    def gateway_pid(self):
        cid = self.st.container_id()
        assert cid, "the gateway is not running on %s" % self.name
        return int(self.lab.docker("inspect", "-f", "{{.State.Pid}}", cid).stdout.strip())

    def probe(self, spec):
        res = eng._sh(["nsenter", "--net=/proc/%d/ns/net" % self.gateway_pid(), PYTHON, "-c",
                       PROBE, json.dumps(spec)], timeout=180)
        return json.loads(res.stdout)

    def route_checks(self):
        placeholder = keys.PLACEHOLDER
        gw = self.gw
        return [
            ("openai", {"kind": "http", "host": gw, "port": ROUTES_PORT, "method": "POST",
                        "path": "/openai/v1/chat/completions?trace=e2equery",
                        "headers": {"Authorization": "Bearer " + placeholder,
                                    "Content-Type": "application/json"},
                        "body": '{"model": "gpt-e2e", "messages": []}'}),
            ("anthropic", {"kind": "http", "host": gw, "port": ROUTES_PORT, "method": "POST",
                           "path": "/anthropic/v1/messages",
                           "headers": {"x-api-key": placeholder,
                                       "anthropic-version": "2023-06-01"},
                           "body": '{"model": "claude-e2e", "max_tokens": 5}'}),
            ("sse", {"kind": "http", "host": gw, "port": ROUTES_PORT, "method": "GET",
                     "path": "/openai/v1/sse?n=%d&gap=%d" % (SSE_N, SSE_GAP_MS),
                     "headers": {"Authorization": "Bearer " + placeholder,
                                 "Accept": "text/event-stream"}}),
            ("telegram", {"kind": "http", "host": gw, "port": ROUTES_PORT, "method": "GET",
                          "path": "/telegram/bot%s:%s/getMe" % (BOT_ID, placeholder)}),
        ]

    def port_checks(self):
        return [("tcp %s:%d" % (self.gw, p), {"kind": "tcp", "host": self.gw, "port": p})
                for p in (ROUTES_PORT,) + OTHER_PORTS]

    def from_host(self):
        """The control: each port of the bridge address answers from the host's namespace."""
        return {"tcp %s:%d" % (self.gw, p): self.lab.connect(self.lab.ns, self.gw, p, 2)
                for p in (ROUTES_PORT,) + OTHER_PORTS}


def _copy_store(src, dst):
    """The key store --firewall wrote (root 0700, files 0600), copied as it is."""
    os.makedirs(dst, 0o700)
    for name in os.listdir(src):
        shutil.copy2(os.path.join(src, name), os.path.join(dst, name))


@pytest.fixture(scope="module")
def keyed(stack, tmp_path_factory):  # noqa: F811
    st = stack
    home = str(tmp_path_factory.mktemp("keys-" + st.name))
    os.chmod(home, 0o755)
    k = Keyed(st, home)
    certs_dir = os.path.join(home, "certs")
    os.makedirs(certs_dir)
    certs = make_certs(certs_dir)
    env_path = os.path.join(st.dir, ".env")
    with open(env_path) as f:
        env_before = f.read()
    servers = []
    try:
        for var, value in KEYS.items():
            e2e.set_env_var(env_path, var, value)
        res = k.firewall()
        k.firewall_output = res.stdout + res.stderr
        # the real files of that run
        with open(k.etc_file(egress_config.PATH)) as f:
            written = json.load(f)
        k.written = written
        store = k.etc_file(keys.STORE)
        k.store_modes = (os.stat(store).st_mode & 0o777, {
            n: os.stat(os.path.join(store, n)).st_mode & 0o777 for n in os.listdir(store)})
        _copy_store(store, k.store)
        cfg = dict(written, keys_dir=k.store, log=k.proxy_log)
        with open(k.proxy_cfg, "w") as f:
            json.dump(cfg, f)
        # a host service on the bridge address at the ports the agent must not reach (22,
        # 18789: Docker publishes the gateway on 127.0.0.1 only); 8081 is the lab's, on
        # every address
        for port in OTHER_PORTS[:2]:
            st.lab._serve(st.lab.ns, eng._HTTP, k.gw, port)
            servers.append(port)
        for port in OTHER_PORTS:
            st.lab._wait_port(st.lab.ns, k.gw, port)
        k.start_standin(certs)
        k.start_proxy(certs)
        # containers made after the keys are in .env: a key handed to one would be seen
        st.compose("up", "-d", "--pull", "never", "--force-recreate")
        st.wait_serving()
        yield k
    finally:
        k.stop()
        with open(env_path, "w") as f:
            f.write(env_before)


def _problems_route(k, r, n_before):
    """What breaks the route promise in one probe result, as sentences."""
    p = []
    new = k.seen()[n_before:]
    by_path = {e["target"].split("?")[0]: e for e in new if "target" in e}
    text = json.dumps(new)
    for name in ("openai", "anthropic", "telegram"):
        if r[name].get("status") != 200:
            p.append("%s through the route: %r" % (name, r[name]))
    got = by_path.get("/v1/chat/completions")
    if not got or [v for h, v in got["headers"] if h.lower() == "authorization"] != [
            "Bearer " + KEYS["OPENAI_API_KEY"]]:
        p.append("the stand-in did not get OpenAI's real key as a bearer: %r" % (got,))
    elif got["body"] != '{"model": "gpt-e2e", "messages": []}' or \
            got["target"] != "/v1/chat/completions?trace=e2equery":
        p.append("OpenAI's request changed on the way: %r" % got)
    got = by_path.get("/v1/messages")
    if not got or [v for h, v in got["headers"] if h.lower() == "x-api-key"] != [
            KEYS["ANTHROPIC_API_KEY"]]:
        p.append("the stand-in did not get Anthropic's real key as x-api-key: %r" % (got,))
    if "/bot%s/getMe" % KEYS["TELEGRAM_BOT_TOKEN"] not in by_path:
        p.append("Telegram's path was not rewritten to the real token: %r" % sorted(by_path))
    if keys.PLACEHOLDER in text:
        p.append("a placeholder reached the stand-in")
    hosts = sorted(set(v for e in new for h, v in e.get("headers", ()) if h.lower() == "host"))
    if not set(hosts) <= {"api.openai.com", "api.anthropic.com", "api.telegram.org"}:
        p.append("Host headers at the stand-in: %r" % hosts)
    sse = r["sse"]
    if sse.get("status") != 200 or len(sse.get("pieces", ())) != SSE_N:
        p.append("the stream did not arrive as %d pieces: %r" % (SSE_N, sse))
    else:
        # passed on as they came: arrivals spread like the server's own sends (a proxy that
        # held the body would hand all of them over at the end, within moments)
        arrived, sent = _spread(sse)
        if arrived < 0.5 * sent:
            p.append("the stream arrived at once: arrivals over %.3f s, sends over %.3f s"
                     % (arrived, sent))
    return p


def _spread(sse):
    """(seconds between the first and last arrival, the same between the server's sends)."""
    pieces = sse.get("pieces") or [[0, "data: event 0 0"]]
    arrived = [t for t, _ in pieces]
    sent = [float(text.split()[3]) for _, text in pieces]
    return arrived[-1] - arrived[0], sent[-1] - sent[0]


def _table(rows):
    out = ["%-40s %s" % (k, v if isinstance(v, str) else json.dumps(v)[:300])
           for k, v in rows.items()]
    if "sse" in rows:
        out.append("sse: %d pieces, arrivals spread %.3f s, the server's sends %.3f s "
                   "(gap %d ms)" % ((len(rows["sse"].get("pieces") or ()),)
                                    + _spread(rows["sse"]) + (SSE_GAP_MS,)))
    return "\n".join(out)


def test_firewall_moves_the_keys_and_writes_the_routes(keyed):
    """--firewall's own files: the store (0700/0600, each value), proxy.json's routes on the
    bridge's address, openclaw.routes.json with placeholders; its output names each key moved
    and never prints a value."""
    k = keyed
    out = k.firewall_output
    for var, value in KEYS.items():
        assert var in out and value not in out, out
    assert k.store_modes == (0o700, dict.fromkeys(KEYS, 0o600)), k.store_modes
    for var, value in KEYS.items():
        with open(os.path.join(k.store, var)) as f:
            assert f.read() == value
    w = k.written
    assert w["routes_listen"] == ["%s:%d" % (k.gw, ROUTES_PORT)], w
    assert w["listen"] == [] and w["forward"] == [] and w["keys_dir"] == keys.STORE, w
    assert sorted(r["name"] for r in w["routes"]) == ["anthropic", "openai", "telegram"], w
    assert {r["name"]: r["upstream"] for r in w["routes"]} == {
        "anthropic": "https://api.anthropic.com", "openai": "https://api.openai.com",
        "telegram": "https://api.telegram.org"}
    with open(os.path.join(k.st.dir, keys.CONFIG)) as f:
        routed = json.load(f)
    root = "http://%s:%d" % (k.gw, ROUTES_PORT)
    assert routed["models"]["providers"]["openai"] == {"baseUrl": root + "/openai/v1",
                                                       "apiKey": keys.PLACEHOLDER}
    assert routed["models"]["providers"]["anthropic"]["baseUrl"] == root + "/anthropic"
    assert routed["channels"]["telegram"] == {"apiRoot": root + "/telegram",
                                              "botToken": "%s:%s" % (BOT_ID, keys.PLACEHOLDER)}


def test_the_route_adds_the_real_key_streams_and_rewrites_telegram(keyed):
    k = keyed
    n = len(k.seen())
    r = k.probe(k.route_checks())
    e2e.write_output("e2e-internet-keys-%s-route.txt" % k.name, _table(r) + "\n")
    assert _problems_route(k, r, n) == [], _table(r)


def test_only_the_routes_port_of_the_host_is_reached(keyed):
    """Control: each port answers from the host's namespace, and from the gateway's with
    claw-cage's jumps removed (the cage is what blocks them)."""
    k, st = keyed, keyed.st
    r = k.probe(k.port_checks())
    control = k.from_host()
    try:
        for family, table, line in st.cage_jumps():
            st.delete_rule(family, table, line)
        uncaged = k.probe(k.port_checks())
    finally:
        k.firewall()
    table = _table(r) + "\ncontrol from the host's namespace: %s\ncontrol, no jumps: %s" % (
        control, uncaged)
    e2e.write_output("e2e-internet-keys-%s-ports.txt" % k.name, table + "\n")
    assert all(control.values()), "control: every port answers from the host\n" + table
    assert all(v == "reached" for v in uncaged.values()), \
        "control: without the cage the gateway reaches every port\n" + table
    assert r["tcp %s:%d" % (k.gw, ROUTES_PORT)] == "reached", table
    assert [p for p in OTHER_PORTS if r["tcp %s:%d" % (k.gw, p)] == "reached"] == [], table


def _found(data, values):
    return sorted(v for v in values if v.encode() in data)


def test_no_key_in_any_container_environ_or_volume(keyed):
    k = keyed
    lab, values = k.lab, list(KEYS.values())
    ids = lab.docker("ps", "-aq", "--no-trunc", "--filter",
                     "label=com.docker.compose.project=" + te.PROJECT).stdout.split()
    assert len(ids) >= 2, ids   # the gateway and volumes-init at least
    for cid in ids:
        text = lab.docker("inspect", cid).stdout.encode()
        assert _found(text, values) == [], "a key in docker inspect of %s" % cid[:12]
    # control: the same scan finds a key handed to a container
    made = lab.docker("create", "-e", "OPENAI_API_KEY=" + KEYS["OPENAI_API_KEY"],
                      k.st.image, "true").stdout.strip()
    try:
        assert _found(lab.docker("inspect", made).stdout.encode(), values) == [
            KEYS["OPENAI_API_KEY"]]
    finally:
        lab.docker("rm", "-f", made, check=False)
    # the gateway's PID 1; control: the gateway token it does get is found the same way
    with open("/proc/%d/environ" % k.gateway_pid(), "rb") as f:
        environ = f.read()
    token = e2e.read_env(os.path.join(k.st.dir, ".env")).split(
        "OPENCLAW_GATEWAY_TOKEN=", 1)[1].split("\n", 1)[0].strip()
    assert token and _found(environ, [token]) == [token], "control: the token is in environ"
    assert _found(environ, values) == [], "a key in the gateway's /proc/1/environ"
    # the state volumes, every file; control: a planted key is found
    vols = lab.docker("volume", "ls", "-q", "--filter",
                      "label=com.docker.compose.project=" + te.PROJECT).stdout.split()
    assert vols, "no volume of the stack"
    mounts = [lab.docker("volume", "inspect", "-f", "{{.Mountpoint}}", v).stdout.strip()
              for v in vols]

    def scan():
        hits = []
        for top in mounts:
            for dirpath, _dirs, files in os.walk(top):
                for name in files:
                    path = os.path.join(dirpath, name)
                    if os.path.isfile(path) and not os.path.islink(path):
                        with open(path, "rb") as f:
                            hits += [(path, v) for v in _found(f.read(), values)]
        return hits
    assert scan() == [], "a key in a state volume"
    planted = os.path.join(mounts[0], "claw-e2e-planted")
    with open(planted, "w") as f:
        f.write("junk %s junk" % KEYS["ANTHROPIC_API_KEY"])
    try:
        assert scan() == [(planted, KEYS["ANTHROPIC_API_KEY"])], "control: the planted key"
    finally:
        os.unlink(planted)
    # the managed configs in the install folder
    for name in (keys.CONFIG, "openclaw.json", "docker-compose.yml"):
        path = os.path.join(k.st.dir, name)
        if os.path.exists(path):
            with open(path, "rb") as f:
                assert _found(f.read(), values) == [], "a key in %s" % name


def test_the_proxy_log_has_the_request_lines_and_no_key_or_query(keyed):
    k = keyed
    r = k.probe(k.route_checks()[:1] + k.route_checks()[3:])
    assert r["openai"]["status"] == 200 and r["telegram"]["status"] == 200, r
    deadline = time.time() + 10
    want = ("route openai POST /openai/v1/chat/completions 200",
            "route telegram GET /telegram/bot<token>/getMe 200")
    while time.time() < deadline and not all(w in k.log_text() for w in want):
        time.sleep(0.1)
    log = k.log_text()
    for w in want:
        assert w in log, log
    for line in log.splitlines():
        for value in list(KEYS.values()) + [KEYS["TELEGRAM_BOT_TOKEN"].split(":")[1]]:
            assert value not in line, "a key in the proxy's log"
        assert "e2equery" not in line and "?" not in line, line


def test_with_ufw_default_deny_the_route_works_and_the_rest_stays_blocked(keyed, tmp_path):
    """ufw enabled (default deny incoming, as installed): its INPUT chains and policy DROP what
    no rule accepts. The route row must carry the bridge's 18790 past them; every other port of
    the host stays blocked. Control: claw-cage's jumps removed, ufw on, the route is dropped
    too (ufw is doing its part)."""
    k, st = keyed, keyed.st
    try:
        root = eng.prepare_ufw()
    except eng.EngineUnavailable as err:
        refuse("UFW NOT AVAILABLE: %s" % err)
    ufw = eng.Ufw(st.lab, root, str(tmp_path))
    before = te._ufw_policies(st)
    rows = {}
    try:
        ufw.run("--force", "enable")
        assert te._ufw_policies(st)[(4, "INPUT")] == "DROP"
        k.firewall()   # a --firewall run after ufw's: the order users meet both ways
        for phase in ("ufw enabled", "after ufw reload"):
            n = len(k.seen())
            r = k.probe(k.route_checks() + k.port_checks())
            rows[phase] = (r, _problems_route(k, r, n))
            ufw.run("reload")
        for family, table, line in st.cage_jumps():
            st.delete_rule(family, table, line)
        rows["control: no jumps"] = (k.probe(k.port_checks()), [])
    finally:
        ufw.run("--force", "disable", check=False)
        te._ufw_cleanup(st, before)
        k.firewall()
    control = k.from_host()
    table = "\n".join("== %s\n%s\n%s" % (phase, _table(r), "\n".join(p))
                      for phase, (r, p) in rows.items())
    table += "\ncontrol from the host's namespace: %s" % control
    e2e.write_output("e2e-internet-keys-%s-ufw.txt" % k.name, table + "\n")
    route = "tcp %s:%d" % (k.gw, ROUTES_PORT)
    for phase in ("ufw enabled", "after ufw reload"):
        r, problems = rows[phase]
        assert problems == [], table
        assert r[route] == "reached", table
        assert [p for p in OTHER_PORTS if r["tcp %s:%d" % (k.gw, p)] == "reached"] == [], table
    assert rows["control: no jumps"][0][route] != "reached", \
        "control: without claw-cage's rows ufw drops the route\n" + table
    assert all(control.values()), table
    # the table itself: the route row is final in INPUT (ACCEPT), not a RETURN ufw can drop
    assert "-A %s -d %s/32 -p tcp -m tcp --dport %d -j ACCEPT" % (
        rules.IN_CHAIN, k.gw, ROUTES_PORT) in st.save(4)


def test_a_proxy_started_while_the_bridge_is_gone_serves_once_it_is_back(keyed):
    """The boot order (issue 29): the proxy starts before Docker has made the bridge (at
    boot; here `docker compose down` removed it), then the stack comes up: the route serves,
    with no restart of the proxy (its listener is bound with IP_FREEBIND)."""
    k, st = keyed, keyed.st
    k.stop(standin=False)
    st.compose("down", "--timeout", "5")
    addrs = st.lab.run(["ip", "-4", "-o", "addr", "show"]).stdout
    assert "%s/" % k.gw not in addrs, addrs
    k.start_proxy(k.certs, address_up=False)
    pid = k.proxy.pid
    st.up()
    n = len(k.seen())
    r = k.probe(k.route_checks()[:1])
    assert k.proxy.pid == pid and k.proxy.poll() is None, k.tail("proxy.stderr")
    got = [e for e in k.seen()[n:] if e.get("target", "").startswith("/v1/chat/completions")]
    assert r["openai"]["status"] == 200 and got, (r, k.tail("proxy.stderr"))
    assert [v for h, v in got[0]["headers"] if h.lower() == "authorization"] == [
        "Bearer " + KEYS["OPENAI_API_KEY"]]
