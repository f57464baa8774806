"""Real Docker engines as test fixtures (issue 18): 20.10, 26.1.5, 28.5.2 and 29.7.2.

Each engine runs as a second, isolated dockerd inside a network namespace of its own (the
engine's "host"), with two more namespaces as its neighbours:

    [container 172.30.0.x] --claw-cage0-- ENGINE HOST NS --lan0-- LAN NS   192.168.1.0/24
                                          (dockerd, its         .2 <-> .10 (LAN host: HTTP,
                                           containerd,                      DNS on :53 also at
                                           claw-cage)                       the host's resolver
                                                                            address)
                                                        --wan0-- UPLINK NS 10.99.0.0/24
                                                                 .2 <-> .1 (the router) and
                                                                 203.0.113.10 (a WAN host);
                                                                 it answers every TCP address

The engine's namespace has no link to the machine's own network: every packet its containers
send ends in one of these namespaces (the network rule of this project: packets only to
127.0.0.0/8 and to namespaces the tests create). The uplink namespace does not forward.

Where the engines come from (cached in ENGINE_CACHE, git-ignored, between runs):
  20.10             the machine's own Debian package (/usr/sbin/dockerd): the same binary as the
                    system's engine, run as a second instance (the system's engine is untouched)
  26.1.5, 28.5.2    Debian's docker.io and docker-cli from trixie and forky, fetched with apt
                    through a private sources list and lists directory (the machine's apt
                    sources stay untouched), `apt-get download`, `dpkg-deb -x`
  29.7.2            ../shared/engines (dockerd, docker-proxy built from moby's source; SHA256SUMS
                    checked), with forky's docker CLI and tini-static (docker-init)
dockerd runs with `nsenter --net`, not `ip netns exec` (which remounts /sys and hides the cgroup
mounts), with its own socket, data root, exec root, pidfile, `--storage-driver vfs`, and its own
config file: `{}` (the machine's /etc/docker/daemon.json sets data-root and storage-driver, and
a key given both ways stops dockerd); for 29 `{"features": {"time-namespaces": false}}`
(Debian 12's runc 1.1.5 cannot make a time namespace), plus `"firewall-backend": "nftables"`
for the nftables variant. containerd and runc are the machine's (dockerd starts its own
containerd child inside the namespace).

API
  ENGINES                         names, in test order
  engine_ids()                    the same, as pytest ids
  prepare(name) -> Binaries       fetch/unpack (cached); raises EngineUnavailable
  EngineLab(name, binaries)       context manager: namespaces + a running dockerd (a
                                  lab.namespaces.Namespaces: the shared lifecycle)
    .ns / .lan_ns / .wan_ns       namespace names;  .nsenter(argv) prefix
    .env                          environment for docker / claw-cage inside the engine's ns
    .run(argv, check=True, ...)   a command in the engine's host namespace, with .env
    .in_ns(ns, argv, ...)         a command in one of the lab's namespaces
    .docker(*args, ...)           the engine's docker CLI
    .restart()                    stop and start dockerd (same data root)
    .add_tailnet()                a `tailscale0` and a tailnet peer (Tailscale's layout)
    .version()                    what `docker version` says the server is
    addresses: LAN_HOST, HOST_LAN, WAN_HOST, UPLINK_GW, HOST_WAN, .resolver
  started(name, tools) / closed(lab, *first)   an e2e fixture's engine start (refused
                                  LOUDLY where it cannot run) and its checked clean-up
"""

import contextlib
import hashlib
import ipaddress
import json
import lzma
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

from lab import namespaces
from lab.namespaces import Namespaces

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
ENGINE_CACHE = os.path.join(ROOT, ".test-engines")          # .gitignore
# ../shared/engines beside the repository (a worktree one level deeper finds it too);
# CLAW_CAGE_ENGINES_DIR names another place
SHARED_ENGINES = os.environ.get("CLAW_CAGE_ENGINES_DIR") or next(
    (p for p in (os.path.normpath(os.path.join(ROOT, *[".."] * up + ["shared", "engines"]))
                 for up in (1, 2)) if os.path.isdir(p)),
    os.path.normpath(os.path.join(ROOT, "..", "shared", "engines")))
