"""End to end on the real Docker engine: the stack up, caged, verified, upgraded (issue 6).

Runs the BUILT program the way a user does, against this machine's dockerd:
  install (piped, from the repo's deploy/ as a local source) into a scratch directory,
  `sudo python3 <dir>/claw-cage.pyz --firewall --no-persist`, `docker compose up -d` with the
  shipped compose file (only `--pull never` added: nothing can be pulled here),
and then proves, with packets where it is about packets:
  - docker inspect shows every hardening setting of the compose file (issue 3);
  - the gateway answers on 127.0.0.1:18789 and on no other host address;
  - from inside the running container: a LAN host is unreachable and reachable again after
    `--firewall --remove` (the control), a WAN host is reachable, a host service is not;
  - a resolver on the LAN is cut off (Docker < 28 forwards DNS from the container) and
    `--allow RESOLVER:53` lets it through;
  - `--verify` passes, and fails after a deliberate breakage;
  - AC-6: data in claw-data survives `docker compose down`, a re-install, and `up`;
  - `--firewall --remove` leaves Docker's own chains and the running stack working;
  - issue 16: the gateway writes every path it needs under the read-only root and each one is
    needed (taken away one at a time); `docker compose run --rm openclaw-cli devices list`
    reaches the gateway (ECONNREFUSED on a network of its own) and is caged like it; the repair
    service works with the gateway stopped; a blank token starts nothing.

The OpenClaw image cannot be pulled here: tests/e2e/ builds a stand-in (busybox) with the same
user, paths, gateway command and probe protocol, tagged with the compose file's image name.
If that name is pinned by digest (a local image can never carry a registry digest), the tag is
the name without the digest and the installed .env sets OPENCLAW_IMAGE to it: the override the
compose file offers users, the file itself stays as shipped.

Everything created (namespaces, veths, the guard chain, containers, volumes, the network, image
tags, the firewall) is removed afterwards, also on failure, and the root namespace's
iptables-save must then equal the one taken before (counters aside). Where this machine already
holds a claw-cage deployment, nothing runs (loud skip; a failure under CI).
"""

import http.server
import json
import os
import re
import shutil
import socket
import socketserver
import stat
import subprocess
import threading
import time
import uuid

from conftest import require_root
from lab import e2e_support as e2e
from lab.e2e_support import GATEWAY_PORT, PROBE_MS, sh
from lab.stack import LEFT_BY_DESIGN, stack, standin  # noqa: F401 (fixtures)


# Where the gateway writes under its read-only root (docs/design.md "Writable paths").
WRITE_TMPFS = ("/tmp", "/tmp/openclaw", "/home/node/.cache", "/home/node/.config")
WRITE_VOLUMES = {"/home/node/.openclaw": "claw-cage_claw-data",
                 "/home/node/.config/openclaw": "claw-cage_claw-secrets",
                 "/home/node/.npm": "claw-cage_claw-npm",
                 "/home/node/.local": "claw-cage_claw-local"}


def _decoded(res):
    return res.stdout.decode() + res.stderr.decode()


# ---- the stand-in itself: the probe protocol, answer for answer like PROBE_JS in real Node ----

class _Handler(http.server.BaseHTTPRequestHandler):
    ROUTES = {"/ok": 200, "/missing": 404, "/moved": 302, "/boom": 500}

    def do_GET(self):
        code = self.ROUTES.get(self.path, 404)
        self.send_response(code)
        if code == 302:
            self.send_header("Location", "/ok")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *a):
        pass


def test_standin_answers_the_probe_protocol_like_real_node(standin, tmp_path):
    """Same probe, same targets on 127.0.0.1: the stand-in's exit code must equal that of
    PROBE_JS run by real Node, failure modes included (404, 500, a redirect, a refused port,
    a server that never answers, a bad mode). Otherwise --verify's probes and the compose
    healthcheck would be tested against something that behaves differently."""
    require_root("a network namespace without any network for the DNS failure case")
    node = shutil.which("node")
    assert node, "node (Debian package nodejs) is needed to run PROBE_JS for real"
    js = e2e.probe_js()
    srv = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Handler)   # no name lookup
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)                       # accepts (kernel backlog), never answers
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    closed_port = closed.getsockname()[1]
    closed.close()                         # nothing listens there any more
    port, quiet = srv.server_address[1], silent.getsockname()[1]
    url = "http://127.0.0.1:%d" % port
    cases = [
        ("http 200", ["http", url + "/ok", "2000"]),
        ("http 404", ["http", url + "/missing", "2000"]),
        ("http 500", ["http", url + "/boom", "2000"]),
        ("http 302 (not followed)", ["http", url + "/moved", "2000"]),
        ("http refused", ["http", "http://127.0.0.1:%d/" % closed_port, "2000"]),
        ("http never answers", ["http", "http://127.0.0.1:%d/" % quiet, "800"]),
        ("tcp open", ["tcp", "127.0.0.1", str(port), "2000"]),
        ("tcp refused", ["tcp", "127.0.0.1", str(closed_port), "2000"]),
        ("dns localhost", ["dns", "localhost", "2000"]),
        ("dns address literal", ["dns", "127.0.0.1", "2000"]),
        ("bad mode", ["ftp", "x", "2000"]),
    ]
    netless = "cce2e-none-" + uuid.uuid4().hex[:6]
    sh(["ip", "netns", "add", netless])
    rows, wrong = [], []
    try:
        for name, args in cases:
            t0 = time.monotonic()
            real = subprocess.run([node, "-e", js] + args, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL, timeout=20).returncode
            t1 = time.monotonic()
            stand = sh(["docker", "run", "--rm", "--network", "host", "--read-only",
                        "--cap-drop", "ALL", "--user", "1000:1000", "--entrypoint", "node",
                        standin.image_id, "-e", js] + args, check=False, timeout=30).returncode
            rows.append((name, real, stand, t1 - t0))
        # A name that needs DNS, where no network exists: fails at once, no packet sent.
        real = sh(["ip", "netns", "exec", netless, node, "-e", js, "dns", "nosuch.invalid",
                   "2000"], check=False, timeout=20).returncode
        stand = sh(["docker", "run", "--rm", "--network", "none", "--entrypoint", "node",
                    standin.image_id, "-e", js, "dns", "nosuch.invalid", "2000"],
                   check=False, timeout=30).returncode
        rows.append(("dns unresolvable", real, stand, 0.0))
    finally:
        sh(["ip", "netns", "del", netless], check=False)
        srv.shutdown()
        srv.server_close()
        silent.close()
    table = "\n".join("%-26s node=%d stand-in=%d" % (n, r, s) for n, r, s, _ in rows)
    e2e.write_output("e2e-standin-protocol.txt", table + "\n")
    wrong = [r for r in rows if r[1] != r[2]]
    assert not wrong, "stand-in differs from PROBE_JS in real node:\n" + table
    codes = set(r[1] for r in rows)
    assert {0, 1, 2} <= codes, "the cases must exercise success, failure and usage:\n" + table
    slow = [r for r in rows if r[3] > 5]
    assert not slow, "a probe outlived its timeout: %s" % slow


