"""The api-only profile, fail-closed by construction, on every engine of the suite (20.10,
26.1.5, 28.5.2, 29.7.2 iptables and nftables; tests/lab/engines.py).

The mechanism, measured here on each engine: openclaw-netns (network_mode: none) holds a
network namespace with loopback only and no route; the gateway and the CLI join it
(network_mode: service:openclaw-netns). Nothing but the relay's two Unix sockets crosses it, so
no firewall rule is part of the cage: every probe below runs again after every rule of the
engine's namespace is flushed (iptables and ip6tables, every table; `nft flush ruleset`).

One stack per engine, shared by the tests (the order below is the order they run in):
  - the built pyz installs the deploy files; .env selects docker-compose.api-only.yml;
  - the stand-in image plus real Node.js (the relay is the real deploy/netns-relay.js);
  - the host proxy: `python3 claw-cage.pyz --proxy --config FILE` in the foreground, in the
    engine's namespace, with a private /etc/hosts saying what each test name resolves to;
  - probes from inside the agent's namespace (a process joined to the gateway container's
    network namespace): through the proxy (CONNECT via the relay) and direct.
Each refusal has its control: the same probe through the same path reaches the allowed name
(which resolves to the same WAN host an off-list name or a literal names), and the targets of
the direct probes answer from the engine's host namespace and from a container that has a
route. Packets go only to namespaces the lab made.
"""

import json
import os
import re
import shutil
import signal
import subprocess
import time
import uuid

import pytest

from conftest import PYTHON, ROOT, refuse

from lab import e2e_support as e2e
from lab import engines as eng
from lab.proxylab import RANGE_ADDRS

import test_e2e_engines as te

GATEWAY_PORT = 18789
RELAY_UID = 65100                        # egress/unit.py RELAY_UID, the holder's user
ALLOWED = "api.allowed.example"         # -> the WAN host
OFFLIST = "offlist.example"              # -> the WAN host too, but not on the list
LAN = eng.LAN_HOST


def _v4hex(a):
    import ipaddress
    return "%x:%x" % divmod(int(ipaddress.ip_address(a)), 1 << 16)


# names on the allow list (*.allowed.example) that resolve to what the proxy must refuse
REFUSED_NAMES = {"rebind.allowed.example": LAN,
                 "host.allowed.example": eng.HOST_LAN,
                 "meta.allowed.example": "169.254.169.254",
                 "mapped.allowed.example": "::ffff:" + LAN,
                 "nat64.allowed.example": "64:ff9b::" + _v4hex(LAN),
                 "sixtofour.allowed.example": "2002:%s::1" % _v4hex(LAN)}
RANGE_NAMES = {cidr: "r%d.allowed.example" % i for i, cidr in enumerate(sorted(RANGE_ADDRS))}
HOSTS = ["127.0.0.1 localhost", "%s %s" % (eng.WAN_HOST, ALLOWED),
         "%s %s" % (eng.WAN_HOST, OFFLIST)]
HOSTS += ["%s %s" % (a, n) for n, a in REFUSED_NAMES.items()]
HOSTS += ["%s %s" % (RANGE_ADDRS[c], n) for c, n in RANGE_NAMES.items()]

# the direct probes: every place the agent must not reach without the proxy
DIRECT = {"LAN host": (LAN, eng.PEER_PORT), "LAN range 10.0.0.1": ("10.0.0.1", eng.PEER_PORT),
          "host's LAN address": (eng.HOST_LAN, eng.HOST_PORT),
          "host's uplink address": (eng.HOST_WAN, eng.HOST_PORT),
          "uplink router": (eng.UPLINK_GW, eng.PEER_PORT),
          "metadata": ("169.254.169.254", eng.PEER_PORT),
          "WAN host": (eng.WAN_HOST, eng.PEER_PORT),
          "docker0 (the host)": ("172.17.0.1", eng.HOST_PORT),
          "IPv6 internet": ("2001:db8::10", eng.PEER_PORT)}

