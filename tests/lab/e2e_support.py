"""Plumbing for the end-to-end tests on the real Docker engine (tests/e2e/test_e2e_docker.py).

What lives here, so that the test module reads as the list of claims it proves:
  - Cleanup        a stack of undo steps, run in reverse, every one attempted even if some fail
  - deployment()   an e2e fixture's guard on the system engine: refused LOUDLY without root,
                   Docker, or where claw-cage objects exist; its Cleanup run and the machine
                   checked afterwards
  - probe_js()     the PROBE PROTOCOL script --verify sends, read from the program's source
  - read_env / set_env_var   the installed .env, read, and edited in place as a user does
  - write_output() keep a table a reviewer wants to see under tests/output/
  - sh()           one external command, bounded in time (lab/namespaces.py's)
  - snapshot_rules iptables-save of the root namespace, counters and comments stripped
  - preflight()    refuse to run where a claw-cage deployment (or its leftovers) already exists
  - StandIn        build the stand-in image (tests/e2e/) and tag it as the compose file's image
  - Peer           a test "host" in a network namespace of its own, joined to the root namespace
                   by a veth, serving HTTP on one address (the LAN host, the WAN host)
  - HostService    an HTTP server in this process, bound to one host address (a "service on the
                   host" the container must not reach)
  - EgressGuard    a chain after claw-cage's in DOCKER-USER: whatever the container sends
                   beyond the bridge and the test's peers ends on this machine (a reset, or a
                   silent drop for the machine's real LAN). The network rules here allow
                   packets only to 127.0.0.0/8 and to namespaces the test created; the control
                   runs (firewall removed) and --verify's probes must not leak onto eth0.

The test itself aims only at 127.0.0.0/8, at addresses of interfaces it created (veth host
sides, the compose bridge) and into namespaces it created. --verify, run by the test, also aims
at the host's own LAN address (delivered locally) and at addresses beyond the host: the guard
answers those with a reset, or drops them, on this machine.
"""

import contextlib
import http.server
import ipaddress
import json
import os
import re
import shutil
import socket
import socketserver
import subprocess
import sys
import tempfile
import threading
import time
import uuid

from lab import namespaces
from lab.namespaces import sh

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
E2E_DIR = os.path.join(ROOT, "tests", "e2e")
BUSYBOX = "/bin/busybox"          # Debian package busybox-static (tests/apt-packages.txt)
PROJECT = "claw-cage"             # top-level `name:` of deploy/docker-compose.yml
BRIDGE = "claw-cage0"
STANDIN_LABEL = "org.claw-cage.e2e-standin"
OUTPUT_DIR = os.path.join(ROOT, "tests", "output")
GATEWAY_PORT = 18789
PROBE_MS = 1500                   # each probe's own timeout, as --verify gives it
PEER_PORT = 8080
# Documentation ranges stand for "the internet". 198.51.100.0/24 first: on these machines the
# package registries resolve into 203.0.113.0/24, which a WAN route here would capture.
WAN_CANDIDATES = ["198.51.100.0/24", "203.0.113.0/24"]


def probe_js():
    """PROBE_JS from the program's source, so the stand-in gets exactly what --verify passes."""
    sys.path.insert(0, os.path.join(ROOT, "bootstrap"))
    try:
        from claw_cage.verify import probes
        return probes.PROBE_JS
    finally:
        sys.path.pop(0)


def read_env(path):
    with open(path) as f:
        return f.read()


def set_env_var(path, name, value):
    """Set NAME=value in .env the way a user edits it: in place, mode kept."""
    text = read_env(path)
    line = "%s=%s" % (name, value)
    pattern = re.compile(r"^%s=.*$" % re.escape(name), re.M)
    text = pattern.sub(line, text) if pattern.search(text) else \
        text.rstrip("\n") + "\n" + line + "\n"
    with open(path, "r+") as f:
        f.write(text)
        f.truncate()


def write_output(name, text):
    """Keep what a reviewer wants to see (matrix, --verify table) under tests/output/."""
    os.makedirs(OUTPUT_DIR, exist_ok=True)
    with open(os.path.join(OUTPUT_DIR, name), "w") as f:
        f.write(text)