# ---- the deployment ---------------------------------------------------------------------------

def test_docker_inspect_shows_every_hardening_setting(stack):
    stack.ensure_up()
    info = stack.inspect()
    host, cfg = info["HostConfig"], info["Config"]
    env = dict(v.split("=", 1) for v in cfg.get("Env") or [])
    problems = []

    def need(ok, what):
        if not ok:
            problems.append(what)

    need(cfg.get("User") == "1000:1000", "user 1000:1000, got %r" % cfg.get("User"))
    need([c.upper() for c in host.get("CapDrop") or []] == ["ALL"],
         "cap_drop [ALL], got %r" % host.get("CapDrop"))
    need(not host.get("CapAdd"), "no added capabilities, got %r" % host.get("CapAdd"))
    need(any(o.replace("=", ":") in ("no-new-privileges:true", "no-new-privileges")
             for o in host.get("SecurityOpt") or []),
         "no-new-privileges, got %r" % host.get("SecurityOpt"))
    need(host.get("ReadonlyRootfs") is True, "read-only root filesystem")
    need(host.get("Privileged") is False, "not privileged")
    need(host.get("NetworkMode") not in ("host",) and not str(host.get("PidMode")),
         "no host network / PID namespace: %r %r" % (host.get("NetworkMode"), host.get("PidMode")))
    need(host.get("IpcMode") != "host", "no host IPC namespace")
    need(host.get("Init") is True, "init: true")
    need((host.get("RestartPolicy") or {}).get("Name") == "unless-stopped",
         "restart unless-stopped, got %r" % host.get("RestartPolicy"))
    tmpfs = host.get("Tmpfs") or {}
    need(sorted(tmpfs) == sorted(WRITE_TMPFS) and all("size=" in o for o in tmpfs.values()),
         "size-capped tmpfs on %s, got %r" % (", ".join(WRITE_TMPFS), tmpfs))
    mounts = {m["Destination"]: m for m in info.get("Mounts") or []}
    for dest, vol in WRITE_VOLUMES.items():
        m = mounts.get(dest)
        need(m is not None and m.get("Type") == "volume" and m.get("RW") is True and
             (vol is None or m.get("Name") == vol),
             "named volume %s at %s, got %r" % (vol or "(any)", dest, m))
    need(not [m for m in info.get("Mounts") or [] if "docker.sock" in m.get("Source", "")],
         "no Docker socket mounted")
    # The binds allowed: the install dir's openclaw.json (issue 13, policy) and the generated
    # openclaw.routes.json that includes it (issue 29, the key routes), read-only.
    need(not [m for m in info.get("Mounts") or [] if m.get("Type") == "bind" and not (
        m.get("Destination") in ("/home/node/.openclaw/openclaw.json",
                                 "/home/node/.openclaw/openclaw.routes.json")
        and m.get("RW") is False)],
         "no bind mount of the host, got %r" % [m.get("Source") for m in info.get("Mounts")
                                                 if m.get("Type") == "bind"])
    bindings = host.get("PortBindings") or {}
    need(bindings == {"%d/tcp" % GATEWAY_PORT: [{"HostIp": "127.0.0.1",
                                                  "HostPort": str(GATEWAY_PORT)}]},
         "only 127.0.0.1:18789 published, got %r" % bindings)
    memory = host.get("Memory") or 0
    need(memory > 0, "a memory limit")
    need((host.get("NanoCpus") or 0) > 0 or (host.get("CpuQuota") or 0) > 0, "a CPU limit")
    need((host.get("PidsLimit") or 0) > 0, "a process-count limit")
    heap = re.search(r"--max-old-space-size=(\d+)", env.get("NODE_OPTIONS", ""))
    need(heap and 0 < int(heap.group(1)) * (1 << 20) < memory,
         "NODE_OPTIONS heap below the memory limit, got %r / %d" % (env.get("NODE_OPTIONS"),
                                                                    memory))
    log = host.get("LogConfig") or {}
    need(log.get("Type") == "json-file" and (log.get("Config") or {}).get("max-size") and
         (log.get("Config") or {}).get("max-file"), "bounded json-file logs, got %r" % log)
    hc = (cfg.get("Healthcheck") or {}).get("Test") or []
    need(hc[:3] == ["CMD", "node", "-e"] and "http" in hc and
         "http://127.0.0.1:%d/healthz" % GATEWAY_PORT in hc, "a node healthcheck on /healthz, "
         "got %r" % hc[:2])
    need(info["State"].get("Health", {}).get("Status") == "healthy", "healthcheck healthy")
    cmd = cfg.get("Cmd") or []
    need("gateway" in cmd and cmd[cmd.index("--bind") + 1] == "lan" if "--bind" in cmd else
         False, "gateway --bind lan, got %r" % cmd)
    need("--port" in cmd and cmd[cmd.index("--port") + 1] == str(GATEWAY_PORT),
         "--port 18789, got %r" % cmd)
    env_file = e2e.read_env(os.path.join(stack.dir, ".env"))
    token = re.search(r"^OPENCLAW_GATEWAY_TOKEN=(\S+)$", env_file, re.M)
    need(token and env.get("OPENCLAW_GATEWAY_TOKEN") == token.group(1),
         "the .env gateway token reaches the container (value not shown)")
    need(cfg.get("Image") == stack.image, "runs %s, got %s" % (stack.image, cfg.get("Image")))
    net = e2e.docker_json(["network", "inspect", stack.network_name()])[0]
    need(net["Options"].get("com.docker.network.bridge.name") == e2e.BRIDGE,
         "bridge interface pinned to %s, got %r" % (e2e.BRIDGE, net["Options"]))
    need([c.get("Subnet") for c in net["IPAM"]["Config"]] == ["172.30.0.0/24"],
         "subnet 172.30.0.0/24, got %r" % net["IPAM"]["Config"])
    need(net.get("EnableIPv6") is False, "IPv6 off on claw-net")
    need(os.path.exists("/sys/class/net/" + e2e.BRIDGE), "interface %s exists" % e2e.BRIDGE)
    # IPv6 off means no IPv6 address on the container's interfaces (loopback aside): on this
    # engine nothing jumps to an IPv6 DOCKER-USER, so this is what keeps IPv6 out of the cage.
    inet6 = sh(["docker", "exec", info["Id"], "cat", "/proc/net/if_inet6"]).stdout.splitlines()
    v6 = [ln.split()[-1] + " " + ln.split()[0] for ln in inet6 if ln.split()[-1] != "lo"]
    need(not v6, "no IPv6 address in the container, got %r" % v6)
    assert not problems, "hardening missing from the running container:\n  " + \
        "\n  ".join(problems)