PY = sys.executable

# name: (where from, expected upstream version, config file content)
_CFG29 = {"features": {"time-namespaces": False}}
ENGINES = {
    "20.10": ("system", "20.10.", {}),
    "26.1.5": ("trixie", "26.1.5", {}),
    "28.5.2": ("forky", "28.5.2", {}),
    "29.7.2-iptables": ("shared", "29.7.2", _CFG29),
    "29.7.2-nftables": ("shared", "29.7.2", dict(_CFG29, **{"firewall-backend": "nftables"})),
}

# The engine's neighbours. All addresses live in namespaces the lab creates.
HOST_LAN, LAN_HOST, LAN_NET = "192.168.1.2", "192.168.1.10", "192.168.1.0/24"
# The uplink is a provider's private network (as on most cloud VMs): the default gateway is in
# 10/8, so the cage blocks it like any LAN address, and the internet lies beyond it.
HOST_WAN, UPLINK_GW, WAN_NET = "10.99.0.2", "10.99.0.1", "10.99.0.0/24"
WAN_HOST = "203.0.113.10"
PEER_PORT = 8080
TAILNET_SELF, TAILNET_PEER = "100.101.0.2", "100.100.1.1"      # add_tailnet()
HOST_PORT = 8081       # a service of the engine's host itself, on every address


class EngineUnavailable(Exception):
    """The engine cannot be fetched, unpacked or started here."""


def engine_ids():
    return list(ENGINES)


def _sh(argv, check=True, timeout=120, env=None, input=None, cwd=None):
    return namespaces.sh(argv, check=check, timeout=timeout, env=env, input=input, cwd=cwd,
                         tail=3000)


# ---- fetching and unpacking ------------------------------------------------------------------

class Binaries:
    """A folder holding dockerd, docker-proxy, docker-init and the docker CLI of one engine."""

    def __init__(self, name, bindir, version):
        self.name, self.bindir, self.version = name, bindir, version

    def path(self, prog):
        return os.path.join(self.bindir, prog)


_APT_LIST = """\
deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian bookworm main
deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian trixie main
deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian forky main
"""


def _apt_argv(cache, *args):
    """apt-get with a private sources list, lists and cache directory: the machine's apt
    configuration of sources and its package lists are never read or written."""
    return ["apt-get", "-q",
            "-o", "Dir::Etc::sourcelist=" + os.path.join(cache, "sources.list"),
            "-o", "Dir::Etc::sourceparts=-",
            "-o", "Dir::State::Lists=" + os.path.join(cache, "lists"),
            "-o", "Dir::Cache=" + os.path.join(cache, "aptcache"),
            "-o", "Debug::NoLocking=1",
            "-o", "APT::Sandbox::User=root",
            "-o", "Acquire::IndexTargets::deb::DEP-11::DefaultEnabled=false",
            "-o", "Acquire::IndexTargets::deb::DEP-11-icons::DefaultEnabled=false",
            "-o", "Acquire::IndexTargets::deb::DEP-11-icons-small::DefaultEnabled=false",
            "-o", "Acquire::IndexTargets::deb::CNF::DefaultEnabled=false"] + list(args)