# Run inside the agent's namespace (nsenter --net): every check of a phase in one process.
PROBE = r"""
import json, os, socket, sys
out = {}
def err(e):
    return getattr(e, "errno", None) and os.strerror(e.errno) or type(e).__name__
def connect(host, port, t=2):
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_STREAM); s.settimeout(t)
    try:
        s.connect((host, port)); return "reached"
    except OSError as e:
        return err(e)
    finally:
        s.close()
def tunnel(target):
    s = socket.socket(); s.settimeout(6)
    try:
        s.connect(("127.0.0.1", 3128))
        s.sendall(("CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n" % (target, target)).encode())
        head = b""
        while b"\r\n\r\n" not in head:
            b = s.recv(4096)
            if not b:
                break
            head += b
        line = head.split(b"\r\n", 1)[0].decode(errors="replace")
        if not line:
            return {"status": None, "line": "EOF"}
        status = int(line.split()[1])
        res = {"status": status, "line": line[:120],
               "body": head.split(b"\r\n\r\n", 1)[-1].decode(errors="replace")[:200]}
        if status != 200:              # a refusal: its one-line reason, then the proxy closes
            try:
                while len(head) < 65536:
                    b = s.recv(4096)
                    if not b:
                        break
                    head += b
            except OSError:
                pass
            res["body"] = head.split(b"\r\n\r\n", 1)[-1].decode(errors="replace")[:200]
        if status == 200:
            s.sendall(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")
            data = b""
            while True:
                b = s.recv(4096)
                if not b:
                    break
                data += b
            res["inner"] = data.split(b"\r\n", 1)[0].decode(errors="replace")
            res["peer"] = data.split(b"\r\n\r\n", 1)[-1].decode(errors="replace").strip()
        return res
    except OSError as e:
        return {"status": None, "line": err(e)}
    finally:
        s.close()
spec = json.loads(sys.argv[1])
out["interfaces"] = sorted(n for _, n in socket.if_nameindex())
with open("/proc/net/route") as f:
    out["routes4"] = [l.split()[:3] for l in f.read().splitlines()[1:]]
with open("/proc/net/ipv6_route") as f:
    out["routes6"] = [(l.split()[0], l.split()[1], l.split()[8], l.split()[-1])
                      for l in f.read().splitlines()]
out["direct"] = {k: connect(h, p) for k, (h, p) in spec["direct"].items()}
out["loopback"] = {k: connect(h, p) for k, (h, p) in spec["loopback"].items()}
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
try:
    u.sendto(b"\0" * 12, ("1.1.1.1", 53)); out["udp dns 1.1.1.1"] = "sent"
except OSError as e:
    out["udp dns 1.1.1.1"] = err(e)
out["tunnel"] = {t: tunnel(t) for t in spec["tunnel"]}
def get(host, port, path="/"):   # a plain GET, direct: the status line and the body, or the error
    s = socket.socket(); s.settimeout(6)
    try:
        s.connect((host, port)); s.sendall(b"GET %s HTTP/1.0\r\nHost: x\r\n\r\n" % path.encode())
        data = b""
        while True:
            b = s.recv(4096)
            if not b:
                break
            data += b
        return (data.split(b"\r\n", 1)[0] + b" | " + data.split(b"\r\n\r\n", 1)[-1].strip()
                ).decode(errors="replace") if data else "EOF"
    except OSError as e:
        return err(e)
    finally:
        s.close()
out["get"] = {k: get(*v) for k, v in spec.get("get", {}).items()}
print(json.dumps(out))
"""