def test_gateway_answers_on_loopback_only(stack):
    stack.ensure_up()
    assert e2e.http_status("http://127.0.0.1:%d/healthz" % GATEWAY_PORT) == 200
    # Listeners and DNAT: nothing for the port beyond loopback (the kernel's own view).
    ss = sh(["ss", "-Htln", "sport = :%d" % GATEWAY_PORT]).stdout.split("\n")
    local = [ln.split()[3] for ln in ss if ln.strip()]
    assert local and all(a.startswith("127.0.0.1:") for a in local), local
    nat = sh(["iptables", "-w", "10", "-t", "nat", "-S"]).stdout.splitlines()
    dnat = [ln for ln in nat if "DNAT" in ln and "--dport %d" % GATEWAY_PORT in ln]
    assert dnat and all("-d 127.0.0.1/32" in ln for ln in dnat), dnat
    # Packets: every other host address the test may aim at, from the host and from a LAN
    # machine. Each has a control: the same address answers on a port a host service holds.
    others = [(stack.lan.host_addr, stack.host_svc_lan.port),
              (stack.bridge_gateway(), stack.host_svc_bridge.port)]
    wan_svc = e2e.HostService(stack.cleanup, stack.wan.host_addr)
    others.append((stack.wan.host_addr, wan_svc.port))
    rows = []
    for addr, control_port in others:
        rows.append(("host -> %s:%d" % (addr, GATEWAY_PORT), e2e.port_open(addr, GATEWAY_PORT)))
        rows.append(("host -> %s:%d (control)" % (addr, control_port),
                     e2e.port_open(addr, control_port)))
    rows.append(("LAN -> %s:%d" % (stack.lan.host_addr, GATEWAY_PORT),
                 stack.lan.connect_from_ns(stack.lan.host_addr, GATEWAY_PORT)))
    rows.append(("LAN -> %s:%d (control)" % (stack.lan.host_addr, stack.host_svc_lan.port),
                 stack.lan.connect_from_ns(stack.lan.host_addr, stack.host_svc_lan.port)))
    table = "\n".join("%-40s %s" % (n, "open" if ok else "closed") for n, ok in rows)
    e2e.write_output("e2e-gateway-exposure.txt", table + "\n")
    for name, ok in rows:
        assert ok == name.endswith("(control)"), table