class Cleanup:
    """Undo steps, pushed as things are created and run last-in first-out. Every step runs even
    when an earlier one fails; the failures are reported together at the end."""

    def __init__(self):
        self._steps = []

    def push(self, what, fn, *args, **kw):
        self._steps.append((what, fn, args, kw))

    def run(self):
        errors = []
        while self._steps:
            what, fn, args, kw = self._steps.pop()
            try:
                fn(*args, **kw)
            except Exception as err:  # keep going: the next step may still free something
                errors.append("%s: %s" % (what, err))
        return errors



@contextlib.contextmanager
def deployment(root_why, docker_why, gateway_port=GATEWAY_PORT, rules=False, also_left=None):
    """The guard of an e2e fixture that deploys on the system's Docker engine:
    require_root(root_why) and require_docker(docker_why), refused LOUDLY where this machine
    already holds claw-cage objects (preflight), then a Cleanup to push undo steps on. After
    the block, every step runs and the machine is checked: no object of the compose project
    (nor any `also_left()` names), and with rules=True no namespace of the test and iptables
    as before (undo_and_check; the snapshot is cleanup.rules_before). The fixture fails with
    what is left."""
    import pytest
    from conftest import refuse, require_docker, require_root
    require_root(root_why)
    require_docker(docker_why)
    problems = preflight(gateway_port)
    if problems:
        refuse("E2E NOT RUN: this machine already holds claw-cage objects the test must not "
               "touch: %s" % "; ".join(problems))
    cleanup = Cleanup()
    cleanup.rules_before = rules_before = snapshot_rules() if rules else None
    try:
        yield cleanup
    finally:
        if rules:
            trouble = undo_and_check(cleanup, rules_before)
        else:
            trouble = cleanup.run()
            left = project_objects() + (also_left() if also_left else [])
            if left:
                trouble.append("left behind: %s" % left)
        if trouble:
            pytest.fail("e2e cleanup: " + "\n".join(trouble))


# ---- iptables ------------------------------------------------------------------------------

_COUNTERS = re.compile(r"\[\d+:\d+\]")
# Other Docker networks get auto-named bridges br-<12 hex>; claw-cage's is pinned (claw-cage0).
# Their rules belong to whoever made them (another test, another user) and come and go with
# them: they are left out of the before/after comparison, never touched.
_OTHER_DOCKER_BRIDGE = re.compile(r"\bbr-[0-9a-f]{12}\b")


def _normalize_save(text):
    out = []
    for line in text.splitlines():
        if line.startswith("#") or not line.strip() or _OTHER_DOCKER_BRIDGE.search(line):
            continue
        out.append(_COUNTERS.sub("[0:0]", line.rstrip()))
    return out


def snapshot_rules():
    """{tool: [lines]} for every iptables flavour present: what we compare before and after.
    The legacy tables are included: a rule left there would be just as much a leftover."""
    snap = {}
    for tool in ("iptables-save", "ip6tables-save", "iptables-legacy-save",
                 "ip6tables-legacy-save"):
        if shutil.which(tool):
            res = sh([tool], check=False, timeout=30)
            snap[tool] = _normalize_save(res.stdout) if res.returncode == 0 else \
                ["<%s failed: %s>" % (tool, res.stderr.strip())]
    return snap


def _tables(lines):
    """{table: [lines]} of one iptables-save listing."""
    tables, current = {}, None
    for ln in lines:
        if ln.startswith("*"):
            current = ln[1:]
            tables[current] = []
        elif current and ln != "COMMIT":
            tables[current].append(ln)
    return tables


def drop_new_empty_tables(before, cleanup_errors):
    """An nf_tables table springs into existence at the first iptables command that names it
    (e.g. the ip6 filter table that claw-cage's --firewall reads and writes) and stays,
    empty, after its last rule is gone. Delete such a table when it did not exist before the
    test and holds nothing but built-in chains with an ACCEPT policy: then it is ours and
    empty. Anything else is left alone (and the comparison will show it)."""
    version = sh(["iptables", "-V"], check=False).stdout
    if "nf_tables" not in version or not shutil.which("nft"):
        return
    now = snapshot_rules()
    for tool, family in (("iptables-save", "ip"), ("ip6tables-save", "ip6")):
        old = _tables(before.get(tool, []))
        for table, lines in _tables(now.get(tool, [])).items():
            if table in old:
                continue
            empty = all(re.match(r"^:(INPUT|FORWARD|OUTPUT|PREROUTING|POSTROUTING) ACCEPT "
                                 r"\[0:0\]$", ln) for ln in lines)
            if empty:
                res = sh(["nft", "delete", "table", family, table], check=False)
                if res.returncode != 0:
                    cleanup_errors.append("nft delete table %s %s: %s"
                                          % (family, table, res.stderr.strip()))