def _apt_download(cache, specs):
    """Download Debian packages (name/suite) into cache/debs; apt lists fetched once."""
    apt = os.path.join(cache, "apt")
    debs = os.path.join(cache, "debs")
    for d in (os.path.join(apt, "lists", "partial"), os.path.join(apt, "aptcache"), debs):
        os.makedirs(d, exist_ok=True)
    with open(os.path.join(apt, "sources.list"), "w") as f:
        f.write(_APT_LIST)
    stamp = os.path.join(apt, "lists.ok")       # holds the sources list it was made from
    try:
        with open(stamp) as f:
            fresh = f.read() == _APT_LIST
    except OSError:
        fresh = False
    if not fresh:
        res = _sh(_apt_argv(apt, "update"), check=False, timeout=600)
        if res.returncode != 0 or "Err:" in res.stdout:
            raise EngineUnavailable("apt-get update (private lists) failed:\n%s%s"
                                    % (res.stdout[-1500:], res.stderr[-1500:]))
        with open(stamp, "w") as f:
            f.write(_APT_LIST)
    res = _sh(_apt_argv(apt, "download") + list(specs), check=False, timeout=600, cwd=debs)
    if res.returncode != 0:
        raise EngineUnavailable("apt-get download %s failed: %s"
                                % (" ".join(specs), res.stderr.strip()[-1500:]))
    return debs


def _deb_for(debs, package, version_prefix):
    found = sorted(f for f in os.listdir(debs)
                   if f.startswith(package + "_" + version_prefix) and f.endswith(".deb"))
    if not found:
        raise EngineUnavailable("no %s %s package in %s (the archive may have moved on): %s"
                                % (package, version_prefix, debs, sorted(os.listdir(debs))))
    return os.path.join(debs, found[-1])