def test_cage_blocks_lan_and_host_keeps_wan_with_control(stack):
    stack.ensure_up()
    caged = stack.matrix()
    stack.firewall_off()
    try:
        open_ = stack.matrix()
    finally:
        stack.firewall_on()
    recaged = stack.matrix()
    table = ["%-44s %-12s %-12s %s" % ("from the container to", "caged", "no rules",
                                        "caged again")]
    for name in caged:
        table.append("%-44s %-12s %-12s %s" % (name, *("reached" if m[name] else "blocked"
                                                       for m in (caged, open_, recaged))))
    table = "\n".join(table)
    e2e.write_output("e2e-packet-matrix.txt", table + "\n")
    expected = {name: name.startswith("WAN") for name in caged}
    assert caged == expected, table
    assert all(open_.values()), "the control: without the rules every probe must get " \
                                "through, or 'blocked' proves nothing\n" + table
    assert recaged == expected, table


def test_lan_resolver_cut_off_unless_allowed(stack):
    """docs/firewall.md, "DNS": before Docker 28 (this engine is 20.10), Docker's DNS in
    the container forwards queries to an upstream resolver FROM the container, so a resolver
    on the LAN is dropped like any LAN host, and `--allow RESOLVER:53` lets it through.
    A throwaway container on claw-net with `--dns <LAN resolver>` is that situation."""
    stack.ensure_up()
    name = "api.claw-e2e.example"

    def resolves():
        res = sh(["docker", "run", "--rm", "--pull", "never", "--network",
                  stack.network_name(), "--dns", stack.lan.addr, "--user", "1000:1000",
                  "--cap-drop", "ALL", "--read-only", "--entrypoint", "node", stack.image,
                  "-e", stack.probe_js, "dns", name, "2500"], check=False, timeout=60)
        assert res.returncode in (0, 1), res.stderr
        return res.returncode == 0

    caged = resolves()
    stack.firewall_off()
    try:
        open_ = resolves()
    finally:
        stack.firewall_on()
    allow = "%s:53" % stack.lan.addr
    res = stack.program("--firewall", "--no-persist", "--dir", stack.dir, "--allow", allow)
    assert res.returncode == 0, _decoded(res)
    try:
        allowed = resolves()
        lan_web = stack.reach("tcp", stack.lan.addr, stack.lan.port)
    finally:
        stack.firewall_on()     # back to the default rule set
    assert open_, "the control: without the rules the LAN resolver answers"
    assert not caged, "a LAN resolver must be dropped by the default cage on this engine"
    assert allowed, "--allow %s must let the container's DNS through" % allow
    assert not lan_web, "--allow RESOLVER:53 opens port 53, not the resolver's other ports"


def _rows(res):
    return json.loads(res.stdout.decode())


def _failed(rows):
    return [r for r in rows if r["status"] == "fail"]


def test_verify_passes_then_fails_on_breakage(stack):
    stack.ensure_up()
    # As set up (--no-persist), the one thing missing is the boot-time restore, and --verify
    # says exactly that (where systemd is installed; elsewhere that row is a skip).
    rows = _rows(stack.verify("--json"))
    expect = ["persistence"] if os.path.isdir("/etc/systemd/system") else []
    assert [r["check"] for r in _failed(rows)] == expect, rows
    # With persistence (written into the test's private /etc), everything holds.
    stack.firewall_on(persist=True)
    try:
        assert "claw-cage/firewall.sh" in stack.etc_files(), stack.etc_files()
        table = stack.verify()
        e2e.write_output("e2e-verify.txt", _decoded(table))
        assert table.returncode == 0, "--verify on the deployment:\n" + _decoded(table)
        rows = _rows(stack.verify("--json"))
        assert not _failed(rows), rows
        # The container rows and the probes ran for real (not skipped).
        container_rows = [r for r in rows if r["check"].startswith("container ")]
        assert len(container_rows) >= 7 and all(r["status"] == "pass"
                                                for r in container_rows), container_rows
        probe_rows = [r for r in rows if r["check"].startswith("probe ")]
        assert probe_rows and all(r["status"] == "pass" for r in probe_rows), probe_rows
        assert [r for r in probe_rows if stack.wan.addr in r["check"]], \
            "the internet row probed the WAN host: %s" % probe_rows

        # Breakage 1: both forward jumps disappear (a firewalld reload, a careless flush).
        jump = [ln for tool, _table, ln in stack.fw_lines
                if tool == "iptables-save" and ln.startswith("-A DOCKER-USER ")]
        assert len(jump) == 1, stack.fw_lines
        sh(["iptables", "-w", "10", "-D"] + jump[0][3:].split())
        # ... and the first anchor's jump too: either anchor alone still blocks (issue 10)
        sh(["iptables", "-w", "10", "-t", "mangle", "-D", "PREROUTING", "-i", e2e.BRIDGE, "-j",
            "CLAW-CAGE-PRE"])
        try:
            broken = stack.verify("--json")
            failed = [r["check"] for r in _failed(_rows(broken))]
            assert broken.returncode == 7, _decoded(broken)
            # the rule rows, and the packets: 10.0.0.1 now gets an answer (the guard's reset)
            assert {"DOCKER-USER jump", "PREROUTING jump"} <= set(failed), failed
            assert [c for c in failed if c.startswith("probe 10.0.0.1:")], failed
        finally:
            stack.firewall_on(persist=True)
        assert stack.verify().returncode == 0, "firewall re-applied: --verify passes again"

        # Breakage 2: .env readable by others.
        env_path = os.path.join(stack.dir, ".env")
        os.chmod(env_path, 0o644)
        try:
            broken = stack.verify("--json")
            assert broken.returncode == 7, _decoded(broken)
            assert [r["check"] for r in _failed(_rows(broken))] == [".env"], _rows(broken)
        finally:
            os.chmod(env_path, 0o600)

        # Breakage 3: no firewall at all. The probes to the host itself (INPUT, which the
        # egress guard does not cover) must now see it answer.
        stack.firewall_off()
        try:
            broken = stack.verify("--json")
            failed = [r["check"] for r in _failed(_rows(broken))]
            assert broken.returncode == 7, _decoded(broken)
            assert any(r.startswith("probe ") for r in failed), failed
        finally:
            stack.firewall_on(persist=True)
        assert stack.verify().returncode == 0
    finally:
        # back to the setup's state: no persistence, rules on
        stack.firewall_off()
        stack.firewall_on()
    assert stack.etc_files() == [], "--remove removes the persistence: %s" % stack.etc_files()