def diff_rules(before, after):
    """Human-readable differences between two snapshots ('' when equal)."""
    lines = []
    for tool in sorted(set(before) | set(after)):
        b, a = before.get(tool, []), after.get(tool, [])
        if b == a:
            continue
        gone = [ln for ln in b if ln not in a]
        new = [ln for ln in a if ln not in b]
        lines.append("%s differs:" % tool)
        lines += ["  - " + ln for ln in gone] + ["  + " + ln for ln in new]
        if not gone and not new:
            lines.append("  (same rules, different order)")
    return "\n".join(lines)


def table_of(lines, line_no):
    """The '*table' a line of an iptables-save listing belongs to."""
    for ln in reversed(lines[:line_no + 1]):
        if ln.startswith("*"):
            return ln[1:]
    return "?"


def added_lines(before, after):
    """[(table, line)] present in `after` and not in `before` (iptables-save, IPv4 + IPv6)."""
    found = []
    for tool in ("iptables-save", "ip6tables-save"):
        b = set(before.get(tool, []))
        a = after.get(tool, [])
        for i, ln in enumerate(a):
            if ln not in b and not ln.startswith(("*", "COMMIT")):
                found.append((tool, table_of(a, i), ln))
    return found


# ---- Docker --------------------------------------------------------------------------------

def docker_json(argv, timeout=30):
    return json.loads(sh(["docker"] + argv, timeout=timeout).stdout)


def gateway_container():
    """The id of the running gateway container of the claw-cage project, or None."""
    out = sh(["docker", "ps", "-q", "--no-trunc", "--filter",
              "label=com.docker.compose.project=" + PROJECT, "--filter",
              "label=com.docker.compose.service=openclaw"]).stdout.split()
    return out[0] if len(out) == 1 else None


def undo_and_check(cleanup, rules_before):
    """Run every undo step, then check that the test left nothing: no project object, no
    namespace of its own, iptables as before (counters aside). The problems, one per entry."""
    errors = cleanup.run()
    drop_new_empty_tables(rules_before, errors)
    leftovers = project_objects()
    diff = diff_rules(rules_before, snapshot_rules())
    netns = [n for n in sh(["ip", "netns", "list"]).stdout.split() if n.startswith("cce2e-")]
    return errors + (["left behind: %s" % leftovers] if leftovers else []) + \
        (["namespaces left: %s" % netns] if netns else []) + \
        (["iptables differs from before the test:\n" + diff] if diff else [])


def project_objects():
    """Every container, volume and network that carries the claw-cage compose project label."""
    label = "label=com.docker.compose.project=" + PROJECT
    found = []
    for kind, argv in (("container", ["ps", "-a", "--filter", label, "--format", "{{.Names}}"]),
                       ("volume", ["volume", "ls", "--filter", label, "--format", "{{.Name}}"]),
                       ("network", ["network", "ls", "--filter", label, "--format",
                                    "{{.Name}}"])):
        for name in sh(["docker"] + argv).stdout.split():
            found.append("%s %s" % (kind, name))
    return found


def port_open(host, port, timeout=1.0):
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def preflight(gateway_port=18789):
    """Reasons this machine already holds a claw-cage deployment the test must not touch."""
    problems = ["%s (of compose project %s)" % (o, PROJECT) for o in project_objects()]
    if os.path.exists("/sys/class/net/" + BRIDGE):
        problems.append("network interface %s exists" % BRIDGE)
    for path in ("/etc/claw-cage", "/etc/systemd/system/claw-cage-firewall.service"):
        if os.path.lexists(path):
            problems.append("%s exists (claw-cage's firewall persistence)" % path)
    if port_open("127.0.0.1", gateway_port):
        problems.append("something listens on 127.0.0.1:%d" % gateway_port)
    for tool, lines in snapshot_rules().items():
        hits = [ln for ln in lines if BRIDGE in ln or "claw" in ln.lower()]
        if hits:
            problems.append("%s already holds claw-cage rules: %s" % (tool, hits[0]))
    return problems