def _extract(deb, member, dest):
    tmp = tempfile.mkdtemp(dir=os.path.dirname(dest))
    try:
        _sh(["dpkg-deb", "-x", deb, tmp])
        src = os.path.join(tmp, member.lstrip("/"))
        if not os.path.isfile(src):
            raise EngineUnavailable("%s holds no %s" % (deb, member))
        shutil.copy2(src, dest + ".tmp")
        os.chmod(dest + ".tmp", 0o755)
        os.rename(dest + ".tmp", dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _unpack_shared_29(bindir):
    sums = os.path.join(SHARED_ENGINES, "SHA256SUMS")
    if not os.path.isfile(sums):
        raise EngineUnavailable("Docker 29.7.2 is not at %s (no SHA256SUMS)" % SHARED_ENGINES)
    with open(sums) as f:
        expected = dict(reversed(line.split()) for line in f if line.strip())
    for prog in ("dockerd", "docker-proxy"):
        xz = "%s-29.7.2.xz" % prog
        path = os.path.join(SHARED_ENGINES, xz)
        if xz not in expected or not os.path.isfile(path):
            raise EngineUnavailable("%s missing from %s" % (xz, SHARED_ENGINES))
        if _sha256(path) != expected[xz]:
            raise EngineUnavailable("%s does not match its SHA256SUMS line" % path)
        dest = os.path.join(bindir, prog)
        with lzma.open(path) as src, open(dest + ".tmp", "wb") as out:
            shutil.copyfileobj(src, out)
        os.chmod(dest + ".tmp", 0o755)
        os.rename(dest + ".tmp", dest)


def prepare(name, cache=ENGINE_CACHE):
    """The binaries of engine `name`, fetched or unpacked once and cached."""
    origin, version, _cfg = ENGINES[name]
    base = name.split("-")[0]
    bindir = os.path.join(cache, "engines", base, "bin")
    stamp = os.path.join(cache, "engines", base, "ready")
    if origin == "system":
        os.makedirs(bindir, exist_ok=True)
        for prog, path in (("dockerd", "/usr/sbin/dockerd"), ("docker-proxy", "/usr/sbin/docker-proxy"),
                           ("docker-init", "/usr/bin/docker-init"), ("docker", "/usr/bin/docker")):
            if not os.path.isfile(path):
                raise EngineUnavailable("%s missing: the system's docker.io package" % path)
            link = os.path.join(bindir, prog)
            if not os.path.lexists(link):
                os.symlink(path, link)
    elif not os.path.exists(stamp):
        if os.path.isdir(bindir):
            shutil.rmtree(bindir)
        os.makedirs(bindir)
        # forky's CLI and tini for every fetched engine; the engine's own docker.io
        suite = "forky" if origin == "shared" else origin
        specs = ["docker-cli/%s" % suite, "tini-static/forky"]
        if origin != "shared":
            specs.append("docker.io/%s" % suite)
        debs = _apt_download(cache, specs)
        cli_version = "28.5.2" if origin == "shared" else version
        _extract(_deb_for(debs, "docker-cli", cli_version), "/usr/bin/docker",
                 os.path.join(bindir, "docker"))
        _extract(_deb_for(debs, "tini-static", ""), "/usr/bin/tini-static",
                 os.path.join(bindir, "docker-init"))
        if origin == "shared":
            _unpack_shared_29(bindir)
        else:
            deb = _deb_for(debs, "docker.io", version)
            for prog in ("dockerd", "docker-proxy"):
                _extract(deb, "/usr/sbin/" + prog, os.path.join(bindir, prog))
        open(stamp, "w").close()
    out = _sh([os.path.join(bindir, "dockerd"), "--version"], check=False).stdout
    m = re.search(r"Docker version (\S+?)[,+]", out)
    if not m or not m.group(1).startswith(version):
        raise EngineUnavailable("%s/dockerd says %r, expected %s" % (bindir, out.strip(), version))
    return Binaries(name, bindir, m.group(1))


# ---- the namespaces and the running engine ---------------------------------------------------

# The namespaces' tiny HTTP server (200 on every GET, body "peer ADDR") and DNS server (every A
# query gets argv[3]): the same scripts every namespace lab runs (lab/namespaces.py).
_HTTP = namespaces.PEER_SERVER
_DNS = namespaces.DNS_SERVER


def host_resolver():
    """The machine's first IPv4 resolver that is not loopback: dockerd in the lab reads the
    machine's /etc/resolv.conf, and the lab's LAN namespace holds that address (so the
    engine's DNS path ends in the lab, and on the LAN: a home router's situation)."""
    try:
        with open("/etc/resolv.conf") as f:
            text = f.read()
    except OSError:
        text = ""
    for m in re.finditer(r"^nameserver\s+(\d+\.\d+\.\d+\.\d+)\s*$", text, re.M):
        addr = ipaddress.ip_address(m.group(1))
        if not addr.is_loopback:
            return str(addr)
    return None


class EngineLab(Namespaces):
    def __init__(self, name, binaries, workdir=None):
        # short: unix socket paths are limited to 108 bytes
        super().__init__("cceng", tmp_dir=workdir or "/var/tmp")
        self.name, self.bin = name, binaries
        self.config = ENGINES[name][2]
        self.prefix = self.tag
        self.ns, self.lan_ns, self.wan_ns = (self.prefix + "-host", self.prefix + "-lan",
                                             self.prefix + "-wan")
        self.state = self.tmp
        self.sock = os.path.join(self.state, "docker.sock")
        self.env = dict(os.environ)
        for var in ("DOCKER_CONTEXT", "DOCKER_CONFIG", "DOCKER_CERT_PATH", "DOCKER_TLS_VERIFY"):
            self.env.pop(var, None)
        self.env.update({
            "DOCKER_HOST": "unix://" + self.sock,
            "PATH": "%s:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
                    % binaries.bindir,
            "DOCKER_CONFIG": os.path.join(self.state, "cli"),
        })
        self.resolver = host_resolver()
        self.dockerd = None
        self.log_path = os.path.join(self.state, "dockerd.log")

    # -- lifecycle ---------------------------------------------------------------------------
    # Namespaces.__enter__ runs _build(): the namespaces, then dockerd; close() on failure
    def _build(self):
        self._build_namespaces()
        self.start()

    def __exit__(self, *exc):
        errors = self.close()
        if errors and exc[0] is None:
            raise AssertionError("engine lab cleanup: %s" % "; ".join(errors))

    def nsenter(self, ns=None):
        return ["nsenter", "--net=/run/netns/" + (ns or self.ns)]

    enter = nsenter     # Namespaces.exec()/serve() enter with nsenter here too

    def run(self, argv, check=True, timeout=120, env=None, input=None, cwd=None):
        full = dict(self.env)
        full.update(env or {})
        return _sh(self.nsenter() + list(argv), check=check, timeout=timeout, env=full,
                   input=input, cwd=cwd)

    def in_ns(self, ns, argv, check=True, timeout=60):
        return _sh(self.nsenter(ns) + list(argv), check=check, timeout=timeout)

    def docker(self, *args, check=True, timeout=120, env=None, cwd=None):
        return self.run(["docker"] + list(args), check=check, timeout=timeout, env=env,
                        cwd=cwd)

    def _build_namespaces(self):
        for ns in (self.ns, self.lan_ns, self.wan_ns):
            self.add(ns, no_dad=False)
        h, lan, wan = self.ns, self.lan_ns, self.wan_ns
        # links are made inside the engine's namespace: no interface of the lab ever exists
        # in the machine's own namespace
        script = """
            set -e
            ip link set lo up
            ip link add lan0 type veth peer name up0 netns {lan}
            ip link add wan0 type veth peer name up0 netns {wan}
            ip addr add {hl}/24 dev lan0
            ip addr add {hw}/24 dev wan0
            ip link set lan0 up
            ip link set wan0 up
            ip route add default via {gw}
            # a freshly booted host: forwarding off, as dockerd finds it (it turns it on and
            # sets FORWARD's policy to DROP)
            sysctl -qw net.ipv4.ip_forward=0
        """.format(lan=lan, wan=wan, hl=HOST_LAN, hw=HOST_WAN, gw=UPLINK_GW)
        if self.resolver:
            script += "ip route add %s/32 via %s\n" % (self.resolver, LAN_HOST)
        _sh(self.nsenter(h) + ["sh", "-c", script])
        _sh(self.nsenter(lan) + ["sh", "-c", """
            set -e
            ip link set lo up
            ip addr add {lh}/24 dev up0
            ip link set up0 up
            {res}
        """.format(lh=LAN_HOST, res=("ip addr add %s/32 dev lo" % self.resolver)
                   if self.resolver else "")])
        # the uplink: the router's address and a WAN host; no route beyond its link, no
        # forwarding: what the engine sends "to the internet" ends here
        _sh(self.nsenter(wan) + ["sh", "-c", """
            set -e
            ip link set lo up
            ip addr add {gw}/24 dev up0
            ip addr add {wh}/32 dev lo
            ip link set up0 up
            sysctl -qw net.ipv4.ip_forward=0
            # "the internet answers": a TCP connection to ANY address and port that arrives
            # on the uplink is redirected to the HTTP server here, so a packet that leaks past
            # the cage to anything beyond the host is seen as reached, never mistaken for a
            # silent drop
            iptables -w -t nat -A PREROUTING -i up0 -p tcp -j REDIRECT --to-ports {port}
            # and every DNS query sent to a public resolver (1.1.1.1, 9.9.9.9 ...) is answered
            iptables -w -t nat -A PREROUTING -i up0 -p udp --dport 53 -j REDIRECT --to-ports 53
        """.format(gw=UPLINK_GW, wh=WAN_HOST, port=PEER_PORT)])
        self._serve(lan, _HTTP, LAN_HOST, PEER_PORT)
        self._serve(wan, _HTTP, "0.0.0.0", PEER_PORT)
        self._serve(h, _HTTP, "0.0.0.0", HOST_PORT)
        self._serve(lan, _DNS, LAN_HOST, 53, WAN_HOST)
        self._serve(wan, _DNS, "0.0.0.0", 53, WAN_HOST)
        if self.resolver:
            self._serve(lan, _DNS, self.resolver, 53, WAN_HOST)
        for ns, addr, port in ((lan, LAN_HOST, PEER_PORT), (wan, WAN_HOST, PEER_PORT),
                               (h, "127.0.0.1", HOST_PORT)):
            self._wait_port(ns, addr, port)

    def add_tailnet(self):
        """A tailnet as Tailscale makes one: an interface `tailscale0` in the engine's
        namespace (here a veth into the LAN namespace, which plays a tailnet peer at
        TAILNET_PEER), an address in 100.64.0.0/10 and the route to the whole range through it.
        Idempotent; the interface goes with the namespaces."""
        if self.connect(self.lan_ns, TAILNET_PEER, PEER_PORT, 1):
            return TAILNET_PEER
        _sh(self.nsenter() + ["sh", "-c", """
            set -e
            ip link add tailscale0 type veth peer name ts0 netns {lan}
            ip addr add {me}/32 dev tailscale0
            ip link set tailscale0 up
            ip route add 100.64.0.0/10 dev tailscale0
        """.format(lan=self.lan_ns, me=TAILNET_SELF)])
        _sh(self.nsenter(self.lan_ns) + ["sh", "-c", """
            set -e
            ip addr add {peer}/10 dev ts0
            ip link set ts0 up
        """.format(peer=TAILNET_PEER)])
        self._serve(self.lan_ns, _HTTP, TAILNET_PEER, PEER_PORT)
        self._wait_port(self.lan_ns, TAILNET_PEER, PEER_PORT)
        return TAILNET_PEER

    def _serve(self, ns, program, addr, port, *extra):
        proc = subprocess.Popen(self.nsenter(ns) + [PY, "-c", program, addr, str(port)]
                                + list(extra), stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE)
        self._procs.append(proc)

    def connect(self, ns, addr, port, timeout=2):
        return namespaces.connect(self.nsenter(ns), addr, port, timeout)

    def _wait_port(self, ns, addr, port):
        namespaces.wait_port(self.nsenter(ns), addr, port, error=EngineUnavailable)

    # -- dockerd -----------------------------------------------------------------------------
    def start(self, timeout=60):
        for d in ("data", "exec", "cli"):
            os.makedirs(os.path.join(self.state, d), exist_ok=True)
        if self.config.get("firewall-backend") == "nftables":
            # With nftables, Docker 29 does not turn forwarding on itself ("IPv4 forwarding is
            # disabled ... set sysctl net.ipv4.ip_forward=1"): the user does, as here.
            _sh(self.nsenter() + ["sysctl", "-qw", "net.ipv4.ip_forward=1"])
        cfg = os.path.join(self.state, "daemon.json")
        with open(cfg, "w") as f:
            json.dump(self.config, f)
        argv = self.nsenter() + [
            self.bin.path("dockerd"), "--config-file", cfg, "-H", "unix://" + self.sock,
            "--data-root", os.path.join(self.state, "data"),
            "--exec-root", os.path.join(self.state, "exec"),
            "--pidfile", os.path.join(self.state, "dockerd.pid"),
            "--storage-driver", "vfs"]
        log = open(self.log_path, "ab")
        self.dockerd = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, env=self.env,
                                        start_new_session=True)
        log.close()
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.dockerd.poll() is not None:
                raise EngineUnavailable("dockerd %s exited %d at start:\n%s"
                                        % (self.name, self.dockerd.returncode, self.log_tail()))
            res = self.docker("version", "--format", "{{.Server.Version}}", check=False,
                              timeout=20)
            if res.returncode == 0 and res.stdout.strip():
                return res.stdout.strip()
            time.sleep(0.5)
        raise EngineUnavailable("dockerd %s does not answer within %ds:\n%s"
                                % (self.name, timeout, self.log_tail()))

    def stop(self, timeout=40):
        proc, self.dockerd = self.dockerd, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)

    def restart(self):
        self.stop()
        return self.start()

    def version(self):
        return self.docker("version", "--format", "{{.Server.Version}}").stdout.strip()

    def log_tail(self, n=40):
        try:
            with open(self.log_path, errors="replace") as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return "(no dockerd log)"

    # -- teardown ------------------------------------------------------------------------------
    def close(self):
        """Everything the lab made goes: dockerd and every process in its namespaces, the
        mounts under its state directory, the namespaces, the state directory. Every step is
        attempted; the failures are returned."""
        errors = []
        try:
            self.stop()
        except Exception as err:
            errors.append("stop dockerd: %s" % err)
        self.stop_servers()
        for ns in reversed(self._made):
            namespaces.kill_processes(ns, rounds=3)
        # container processes live in namespaces of their own: any left (a dockerd killed
        # with its containers running) are found by their shim's cgroup-free parentage: the
        # processes whose cwd or root is under our state directory
        self._kill_under_state()
        self._unmount_under_state(errors)
        errors += self.delete_namespaces()
        if os.path.isdir(self.state):
            res = _sh(["rm", "-rf", "--one-file-system", self.state], check=False, timeout=300)
            if res.returncode != 0:
                errors.append("rm -rf %s: %s" % (self.state, res.stderr.strip()[-500:]))
        return errors

    def _kill_under_state(self):
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                root = os.readlink("/proc/%s/root" % pid)
            except OSError:
                continue
            if root.startswith(self.state + "/"):
                with contextlib.suppress(OSError):
                    os.kill(int(pid), signal.SIGKILL)

    def _unmount_under_state(self, errors):
        try:
            with open("/proc/self/mountinfo") as f:
                points = [line.split()[4] for line in f]
        except OSError:
            return
        mine = sorted((p for p in points if p == self.state or p.startswith(self.state + "/")),
                      key=len, reverse=True)
        for point in mine:
            res = _sh(["umount", "-l", point], check=False)
            if res.returncode != 0:
                errors.append("umount %s: %s" % (point, res.stderr.strip()))