def test_ac6_data_survives_down_reinstall_up(stack):
    stack.ensure_up()
    marker = uuid.uuid4().hex
    # state (claw-data) and auth-profile secrets (claw-secrets), written by the gateway's uid
    paths = ["/home/node/.openclaw/e2e-ac6-marker", "/home/node/.config/openclaw/e2e-ac6-marker"]
    for path in paths:
        stack.compose("exec", "-T", "openclaw", "sh", "-c", "echo %s > %s" % (marker, path))
    old_container = stack.container_id()
    env_path = os.path.join(stack.dir, ".env")
    with open(env_path, "rb") as f:
        env_before = f.read()
    stack.compose("down", "--timeout", "5")
    assert stack.container_id() is None
    vols = sh(["docker", "volume", "ls", "-q", "--filter",
               "label=com.docker.compose.project=" + e2e.PROJECT]).stdout.split()
    assert "claw-cage_claw-data" in vols, vols
    res = stack.install()                     # the upgrade path: the one-liner again
    assert res.returncode == 0, _decoded(res)
    with open(env_path, "rb") as f:
        assert f.read() == env_before, ".env must survive a re-install byte for byte"
    assert stat.S_IMODE(os.stat(env_path).st_mode) == 0o600
    stack.up()
    assert stack.container_id() != old_container, "a new container, not the old one restarted"
    for path in paths:
        got = stack.compose("exec", "-T", "openclaw", "cat", path).stdout.strip()
        assert got == marker, path
    assert e2e.http_status("http://127.0.0.1:%d/healthz" % GATEWAY_PORT) == 200
    assert stack.matrix()["LAN host tcp"] is False, "the cage holds across down/up"


def test_firewall_remove_keeps_docker_chains_and_stack(stack):
    stack.ensure_up()
    before = e2e.snapshot_rules()
    stack.firewall_off()
    try:
        after = e2e.snapshot_rules()
        for tool in ("iptables-save", "ip6tables-save"):
            own = set(ln for t, _, ln in stack.fw_lines if t == tool and
                      not LEFT_BY_DESIGN.match(ln))
            expected = [ln for ln in before.get(tool, []) if ln not in own]
            assert after.get(tool) == expected, "%s after --remove:\n%s" % (
                tool, e2e.diff_rules({tool: expected}, {tool: after.get(tool, [])}))
        v4 = after["iptables-save"]
        assert "-A FORWARD -j DOCKER-USER" in v4
        assert any(ln.startswith("-A DOCKER ") for ln in v4), "Docker's DOCKER chain rules"
        assert not [ln for ln in v4 if "CLAW-CAGE" in ln]
        assert stack.container_id(), "the stack keeps running"
        assert e2e.http_status("http://127.0.0.1:%d/healthz" % GATEWAY_PORT) == 200
        assert stack.reach("http", "http://%s:%d/" % (stack.wan.addr, stack.wan.port))
        state = stack.inspect()["State"]
        assert state["Running"] and state.get("Health", {}).get("Status") == "healthy", state
    finally:
        stack.firewall_on()


# ---- issue 16: the real image's write paths, the CLI, the token -------------------------------

LOG_FILL_MB = 200      # more than the log tmpfs holds (CLAW_LOG_SIZE, 64m by default)


def _env_token(stack):
    m = re.search(r"^OPENCLAW_GATEWAY_TOKEN=(\S+)$", e2e.read_env(os.path.join(stack.dir, ".env")),
                  re.M)
    assert m, ".env has no gateway token"
    return m.group(1)


def _cli(stack, *args, service="openclaw-cli", override=None, run_opts=(), timeout=120):
    """`docker compose run --rm -T SERVICE ARGS` in the install dir, as OpenClaw's docs print it
    (-T: no terminal here). `override`: an extra compose file layered on the shipped one."""
    files = ["-f", "docker-compose.yml"] + (["-f", override] if override else [])
    return stack.compose(*(files + ["--profile", "cli", "run", "--rm", "-T"] + list(run_opts)
                           + [service] + list(args)), check=False, timeout=timeout)


def _exec(cid, script, check=False, timeout=60):
    return sh(["docker", "exec", cid, "sh", "-c", script], check=check, timeout=timeout)