def split_image_ref(ref):
    """'repo[:tag][@sha256:...]' -> (repo, tag or None, digest or None)."""
    name, _, digest = ref.partition("@")
    last = name.rsplit("/", 1)[-1]
    if ":" in last:
        name, tag = name.rsplit(":", 1)
    else:
        tag = None
    return name, tag, digest or None


class StandIn:
    """The stand-in image (tests/e2e/Dockerfile), built without any registry, tagged with the
    name the compose file runs. A tag that exists already is never overwritten unless it is a
    stand-in itself (label STANDIN_LABEL, the leftover of an interrupted run)."""

    def __init__(self, cleanup):
        self.cleanup = cleanup
        self.image_id = None

    def build(self):
        ctx = tempfile.mkdtemp(prefix="claw-e2e-ctx-")
        try:
            shutil.copytree(E2E_DIR, os.path.join(ctx, "c"), symlinks=True)
            shutil.copy2(BUSYBOX, os.path.join(ctx, "c", "busybox"))
            build_tag = "claw-cage-e2e-standin:%s" % uuid.uuid4().hex[:10]
            # The legacy builder: this engine has no BuildKit/buildx, and nothing is pulled
            # (FROM scratch).
            env = dict(os.environ, DOCKER_BUILDKIT="0")
            sh(["docker", "build", "-q", "-t", build_tag, os.path.join(ctx, "c")],
               timeout=300, env=env)
        finally:
            shutil.rmtree(ctx, ignore_errors=True)
        self.cleanup.push("remove build tag " + build_tag, untag, build_tag)
        self.image_id = sh(["docker", "image", "inspect", "-f", "{{.Id}}", build_tag]).stdout.strip()
        return self.image_id

    def tag_as(self, name):
        res = sh(["docker", "image", "inspect", name], check=False)
        if res.returncode == 0:
            labels = json.loads(res.stdout)[0].get("Config", {}).get("Labels") or {}
            if labels.get(STANDIN_LABEL) != "1":
                raise AssertionError("image %s exists on this machine and is not the e2e "
                                     "stand-in: refusing to shadow it" % name)
        sh(["docker", "tag", self.image_id, name])
        self.cleanup.push("remove tag " + name, untag, name)


def untag(name):
    # `docker rmi TAG` removes the tag, and the image with its last tag. Never -f: an image a
    # container still uses stays (and the cleanup reports it).
    res = sh(["docker", "rmi", name], check=False)
    if res.returncode != 0 and "No such image" not in res.stderr:
        raise AssertionError("docker rmi %s: %s" % (name, res.stderr.strip()))


# ---- network peers -------------------------------------------------------------------------

def used_ipv4_networks():
    """Every IPv4 network this machine routes to, holds an address in, or uses for DNS, plus
    every Docker network's subnet: a test subnet must overlap none of them."""
    nets = []
    for line in sh(["ip", "-4", "route", "show", "table", "all"]).stdout.splitlines():
        word = line.split()[0] if line.split() else ""
        if word in ("default", "broadcast", "local", "unreachable", "blackhole", "prohibit"):
            word = line.split()[1] if word != "default" and len(line.split()) > 1 else ""
        try:
            nets.append(ipaddress.ip_network(word, strict=False))
        except ValueError:
            pass
    for line in sh(["ip", "-4", "-o", "addr"]).stdout.splitlines():
        m = re.search(r"inet (\S+)", line)
        if m:
            nets.append(ipaddress.ip_interface(m.group(1)).network)
    try:
        with open("/etc/resolv.conf") as f:
            for m in re.finditer(r"^nameserver\s+(\d+\.\d+\.\d+\.\d+)", f.read(), re.M):
                nets.append(ipaddress.ip_network(m.group(1)))
    except OSError:
        pass
    for net_id in sh(["docker", "network", "ls", "-q"]).stdout.split():
        info = docker_json(["network", "inspect", net_id])[0]
        for cfg in (info.get("IPAM") or {}).get("Config") or []:
            try:
                nets.append(ipaddress.ip_network(cfg.get("Subnet", ""), strict=False))
            except ValueError:
                pass
    return nets