# ---- an e2e fixture's engine: started or refused LOUDLY, closed and checked --------------------

TOOLS = ("nsenter", "unshare", "ip", "iptables", "nft")      # every engine lab needs these


def system_apt_state():
    """Name, size and mtime of every file of the machine's apt sources, lists and caches: the
    engines are fetched through a private sources list and lists directory only."""
    state = {}
    for top in ("/etc/apt", "/var/lib/apt/lists", "/var/cache/apt"):
        for dirpath, _dirs, files in os.walk(top):
            for f in files:
                path = os.path.join(dirpath, f)
                try:
                    st = os.lstat(path)
                except OSError:
                    continue
                state[path] = (st.st_size, st.st_mtime_ns)
    return state


def started(name, tools=()):
    """EngineLab `name` with its dockerd running: the start every engine e2e fixture makes.
    Without root, one of TOOLS + tools, the engine's binaries, or a dockerd that starts, the
    test is refused LOUDLY (conftest.refuse: skipped, a failure under CI). Fetching the engine
    must leave the machine's apt state as it was."""
    from conftest import refuse, require_root
    require_root("engine %s runs in network namespaces" % name)    # and never in the fast tier
    for tool in TOOLS + tuple(tools):
        if not shutil.which(tool):
            refuse("ENGINE %s NOT RUN: %s is missing" % (name, tool))
    apt_before = system_apt_state()
    try:
        binaries = prepare(name)
    except EngineUnavailable as err:
        refuse("ENGINE %s NOT AVAILABLE: %s" % (name, err))
    assert system_apt_state() == apt_before, "fetching the engine changed the machine's " \
        "apt sources, package lists or cache"
    lab = EngineLab(name, binaries)
    try:
        lab.__enter__()
    except EngineUnavailable as err:
        refuse("ENGINE %s DID NOT START: %s" % (name, err))
    return lab