class ApiStack:
    def __init__(self, st, home):
        self.st, self.lab, self.home, self.name = st, st.lab, home, st.name
        self.run_dir = os.path.join(home, "run")
        self.egress = os.path.join(self.run_dir, "egress")
        self.gateway = os.path.join(self.run_dir, "gateway")
        self.proxy_cfg = os.path.join(home, "proxy.json")
        self.hosts = os.path.join(home, "hosts")
        self.proxy_log = os.path.join(home, "proxy.log")
        self.proxy = None
        self.proxy_env = {}   # more of the proxy's environment (SSL_CERT_FILE: a test CA)
        self.tables = {}

    # -- the host side --------------------------------------------------------------------
    def prepare_host(self):
        """What `--firewall --profile api-only` prepares on a host (the proxy's directory; the
        gateway's, owned by the relay's uid for its socket), in a scratch directory."""
        os.makedirs(self.egress, mode=0o755)
        os.makedirs(self.gateway, mode=0o755)
        os.chown(self.gateway, RELAY_UID, RELAY_UID)
        for d in (self.home, self.run_dir):
            os.chmod(d, 0o755)
        with open(self.hosts, "w") as f:
            f.write("\n".join(HOSTS) + "\n")
        cfg = {"listen": ["unix:%s/proxy.sock" % self.egress],
               "allow": [ALLOWED, "*.allowed.example"], "ports": [443, eng.PEER_PORT],
               "forward": [{"listen": "127.0.0.1:%d" % GATEWAY_PORT,
                            "to": "unix:%s/gateway.sock" % self.gateway}],
               "log": self.proxy_log, "header_timeout": 5, "idle_timeout": 30}
        with open(self.proxy_cfg, "w") as f:
            json.dump(cfg, f)

    def start_proxy(self, env=None):
        """The proxy in the foreground, as its systemd unit's ExecStart runs it, inside the
        engine's namespace, with this test's /etc/hosts (a private mount namespace). env: more
        of its environment, kept for its later starts."""
        if env is not None:
            self.proxy_env = dict(env)
        mount = ("mount --make-rprivate / && mount --bind %s /etc/hosts && exec \"$@\""
                 % self.hosts)
        argv = self.lab.nsenter() + ["unshare", "-m", "sh", "-c", mount, "sh", PYTHON,
                                     self.st.pyz, "--proxy", "--config", self.proxy_cfg]
        err = open(os.path.join(self.home, "proxy.stderr"), "ab")
        self.proxy = subprocess.Popen(argv, stdout=err, stderr=err, stdin=subprocess.DEVNULL,
                                      start_new_session=True,
                                      env=dict(os.environ, **self.proxy_env))
        err.close()
        deadline = time.time() + 20
        while time.time() < deadline:
            assert self.proxy.poll() is None, "the proxy exited %d: %s" % (
                self.proxy.returncode, self._tail("proxy.stderr"))
            if os.path.exists(os.path.join(self.egress, "proxy.sock")) and \
                    self.lab.connect(self.lab.ns, "127.0.0.1", GATEWAY_PORT, 1):
                return
            time.sleep(0.2)
        raise AssertionError("the proxy does not listen: " + self._tail("proxy.stderr"))

    def kill_proxy(self):
        if self.proxy and self.proxy.poll() is None:
            os.killpg(self.proxy.pid, signal.SIGKILL)
            self.proxy.wait(10)
        self.proxy = None

    def _tail(self, name):
        try:
            with open(os.path.join(self.home, name), errors="replace") as f:
                return f.read()[-2000:]
        except OSError:
            return "(none)"

    # -- the stack ----------------------------------------------------------------------------
    def cid(self, service):
        out = self.lab.docker("ps", "-q", "--no-trunc", "--filter",
                              "label=com.docker.compose.project=" + te.PROJECT, "--filter",
                              "label=com.docker.compose.service=" + service).stdout.split()
        return out[0] if len(out) == 1 else None

    def pid(self, service):
        cid = self.cid(service)
        assert cid, "%s is not running on %s" % (service, self.name)
        return int(self.lab.docker("inspect", "-f", "{{.State.Pid}}", cid).stdout.strip())

    def netns(self, service):
        return os.readlink("/proc/%d/ns/net" % self.pid(service))

    def dashboard(self):
        """GET /healthz on the engine host's 127.0.0.1:18789 (the SSH tunnel's end)."""
        res = self.lab.run([PYTHON, "-c", "import urllib.request as u; print(u.urlopen("
                            "'http://127.0.0.1:%d/healthz', timeout=5).status)" % GATEWAY_PORT],
                           check=False, timeout=30)
        return res.returncode == 0 and res.stdout.strip() == "200"

    def wait_serving(self, timeout=90):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.cid("openclaw") and self.dashboard():
                return
            time.sleep(0.5)
        logs = self.st.compose("logs", "--no-color", "--tail", "30", check=False)
        raise AssertionError("the gateway does not serve through the proxy within %ds on %s\n"
                             "%s%s\nproxy: %s" % (timeout, self.name, logs.stdout, logs.stderr,
                                                  self._tail("proxy.stderr")))

    def probe(self, spec=None):
        """Every check from inside the agent's namespace (the gateway container's); spec:
        another profile's checks (test_e2e_local_only.py), else api-only's."""
        spec = spec or {"direct": DIRECT,
                "loopback": {"gateway 127.0.0.1:18789": ("127.0.0.1", GATEWAY_PORT),
                             "relay 127.0.0.1:3128": ("127.0.0.1", 3128)},
                "tunnel": ["%s:443" % ALLOWED, "%s:%d" % (ALLOWED, eng.PEER_PORT),
                           "%s:443" % OFFLIST, "%s:443" % eng.WAN_HOST,
                           "[2001:db8::10]:443", "%s:22" % ALLOWED]
                + ["%s:%d" % (n, eng.PEER_PORT) for n in REFUSED_NAMES]
                + ["%s:443" % n for n in RANGE_NAMES.values()]}
        res = eng._sh(["nsenter", "--net=/proc/%d/ns/net" % self.pid("openclaw"), PYTHON, "-c",
                       PROBE, json.dumps(spec)], timeout=240)
        return json.loads(res.stdout)

    def from_host(self):
        """The direct probes' targets from the engine's host namespace: they answer."""
        return {k: self.lab.connect(self.lab.ns, h, p, 2) for k, (h, p) in DIRECT.items()
                if ":" not in h}

    def flush_all(self):
        """Every firewall rule of the engine's namespace gone: what a firewalld reload or a
        neighbour's reset script can do to a host."""
        script = """
            for ipt in iptables ip6tables; do
              for t in filter nat mangle raw security; do
                $ipt -w 10 -t $t -F 2>/dev/null; $ipt -w 10 -t $t -X 2>/dev/null
              done
              for c in INPUT FORWARD OUTPUT; do $ipt -w 10 -P $c ACCEPT 2>/dev/null; done
            done
            nft flush ruleset
        """
        self.lab.run(["sh", "-c", script])
        left4 = [ln for ln in self.st.save(4) if ln.startswith("-A ")]
        left6 = [ln for ln in self.st.save(6) if ln.startswith("-A ")]
        nft = self.lab.run(["nft", "list", "ruleset"]).stdout
        assert not left4 and not left6 and "chain" not in nft, (left4, left6, nft)