def pick_subnet(candidates, used=None):
    """The first /24 of `candidates` that overlaps nothing in use on this machine."""
    used = used_ipv4_networks() if used is None else used
    for cand in candidates:
        net = ipaddress.ip_network(cand)
        if not any(net.overlaps(u) for u in used):
            return net
    raise AssertionError("every candidate test subnet is in use here: %s" % ", ".join(candidates))


# The namespaces' HTTP and DNS servers (lab/namespaces.py), under their old names here.
_PEER_SERVER = namespaces.PEER_SERVER
_DNS_SERVER = namespaces.DNS_SERVER


class Peer:
    """A namespace `ns` joined to the root namespace by veth `host_if` (host side, address
    .1 of `subnet`) / `peer_if` (inside, address .2), serving HTTP on .2:port. It has NO
    default route: it answers what reaches it (the container's traffic arrives masqueraded to
    the host side's address, on-link) and cannot send a packet anywhere else.
    Everything it creates is registered with `cleanup`."""

    def __init__(self, cleanup, role, subnet, port, python):
        tag = uuid.uuid4().hex[:6]
        self.ns = "cce2e-%s-%s" % (role, tag)
        self.host_if = "cce2%s%s" % (role[0], tag)        # <= 15 characters
        self.peer_if = "eth0"
        self.subnet = subnet
        hosts = list(subnet.hosts())
        self.host_addr, self.addr = str(hosts[0]), str(hosts[1])
        self.port = port
        sh(["ip", "netns", "add", self.ns])
        cleanup.push("delete netns " + self.ns, sh, ["ip", "netns", "del", self.ns])
        sh(["ip", "link", "add", self.host_if, "type", "veth", "peer", "name", "cce2tmp" + tag])
        cleanup.push("delete veth " + self.host_if, _del_link, self.host_if)
        sh(["ip", "link", "set", "cce2tmp" + tag, "netns", self.ns])
        sh(["ip", "-n", self.ns, "link", "set", "cce2tmp" + tag, "name", self.peer_if])
        sh(["ip", "addr", "add", "%s/%d" % (self.host_addr, subnet.prefixlen), "dev", self.host_if])
        sh(["ip", "link", "set", self.host_if, "up"])
        sh(["ip", "-n", self.ns, "addr", "add", "%s/%d" % (self.addr, subnet.prefixlen),
            "dev", self.peer_if])
        sh(["ip", "-n", self.ns, "link", "set", self.peer_if, "up"])
        sh(["ip", "-n", self.ns, "link", "set", "lo", "up"])
        self.proc = subprocess.Popen(["ip", "netns", "exec", self.ns, python, "-c",
                                      _PEER_SERVER, self.addr, str(port)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        cleanup.push("stop server in " + self.ns, _stop, self.proc)
        namespaces.wait_port(namespaces.netns_exec(self.ns), self.addr, port, proc=self.proc,
                             python="python3")

    def serve_dns(self, cleanup, answer, python):
        """Also answer DNS on .2:53/udp (every A query: `answer`): a resolver on the LAN, as a
        home router is."""
        proc = subprocess.Popen(["ip", "netns", "exec", self.ns, python, "-c", _DNS_SERVER,
                                 self.addr, "53", answer],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        cleanup.push("stop DNS server in " + self.ns, _stop, proc)
        time.sleep(0.5)
        if proc.poll() is not None:
            raise AssertionError("DNS server in %s died: %s"
                                 % (self.ns, proc.stderr.read().decode()[-500:]))

    def connect_from_ns(self, host, port, timeout=2):
        """True iff a TCP connection from inside this namespace to host:port opens."""
        return namespaces.connect(namespaces.netns_exec(self.ns), host, port, timeout,
                                  python="python3")


def _del_link(name):
    if os.path.exists("/sys/class/net/" + name):
        sh(["ip", "link", "del", name])


def _stop(proc):
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


class HostService:
    """An HTTP server of the host itself (root namespace), bound to one address: what a
    container must not reach unless allow-listed. Runs in a thread of this process."""

    def __init__(self, cleanup, addr, port=0):
        class H(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(200)
                self.send_header("Content-Length", "3")
                self.end_headers()
                self.wfile.write(b"ok\n")

            def log_message(self, *a):
                pass

        # socketserver's server: http.server's would look the address up in DNS (see above)
        self.server = socketserver.ThreadingTCPServer((addr, port), H)
        self.addr, self.port = addr, self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        cleanup.push("stop host service %s:%d" % (addr, self.port), self._stop)

    def _stop(self):
        self.server.shutdown()
        self.server.server_close()


class EgressGuard:
    """What the container sends beyond the host must end on this machine: the network rules
    here allow packets only to 127.0.0.0/8 and to namespaces the test created.

    A chain of the test's own, jumped to from DOCKER-USER right AFTER claw-cage's jump, so it
    sees only what the cage let through (or everything, while the cage is removed):
      - back onto the bridge, or to the test's peers: RETURN (Docker's rules decide, as usual);
      - to a network this machine is really connected to (its LAN, here 192.0.2.0/24 on eth0):
        DROP, silently. Nothing may reach it, and a reply could not be faked honestly;
      - anywhere else: REJECT, a TCP reset (ICMP unreachable for the rest), standing in for the
        host that would answer out there. So a probe the cage wrongly lets through is seen as
        reached (by --verify too), not mistaken for blocked.
    The one blind spot is therefore the machine's own LAN (--verify's "LAN gateway" row): its
    proof is the namespace lab of tests/verify/test_verify_lab.py."""

    CHAIN = "CLAWE2E-GUARD"
    JUMP = ["-i", BRIDGE, "-j", CHAIN]

    def __init__(self, cleanup, peers, lan_nets):
        ipt = ["iptables", "-w", "10"]
        sh(ipt + ["-N", self.CHAIN])
        cleanup.push("delete chain " + self.CHAIN, self._delete, ipt)
        sh(ipt + ["-A", self.CHAIN, "-o", BRIDGE, "-j", "RETURN"])
        for net in peers:
            sh(ipt + ["-A", self.CHAIN, "-d", str(net), "-j", "RETURN"])
        for net in lan_nets:
            sh(ipt + ["-A", self.CHAIN, "-d", str(net), "-j", "DROP"])
        sh(ipt + ["-A", self.CHAIN, "-p", "tcp", "-j", "REJECT", "--reject-with", "tcp-reset"])
        sh(ipt + ["-A", self.CHAIN, "-j", "REJECT", "--reject-with", "icmp-port-unreachable"])
        # Position 1 now; --firewall inserts its own jump above it (first, as it must be).
        sh(ipt + ["-I", "DOCKER-USER", "1"] + self.JUMP)

    def _delete(self, ipt):
        while sh(ipt + ["-C", "DOCKER-USER"] + self.JUMP, check=False).returncode == 0:
            sh(ipt + ["-D", "DOCKER-USER"] + self.JUMP)
        sh(ipt + ["-F", self.CHAIN])
        sh(ipt + ["-X", self.CHAIN])


def connected_networks(exclude_ifaces):
    """IPv4 networks this machine is directly connected to (scope link routes), except on the
    interfaces named (the test's own, the claw-cage bridge)."""
    nets = []
    for line in sh(["ip", "-4", "route", "show", "table", "main", "scope", "link"]).stdout.splitlines():
        words = line.split()
        if len(words) >= 3 and "dev" in words:
            dev = words[words.index("dev") + 1]
            if dev in exclude_ifaces:
                continue
            try:
                nets.append(ipaddress.ip_network(words[0], strict=False))
            except ValueError:
                pass
    return nets


# ---- the running gateway -------------------------------------------------------------------

def http_status(url, timeout=3):
    """Status code of a GET from the host, or None when nothing answers."""
    import urllib.error
    import urllib.request
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status
    except urllib.error.HTTPError as err:
        return err.code
    except OSError:
        return None


def wait_for(predicate, timeout, interval=0.5):
    """Poll `predicate` until it returns something truthy or `timeout` seconds pass."""
    deadline = time.time() + timeout
    while True:
        value = predicate()
        if value or time.time() >= deadline:
            return value
        time.sleep(interval)