def _tmp_free_kb(cid, path):
    out = _exec(cid, "df -k %s | tail -n 1" % path, check=True).stdout.split()
    return int(out[3])


def test_gateway_writes_every_path_under_the_read_only_root(stack):
    """The running gateway (stand-in) as uid 1000 on the read-only root: its start-up dirs are
    there, every declared path is writable, the token in force is the one in .env, and its
    logs fill their own tmpfs, never /tmp."""
    stack.ensure_up()
    info = stack.inspect()
    cid = info["Id"]
    assert info["HostConfig"]["ReadonlyRootfs"] is True
    env = dict(v.split("=", 1) for v in info["Config"]["Env"])
    assert (env.get("HOME"), env.get("OPENCLAW_STATE_DIR"), env.get("OPENCLAW_CONFIG_PATH"),
            env.get("NODE_DISABLE_COMPILE_CACHE")) == (
        "/home/node", "/home/node/.openclaw", "/home/node/.openclaw/openclaw.routes.json",
        "1")   # the routes file includes openclaw.json (issue 29)
    # what the gateway made at start, owner-only
    made = _exec(cid, "stat -c '%n %u %a' /tmp/openclaw-1000 /home/node/.cache/openclaw-1000 "
                      "/tmp/openclaw", check=True).stdout.split("\n")
    assert [ln.split()[1:] for ln in made if ln] == [["1000", "700"]] * 3, made
    assert _exec(cid, "ls /tmp/openclaw/openclaw-*.log").returncode == 0, "no daily log file"
    # every path writable for uid 1000; the root itself is not
    paths = list(WRITE_TMPFS) + list(WRITE_VOLUMES)
    res = _exec(cid, "id -u; for p in %s; do touch $p/.e2e-w && rm $p/.e2e-w || echo FAIL $p; "
                     "done; touch /app/.e2e-w 2>/dev/null && echo ROOT-WRITABLE" % " ".join(paths))
    assert res.stdout.split() == ["1000"], res.stdout + res.stderr
    # the token in force is .env's (compared here, never printed)
    in_force = _exec(cid, "cat /tmp/openclaw-1000/standin-gateway-token", check=True).stdout
    assert in_force == _env_token(stack), "the gateway runs with another token than .env's"
    # logs cannot fill /tmp: a log file grown past the log tmpfs stops there
    tmp_before = _tmp_free_kb(cid, "/tmp")
    fill = _exec(cid, "dd if=/dev/zero of=/tmp/openclaw/e2e-fill.log bs=1M count=%d"
                      % LOG_FILL_MB, timeout=120)
    try:
        assert fill.returncode != 0 and "No space left" in fill.stderr, fill.stderr
        assert _tmp_free_kb(cid, "/tmp/openclaw") < 1024
        assert _tmp_free_kb(cid, "/tmp") >= tmp_before - 1024, "logs ate /tmp"
    finally:
        _exec(cid, "rm -f /tmp/openclaw/e2e-fill.log", check=True)
    assert stack.inspect()["State"]["Running"]


def test_cli_commands_reach_the_running_gateway(stack):
    """`docker compose run --rm openclaw-cli devices list` (the stand-in's CLI dials
    127.0.0.1:18789 with the .env token) reaches the gateway; so do the other commands
    OpenClaw's Docker docs print. Controls: the same service on a network of its own gets
    ECONNREFUSED (upstream #5559); a wrong token is turned away."""
    stack.ensure_up()
    gateway = stack.container_id()
    rows = []
    for args, expect in ((["devices", "list"], "Paired"), (["gateway", "probe"], "reachable"),
                         (["pairing", "approve", "E2E123"], "Approved E2E123"),
                         (["dashboard", "--no-open"], "127.0.0.1:18789")):
        res = _cli(stack, *args)
        rows.append((" ".join(args), res.returncode, (res.stdout + res.stderr).strip()[-200:]))
        assert res.returncode == 0 and expect in res.stdout, rows[-1]
    # plugin install through the CLI: npm's cache on claw-npm, the plugin in the state volume
    res = _cli(stack, "plugins", "install", "claw-e2e-plugin")
    assert res.returncode == 0, res.stdout + res.stderr
    seen = _exec(gateway, "ls /home/node/.openclaw/extensions/claw-e2e-plugin/package.json "
                          "/home/node/.npm/_cacache/tmp")
    assert seen.returncode == 0, seen.stderr
    assert stack.container_id() == gateway, "the CLI run must not recreate the gateway"
    # control 1: the CLI in a network namespace of its own (claw-net, like the gateway's peers)
    override = os.path.join(stack.dir, "e2e-cli-own-network.yml")
    with open(override, "w") as f:
        f.write("services:\n  openclaw-cli:\n    network_mode: !reset null\n"
                "    networks:\n      - claw-net\n")
    try:
        alone = _cli(stack, "devices", "list", override=override, run_opts=["--no-deps"])
    finally:
        os.unlink(override)
    assert alone.returncode == 1, alone.stdout + alone.stderr
    assert "ECONNREFUSED 127.0.0.1:18789" in alone.stderr, alone.stderr
    # control 2: the gateway checks the token (a CLI with another one is refused)
    wrong = _cli(stack, "devices", "list", run_opts=["-e", "OPENCLAW_GATEWAY_TOKEN=e2e-wrong"])
    assert wrong.returncode == 1 and "unauthorized" in wrong.stderr, wrong.stderr
    assert stack.container_id() == gateway