def _build_variant(lab, home):
    """The stand-in image plus this machine's Node.js (binary and the libraries it loads), for
    the relay: busybox cannot open a Unix socket. Built FROM the stand-in in the engine."""
    node = shutil.which("node")
    if not node:
        refuse("node is not installed (tests/apt-packages.txt: nodejs)")
    node = os.path.realpath(node)
    base = "claw-cage-e2e-standin-base:%s" % uuid.uuid4().hex[:10]
    lab.docker("tag", te._build_standin(lab, home), base)
    ctx = os.path.join(home, "node-ctx")
    os.makedirs(ctx)
    shutil.copy2(node, os.path.join(ctx, "node"))
    libs = []
    for line in eng._sh(["ldd", node]).stdout.splitlines():
        m = re.search(r"(/\S+)\s+\(0x", line)
        if m:
            libs.append(m.group(1))
    lines = ["FROM %s" % base, "USER root"]
    for i, lib in enumerate(libs):
        real = os.path.realpath(lib)
        shutil.copy2(real, os.path.join(ctx, "lib%d" % i))
        lines.append("COPY lib%d %s" % (i, lib))
    lines += ["COPY node /usr/local/lib/claw-e2e-node/node", "USER node"]
    with open(os.path.join(ctx, "Dockerfile"), "w") as f:
        f.write("\n".join(lines) + "\n")
    tag = "claw-cage-e2e-standin-node:%s" % uuid.uuid4().hex[:10]
    lab.docker("build", "-q", "-t", tag, ctx, env={"DOCKER_BUILDKIT": "0"}, timeout=600)
    shutil.rmtree(ctx, ignore_errors=True)
    return lab.docker("image", "inspect", "-f", "{{.Id}}", tag).stdout.strip()