def closed(lab, *first):
    """The teardown of started(): each (what, fn) of `first` (e.g. compose down), then the
    lab's close(), then the check that nothing of the lab is left on the machine. Every step
    is attempted; the problems, one per entry (the fixture fails with them)."""
    errors = []
    for what, fn in first:
        try:
            fn()
        except Exception as err:  # keep going: the lab must still go
            errors.append("%s: %s" % (what, err))
    errors += lab.close()
    left = [x for x in leftovers() if lab.prefix in x or lab.state in x]
    if left:
        errors.append("left behind: %s" % left)
    return errors


# ---- Debian's ufw, run inside an engine's namespace --------------------------------------------

def prepare_ufw(cache=ENGINE_CACHE):
    """bookworm's ufw package (this machine's release), unpacked into the cache: never
    installed on the machine, whose /etc, /usr and firewall stay as they are."""
    root = os.path.join(cache, "ufw", "root")
    stamp = os.path.join(cache, "ufw", "ready")
    if not os.path.exists(stamp):
        if os.path.isdir(root):
            shutil.rmtree(root)
        os.makedirs(root)
        debs = _apt_download(cache, ["ufw/bookworm"])
        _sh(["dpkg-deb", "-x", _deb_for(debs, "ufw", "0.36"), root])
        open(stamp, "w").close()
    return root