def test_cli_lan_probe_is_blocked_like_the_gateways(stack):
    """The CLI shares the gateway's network namespace, so the cage holds for it the same way:
    a LAN host is unreachable from both, and reachable from both without the rules (control)."""
    stack.ensure_up()

    def from_cli():
        res = _cli(stack, "-e", stack.probe_js, "tcp", stack.lan.addr, str(stack.lan.port),
                   str(PROBE_MS), run_opts=["--entrypoint", "node"])
        assert res.returncode in (0, 1) and "Error response" not in res.stderr, res.stderr
        return res.returncode == 0

    def both():
        return {"gateway": stack.reach("tcp", stack.lan.addr, stack.lan.port),
                "cli": from_cli()}

    caged = both()
    stack.firewall_off()
    try:
        open_ = both()
    finally:
        stack.firewall_on()
    again = both()
    assert open_ == {"gateway": True, "cli": True}, "control: without rules both reach it"
    assert caged == again == {"gateway": False, "cli": False}, (caged, again)


def test_repair_service_runs_while_the_gateway_is_stopped(stack):
    """openclaw-repair (network_mode: none) works with the gateway down and does not start it;
    it has no network, so a gateway command fails there (the CLI service is for those)."""
    stack.ensure_up()
    stack.compose("stop", "--timeout", "5", "openclaw")
    try:
        assert stack.container_id() is None
        fix = _cli(stack, "doctor", "--fix", service="openclaw-repair")
        assert fix.returncode == 0 and "repaired" in fix.stdout, fix.stdout + fix.stderr
        offline = _cli(stack, "devices", "list", service="openclaw-repair")
        assert offline.returncode == 1 and "ECONNREFUSED" in offline.stderr, offline.stderr
        assert stack.container_id() is None, "the repair service started the gateway"
    finally:
        stack.up()
    # what doctor --fix wrote is on the state volume the gateway runs on
    assert stack.compose("exec", "-T", "openclaw", "ls",
                         "/home/node/.openclaw/.doctor-fix-ran", check=False).returncode == 0


def test_blank_or_missing_token_compose_refuses_and_nothing_exists(stack, tmp_path):
    """`docker compose up -d` with the installed files but a blank (or missing) token stops
    before anything is created: no container, volume or network of the project exists."""
    project = "claw-e2e-token-" + uuid.uuid4().hex[:8]
    label = "label=com.docker.compose.project=" + project
    env_text = e2e.read_env(os.path.join(stack.dir, ".env"))
    for case, text in (("blank", re.sub(r"^OPENCLAW_GATEWAY_TOKEN=.*$", "OPENCLAW_GATEWAY_TOKEN=",
                                        env_text, flags=re.M)),
                       ("missing", re.sub(r"^OPENCLAW_GATEWAY_TOKEN=.*\n", "", env_text,
                                          flags=re.M))):
        d = tmp_path / case
        d.mkdir()
        shutil.copy2(os.path.join(stack.dir, "docker-compose.yml"), str(d))
        (d / ".env").write_text(text)
        res = sh(["docker", "compose", "-p", project, "up", "-d", "--pull", "never"],
                 cwd=str(d), check=False, timeout=120)
        try:
            assert res.returncode != 0, "%s token: compose started it" % case
            assert "OPENCLAW_GATEWAY_TOKEN" in res.stderr and "openssl rand -hex 32" in \
                res.stderr, res.stderr
            left = [sh(["docker"] + kind + ["-q", "--filter", label]).stdout.split()
                    for kind in (["ps", "-a"], ["volume", "ls"], ["network", "ls"])]
            assert left == [[], [], []], "%s token: objects exist: %r" % (case, left)
        finally:
            sh(["docker", "compose", "-p", project, "down", "-v"], cwd=str(d), check=False,
               env=dict(os.environ, OPENCLAW_GATEWAY_TOKEN="x"), timeout=120)
    # the same files with the token: Compose accepts them (the refusal is the token's alone)
    ok = sh(["docker", "compose", "-p", project, "config", "-q"], cwd=stack.dir, check=False)
    assert ok.returncode == 0, ok.stderr


def _standin_run(stack, cleanup, drop=None, token="from .env"):
    """The gateway as the compose file runs it (user, read-only root, capabilities, command,
    environment, every tmpfs as resolved by `docker compose config`), without a network, each
    volume stood in for by a fresh uid-1000 tmpfs, `drop` left out. Returns the container id."""
    cfg = json.loads(stack.compose("config", "--format", "json").stdout)["services"]["openclaw"]
    volumes = [v for v in cfg["volumes"] if v["type"] == "volume"]
    binds = [v for v in cfg["volumes"] if v["type"] == "bind"]   # the read-only openclaw.json
    mounts = [t for t in cfg["tmpfs"]] + ["%s:uid=1000,gid=1000,mode=0700" % v["target"]
                                          for v in volumes]
    mounts = [m for m in mounts if m.split(":", 1)[0] != drop]
    assert drop is None or len(mounts) == len(cfg["tmpfs"]) + len(volumes) - 1, drop
    env = {k: cfg["environment"][k] for k in ("HOME", "OPENCLAW_STATE_DIR",
                                              "OPENCLAW_CONFIG_PATH", "NODE_DISABLE_COMPILE_CACHE",
                                              "OPENCLAW_GATEWAY_TOKEN")}
    if token != "from .env":
        env["OPENCLAW_GATEWAY_TOKEN"] = token
    name = "claw-e2e-paths-" + uuid.uuid4().hex[:8]
    argv = ["docker", "run", "-d", "--name", name, "--network", "none", "--read-only",
            "--user", cfg["user"], "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
            "--init", "--entrypoint", cfg["command"][0]]
    for m in mounts:
        argv += ["--tmpfs", m]
    for v in binds:
        argv += ["-v", "%s:%s:ro" % (v["source"], v["target"])]
    for k, v in env.items():
        argv += ["-e", "%s=%s" % (k, v)]
    cid = sh(argv + [stack.image] + cfg["command"][1:]).stdout.strip()
    cleanup.push("remove " + name, sh, ["docker", "rm", "-f", cid])
    return cid