@pytest.fixture(scope="module", params=list(eng.ENGINES))
def api(request, pyz, tmp_path_factory):
    name = request.param
    if os.geteuid() != 0:
        refuse("NEEDS ROOT, NOT RUN: engine %s runs in network namespaces" % name)
    for tool in ("nsenter", "unshare", "ip", "iptables", "nft", "ldd"):
        if not shutil.which(tool):
            refuse("ENGINE %s NOT RUN: %s is missing" % (name, tool))
    t0 = time.time()
    try:
        binaries = eng.prepare(name)
    except eng.EngineUnavailable as err:
        refuse("ENGINE %s NOT AVAILABLE: %s" % (name, err))
    home = str(tmp_path_factory.mktemp("api-" + name))
    lab = eng.EngineLab(name, binaries)
    try:
        lab.__enter__()
    except eng.EngineUnavailable as err:
        refuse("ENGINE %s DID NOT START: %s" % (name, err))
    st = te.EngineStack(lab, pyz, home)
    a = ApiStack(st, home)
    try:
        image_id = _build_variant(lab, home)
        res = st.install()
        assert res.returncode == 0, "install on %s failed:\n%s%s" % (name, res.stdout,
                                                                     res.stderr)
        env_path = os.path.join(st.dir, ".env")
        cfg = json.loads(st.compose("config", "--format", "json").stdout)
        image = cfg["services"]["openclaw"]["image"].split("@")[0]
        lab.docker("tag", image_id, image)
        a.image = image
        a.prepare_host()
        for var, value in (("OPENCLAW_IMAGE", image),
                           ("COMPOSE_FILE", "docker-compose.api-only.yml"),
                           ("CLAW_EGRESS_DIR", a.egress), ("CLAW_GATEWAY_DIR", a.gateway)):
            e2e.set_env_var(env_path, var, value)
        # the gateway (uid 1000) reads the api-only settings, mode 600 like openclaw.json: a
        # root install hands both to uid 1000 (install/steps.py GATEWAY_READS)
        st_cfg = os.stat(os.path.join(st.dir, "openclaw.api-only.json"))
        assert (st_cfg.st_uid, st_cfg.st_mode & 0o777) == (1000, 0o600), st_cfg
        a.start_proxy()
        st.compose("up", "-d", "--pull", "never")
        a.wait_serving()
        a.timings = {"setup": time.time() - t0}
        yield a
    finally:
        errors = []
        a.kill_proxy()
        try:
            st.compose("down", "-v", "--remove-orphans", "--timeout", "5", check=False)
        except Exception as err:
            errors.append("compose down: %s" % err)
        errors += lab.close()
        left = [x for x in eng.leftovers() if lab.prefix in x or lab.state in x]
        if left:
            errors.append("left behind: %s" % left)
        if errors:
            pytest.fail("engine %s cleanup: %s" % (name, "; ".join(errors)))


def _write(name, text):
    out = os.path.join(ROOT, "tests", "output")
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, name), "w") as f:
        f.write(text)