class Ufw:
    """`ufw` from the unpacked package, run in the engine's namespace inside a private mount
    namespace: /etc is an overlay whose writes land in `etc` (prepared the way the package's
    postinst does: the rules files from /usr/share/ufw/iptables, ufw.conf), /usr/lib and
    /usr/share are overlays that add the package's files. IPT_SYSCTL is emptied: the
    machine's kernel settings outside the namespace are not ufw's to change here."""

    def __init__(self, lab, root, workdir):
        self.lab, self.root = lab, root
        self.etc = os.path.join(workdir, "ufw-etc")
        self.work = os.path.join(workdir, "ufw-work")
        upper = os.path.join(self.etc, "upper")
        for d in (upper, os.path.join(self.work, "etc"), os.path.join(self.work, "lib"),
                  os.path.join(self.work, "share")):
            os.makedirs(d, exist_ok=True)
        shutil.copytree(os.path.join(root, "etc"), upper, dirs_exist_ok=True)
        share = os.path.join(root, "usr", "share", "ufw")
        for name in os.listdir(os.path.join(share, "iptables")):
            shutil.copy2(os.path.join(share, "iptables", name), os.path.join(upper, "ufw", name))
        shutil.copy2(os.path.join(share, "ufw.conf"), os.path.join(upper, "ufw", "ufw.conf"))
        default = os.path.join(upper, "default", "ufw")
        with open(default) as f:
            text = f.read()
        with open(default, "w") as f:
            f.write(re.sub(r"^IPT_SYSCTL=.*$", "IPT_SYSCTL=", text, flags=re.M))
        for dirpath, dirs, files in os.walk(self.etc):
            for n in dirs + files:
                os.chmod(os.path.join(dirpath, n), 0o755 if n in dirs else 0o644)

    def append_after_rules(self, text):
        path = os.path.join(self.etc, "upper", "ufw", "after.rules")
        with open(path, "a") as f:
            f.write("\n" + text)

    def run(self, *args, check=True):
        mounts = " && ".join([
            "mount --make-rprivate /",
            "mount -t overlay overlay -o lowerdir=/etc,upperdir=%s,workdir=%s /etc"
            % (os.path.join(self.etc, "upper"), os.path.join(self.work, "etc")),
            "mount -t overlay overlay -o lowerdir=%s:%s:/usr/lib /usr/lib"
            % (os.path.join(self.root, "lib"), os.path.join(self.root, "usr", "lib")),
            "mount -t overlay overlay -o lowerdir=%s:/usr/share /usr/share"
            % os.path.join(self.root, "usr", "share"),
            'exec "$@"'])
        return self.lab.run(["unshare", "-m", "sh", "-c", mounts, "sh", "python3",
                             os.path.join(self.root, "usr", "sbin", "ufw")] + list(args),
                            check=check, timeout=120)


def leftovers():
    """Namespaces and state directories of engine labs that are still there."""
    found = [n for n in _sh(["ip", "netns", "list"], check=False).stdout.split()
             if n.startswith("cceng")]
    found += ["/var/tmp/" + d for d in os.listdir("/var/tmp") if d.startswith("cceng")]
    return found