def _started(cid, within=15):
    """'runs' once /healthz answers inside, 'fails' once the container has exited."""
    def state():
        st = e2e.docker_json(["inspect", cid])[0]["State"]
        if not st["Running"]:
            return "fails"
        res = sh(["docker", "exec", cid, "node", "-e", "", "http",
                  "http://127.0.0.1:18789/healthz", "1000"], check=False)
        return "runs" if res.returncode == 0 else None
    got = e2e.wait_for(state, within, interval=0.5)
    assert got, "neither up nor exited within %ds" % within
    return got


def test_each_write_path_taken_away_fails_where_the_real_image_fails(stack):
    """Controls for the write paths, one at a time on the stand-in: without /tmp
    (/tmp/openclaw-1000), ~/.cache (openclaw-1000) or the state dir the gateway does not start;
    without the log tmpfs it starts but its logs fill /tmp; without ~/.npm a plugin install
    fails; without ~/.local or ~/.config uid 1000 cannot write there."""
    cleanup = e2e.Cleanup()
    rows = []
    try:
        cases = [None] + list(WRITE_TMPFS) + list(WRITE_VOLUMES)
        for drop in cases:
            cid = _standin_run(stack, cleanup, drop)
            started = _started(cid)
            row = {"without": drop or "(nothing)", "gateway": started}
            if started == "runs":
                plugin = _exec(cid, "node dist/index.js plugins install claw-e2e-p")
                row["plugin install"] = "ok" if plugin.returncode == 0 else "fails"
                for p in ("/home/node/.local", "/home/node/.config"):
                    row["write " + p] = "ok" if _exec(cid, "touch %s/x" % p).returncode == 0 \
                        else "fails"
                before = _tmp_free_kb(cid, "/tmp")
                _exec(cid, "dd if=/dev/zero of=/tmp/openclaw/fill.log bs=1M count=%d"
                           % LOG_FILL_MB, timeout=120)
                row["logs take from /tmp"] = before - _tmp_free_kb(cid, "/tmp") > 8 * 1024
            else:
                row["why"] = sh(["docker", "logs", cid], check=False).stderr.strip()[-120:]
            rows.append(row)
            sh(["docker", "rm", "-f", cid])
    finally:
        errors = cleanup.run()
    e2e.write_output("e2e-write-paths.txt", "\n".join(json.dumps(r) for r in rows) + "\n")
    assert not [e for e in errors if "No such container" not in e], errors
    got = {r["without"]: r for r in rows}
    table = "\n".join(json.dumps(r) for r in rows)
    assert got["(nothing)"]["gateway"] == "runs", table
    assert got["(nothing)"]["plugin install"] == "ok", table
    assert not got["(nothing)"]["logs take from /tmp"], table
    for must in ("/tmp", "/home/node/.cache", "/home/node/.openclaw"):
        assert got[must]["gateway"] == "fails", table
    assert got["/tmp/openclaw"]["gateway"] == "runs", table
    assert got["/tmp/openclaw"]["logs take from /tmp"], table
    assert got["/home/node/.npm"]["plugin install"] == "fails", table
    assert got["/home/node/.local"]["write /home/node/.local"] == "fails", table
    assert got["/home/node/.config"]["write /home/node/.config"] == "fails", table
    for drop, row in got.items():
        if drop not in ("/tmp", "/home/node/.cache", "/home/node/.openclaw"):
            assert row["gateway"] == "runs", table


def test_standin_without_token_runs_with_an_ephemeral_one(stack):
    """Why compose must refuse: the gateway (as the real one, startup-auth.ts) starts without
    a token, with a random one nobody holds, so a client with the blank .env value is refused."""
    cleanup = e2e.Cleanup()
    try:
        cid = _standin_run(stack, cleanup, token="")
        assert _started(cid) == "runs"
        assert "ephemeral" in sh(["docker", "logs", cid]).stdout
        in_force = _exec(cid, "cat /tmp/openclaw-1000/standin-gateway-token", check=True).stdout
        assert re.match(r"^[0-9a-f]{48}$", in_force), "24 random bytes, hex"
        blank = _exec(cid, "OPENCLAW_GATEWAY_TOKEN= node dist/index.js devices list")
        assert blank.returncode == 1 and "unauthorized" in blank.stderr, blank.stderr
        held = _exec(cid, "OPENCLAW_GATEWAY_TOKEN=$(cat /tmp/openclaw-1000/standin-gateway-token)"
                          " node dist/index.js devices list")
        assert held.returncode == 0, held.stderr
    finally:
        errors = cleanup.run()
    assert not errors, errors