def _problems(r):
    """Everything in one probe result that breaks the api-only promise, as sentences."""
    p = []
    if r["interfaces"] != ["lo"]:
        p.append("interfaces %r, want only lo" % r["interfaces"])
    if r["routes4"]:
        p.append("IPv4 routes %r" % r["routes4"])
    # the kernel's own entries only: ::1 on lo, and the default as a reject route (RTF_REJECT)
    usable = [x for x in r["routes6"] if x[3] != "lo" or
              (x[1] == "00" and not int(x[2], 16) & 0x200)]
    if usable:
        p.append("IPv6 routes out of the namespace %r" % usable)
    for k, v in r["loopback"].items():
        if v != "reached":
            p.append("control: %s from inside is %s" % (k, v))
    for k, v in r["direct"].items():
        if v == "reached":
            p.append("direct to %s reached" % k)
    if r["udp dns 1.1.1.1"] == "sent":
        p.append("a UDP DNS query left the namespace")
    t = r["tunnel"]
    for target in ("%s:443" % ALLOWED, "%s:%d" % (ALLOWED, eng.PEER_PORT)):
        got = t[target]
        if got["status"] != 200 or not got.get("inner", "").endswith("200 OK") or \
                got.get("peer") != "peer 0.0.0.0":
            p.append("control: the allowed name %s through the proxy: %r" % (target, got))
    for target, got in t.items():
        if target.startswith(ALLOWED + ":") and not target.endswith(":22"):
            continue
        if got["status"] != 403:
            p.append("%s through the proxy was not refused: %r" % (target, got))
    for n in list(REFUSED_NAMES) + list(RANGE_NAMES.values()):
        got = [v for k, v in t.items() if k.startswith(n + ":")][0]
        if "blocked address" not in got.get("body", "") + got.get("line", ""):
            p.append("%s refused, but not for its address: %r" % (n, got))
    return p


def _table(phases):
    rows = []
    for phase, r in phases:
        rows.append("== %s" % phase)
        rows.append("interfaces %s; IPv4 routes %d; IPv6 routes %s" % (
            r["interfaces"], len(r["routes4"]), sorted(set(x[3] for x in r["routes6"]))))
        for k, v in list(r["loopback"].items()) + list(r["direct"].items()):
            rows.append("  direct %-30s %s" % (k, v))
        rows.append("  udp dns 1.1.1.1:53               %s" % r["udp dns 1.1.1.1"])
        for k, v in r["tunnel"].items():
            rows.append("  proxy  %-40s %s %s" % (k, v["status"], v.get("peer") or v["line"]))
    return "\n".join(rows)


# ---- the tests, in the order they run on each engine ------------------------------------------

def test_namespace_is_loopback_only_and_survives_a_gateway_restart(api):
    holder = api.netns("openclaw-netns")
    assert api.netns("openclaw") == holder
    out = api.lab.docker("exec", api.cid("openclaw"), "ip", "-o", "link").stdout
    assert [ln.split(":")[1].strip() for ln in out.splitlines()] == ["lo"], out
    routes = api.lab.docker("exec", api.cid("openclaw"), "ip", "route").stdout
    assert routes.strip() == "", routes
    old = api.cid("openclaw")
    api.st.compose("restart", "-t", "5", "openclaw")
    api.wait_serving()
    assert api.cid("openclaw") == old
    assert api.netns("openclaw") == holder == api.netns("openclaw-netns"), \
        "a gateway restart keeps the holder's namespace"


def test_proxy_only_with_controls_then_again_with_every_rule_flushed(api):
    before = api.probe()
    host_before = api.from_host()
    # control: a container that has a route (the default bridge, Docker's NAT) reaches the
    # WAN host and the LAN with the same probe the agent cannot use
    bridge = {}
    for label, url in (("WAN", "http://%s:%d/" % (eng.WAN_HOST, eng.PEER_PORT)),
                       ("LAN", "http://%s:%d/" % (LAN, eng.PEER_PORT))):
        res = api.lab.docker("run", "--rm", "--pull", "never", "--network", "bridge",
                             "--entrypoint", "node", api.image, "-e", api.st.probe_js,
                             "http", url, "2000",
                             check=False, timeout=90)
        bridge[label] = res.returncode == 0
    api.flush_all()
    after = api.probe()
    host_after = api.from_host()
    table = _table([("docker's rules in place", before), ("every rule flushed", after)])
    table += "\nfrom the engine's host namespace: %s / after flush %s\nbridge container: %s" % (
        host_before, host_after, bridge)
    _write("e2e-api-only-%s.txt" % api.name, table + "\n")
    assert _problems(before) == [], table
    assert _problems(after) == [], table
    assert all(host_before.values()) and all(host_after.values()), \
        "control: every direct target answers from the host's namespace\n" + table
    assert bridge == {"WAN": True, "LAN": True}, \
        "control: a container with a route reaches them\n" + table


def test_dashboard_cli_and_standin_egress_through_the_proxy(api):
    assert api.dashboard(), "the host's 127.0.0.1:18789 reaches the gateway through the relay"
    res = api.st.compose("run", "--rm", "-T", "openclaw-cli", "gateway", "probe", check=False)
    assert res.returncode == 0 and "Gateway reachable" in res.stdout, res.stdout + res.stderr
    res = api.st.compose("exec", "-T", "openclaw", "node", "dist/index.js", "proxy", "validate",
                         "--allowed-url", "https://%s/" % ALLOWED,
                         "--denied-url", "https://%s/" % OFFLIST, "--json", check=False)
    out = json.loads(res.stdout)
    assert res.returncode == 0 and out["ok"] is True, res.stdout + res.stderr
    assert out["config"]["source"] == "config" and \
        out["config"]["proxyUrl"] == "http://127.0.0.1:3128", out
    with open(api.proxy_log) as f:
        log = f.read()
    assert ALLOWED in log and OFFLIST in log, log[-2000:]


EGRESS_PASS = ["proxy list", "proxy answers", "proxy reachable", "off-list name refused",
               "LAN address refused", "metadata refused", "direct LAN fails",
               "direct host fails", "direct internet fails", "allowed name reached",
               "openclaw proxy validate"]


def _egress_rows(api):
    """`--verify --json` as a user runs it, with the proxy's config where `--firewall --profile
    api-only` puts it (/etc/claw-cage/proxy.json, in the run's private /etc): its Egress rows,
    by check (with the other rows), and the exit status."""
    etc = os.path.join(api.st.etc, "upper", "claw-cage")
    os.makedirs(etc, exist_ok=True)
    shutil.copy(api.proxy_cfg, os.path.join(etc, "proxy.json"))
    res = api.st.verify("--json")
    rows = {r["check"]: r for r in json.loads(res.stdout)}   # the Egress checks have their own names
    return rows, res


def test_verify_egress_rows_probe_inside_the_gateway(api):
    """--verify's Egress rows, their probes run in the running gateway (`docker exec`, real
    Node.js in the api-only variant), pass; with the proxy killed they fail."""
    rows, res = _egress_rows(api)
    _write("e2e-api-only-verify-%s.txt" % api.name, json.dumps(rows, indent=1) + res.stderr)
    assert {c: rows[c]["status"] for c in EGRESS_PASS if c in rows} == dict.fromkeys(
        EGRESS_PASS, "pass"), json.dumps(rows, indent=1) + res.stderr
    assert rows["proxy service"]["status"] == "skip"          # no systemd here: said, not passed
    # the policy rows judge what the gateway loads: openclaw.api-only.json includes
    # openclaw.json, whose hardening counts (judged alone, gateway.mode would be missing)
    assert [rows["policy " + c]["status"] for c in ("gateway.mode", "telegram agent tools",
                                                    "browser.ssrfPolicy")] == ["pass"] * 3, rows
    api.kill_proxy()
    try:
        rows, res = _egress_rows(api)
    finally:
        api.start_proxy()
    assert res.returncode != 0
    # the relay in the namespace still accepts (the control opens); nothing behind it answers
    assert rows["proxy answers"]["status"] == "fail", json.dumps(rows, indent=1)
    assert [rows[c]["status"] for c in ("off-list name refused", "LAN address refused",
                                        "metadata refused")] == ["fail"] * 3, rows
    assert rows["allowed name reached"]["status"] != "pass", rows


def test_proxy_killed_no_egress_no_dashboard(api):
    api.kill_proxy()
    try:
        r = api.probe()
        t = r["tunnel"]["%s:443" % ALLOWED]
        assert t["status"] is None, "the proxy is down: nothing answers through the relay: %r" % t
        assert not [k for k, v in r["direct"].items() if v == "reached"], r["direct"]
        assert r["loopback"]["relay 127.0.0.1:3128"] == "reached", \
            "control: the relay still accepts; only the proxy behind it is gone"
        res = api.st.compose("exec", "-T", "openclaw", "node", "dist/index.js", "proxy",
                             "validate", "--allowed-url", "https://%s/" % ALLOWED, "--json",
                             check=False)
        assert res.returncode == 1 and json.loads(res.stdout)["ok"] is False, res.stdout
        assert not api.dashboard()
    finally:
        api.start_proxy()
    assert api.dashboard(), "the proxy back: the dashboard works again"
    assert api.probe()["tunnel"]["%s:443" % ALLOWED]["status"] == 200


def _relay_pids(api):
    """The pids of the relay's node process (netns-relay.js) in the holder's namespace."""
    ns, found = api.netns("openclaw-netns"), []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open("/proc/%s/cmdline" % pid, "rb") as f:
                argv = f.read().split(b"\0")
            if argv[0].endswith(b"node") and b"/claw-cage/netns-relay.js" in argv and \
                    os.readlink("/proc/%s/ns/net" % pid) == ns:
                found.append(int(pid))
        except OSError:
            continue
    return found


def _state(api, service):
    return json.loads(api.lab.docker("inspect", "-f", "{{json .State}}",
                                     api.cid(service)).stdout)


def _wait(what, cond, timeout):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if cond():
                return
        except (AssertionError, OSError, ValueError):   # a container between two lives
            pass
        time.sleep(1)
    raise AssertionError("not within %ds: %s" % (timeout, what))


def test_relay_killed_heals_in_the_same_namespace(api):
    """kill -9 of the relay: with no one acting, a new relay in the same namespace, the gateway
    still in it, the dashboard and egress answer again (the old file: the holder restarted in
    a new namespace, the gateway stranded in the old one)."""
    ns, gateway = api.netns("openclaw-netns"), api.cid("openclaw")
    restarts = api.lab.docker("inspect", "-f", "{{.RestartCount}}",
                              api.cid("openclaw-netns")).stdout.strip()
    old = _relay_pids(api)
    assert len(old) == 1, old
    os.kill(old[0], signal.SIGKILL)
    _wait("a new relay", lambda: api.cid("openclaw-netns") and
          [p for p in _relay_pids(api) if p not in old], 30)
    assert api.netns("openclaw-netns") == ns == api.netns("openclaw"), "the namespace moved"
    assert api.cid("openclaw") == gateway
    assert api.lab.docker("inspect", "-f", "{{.RestartCount}}", api.cid(
        "openclaw-netns")).stdout.strip() == restarts, "the holder itself restarted"
    _wait("the dashboard answers", api.dashboard, 30)
    assert api.probe()["tunnel"]["%s:443" % ALLOWED]["status"] == 200
    # its healthcheck (the dashboard, then the relay in its namespace) passes
    _wait("the gateway healthy", lambda: _state(api, "openclaw")["Health"]["Status"]
          == "healthy", 150)


def test_holder_restarted_gateway_unhealthy_verify_names_the_fix(api):
    """The holder itself killed (its init, kill -9): Docker restarts it in a new namespace. The
    gateway, left in the old one, turns unhealthy (its check probes the relay), --verify's
    "relay namespace" row names the fix, and the fix works."""
    holder = _state(api, "openclaw-netns")["Pid"]
    os.kill(holder, signal.SIGKILL)
    _wait("the holder restarted", lambda: api.cid("openclaw-netns") and
          _state(api, "openclaw-netns")["Pid"] not in (0, holder), 60)
    assert api.netns("openclaw") != api.netns("openclaw-netns")
    _wait("the gateway unhealthy",
          lambda: _state(api, "openclaw")["Health"]["Status"] == "unhealthy", 200)
    rows, res = _egress_rows(api)
    row = rows["relay namespace"]
    assert res.returncode != 0 and row["status"] == "fail", row
    assert "docker compose up -d --force-recreate openclaw" in row["detail"], row
    api.st.compose("up", "-d", "--force-recreate", "--pull", "never", "openclaw")
    api.wait_serving()
    assert api.netns("openclaw") == api.netns("openclaw-netns")
    rows, _ = _egress_rows(api)
    assert rows["relay namespace"]["status"] == "pass", rows["relay namespace"]
    assert rows["gateway socket"]["status"] == "pass", rows["gateway socket"]
