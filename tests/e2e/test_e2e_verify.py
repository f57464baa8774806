"""Issue 11 on the real Docker engine: --verify looks, or says it could not; names resolve in the
cage without the LAN.

Reuses the deployment of tests/e2e/test_e2e_docker.py (the `stack` fixture of tests/lab/stack.py:
installed files, the stand-in image, a LAN and a WAN namespace with HTTP and DNS servers, the
egress guard, the default --firewall with no --allow, the stack up). Claims:
  - a stand-in made slow to start (every `node` start sleeps CLAW_STANDIN_START_DELAY, longer
    than the old 4 s cap on the whole probe command) still gets every probe judged;
  - a stopped gateway gives exit 9 and a last line saying what was not verified;
  - with CLAW_DNS at a resolver standing for the internet (in the WAN namespace), a name
    resolves inside the caged gateway and --verify's DNS rows pass; with CLAW_DNS at the LAN
    router's resolver, --firewall warns, and the cage leaves that resolver unreachable.
Every packet goes to namespaces the fixture created (or ends at its egress guard); the host
resolves the test's name from a hosts file in the program's private /etc, never from DNS.
Run it under the lock: flock /work/docker.lock bash tests/run tests/e2e/test_e2e_verify.py
"""

import json
import os
import time

from lab import e2e_support as e2e
from conftest import PYTHON
from lab.e2e_support import sh
from lab.stack import stack, standin  # noqa: F401  (fixtures: the deployment under test)

NAME = "api.claw-e2e.example"
SLOW = 4.5          # seconds each start of the slow stand-in's node sleeps
OLD_CAP = 4.0       # the probe command's whole budget before issue 11


def _out(res):
    return res.stdout.decode() + res.stderr.decode()


def _rows(res):
    return json.loads(res.stdout.decode())


def _env_path(st):
    return os.path.join(st.dir, ".env")


class EnvEdit:
    """Lines appended to the deployment's .env, then the file restored byte for byte."""

    def __init__(self, st, **values):
        self.path = _env_path(st)
        with open(self.path, "rb") as f:
            self.saved = f.read()
        with open(self.path, "ab") as f:
            f.write(b"\n" + "".join("%s=%s\n" % kv for kv in values.items()).encode())

    def restore(self):
        with open(self.path, "r+b") as f:
            f.write(self.saved)
            f.truncate()


def _up_running(st, timeout=90):
    """`docker compose up -d` (recreates the gateway when .env changed) and wait until the
    gateway container runs (not for health: --verify needs a running container only)."""
    st.compose("up", "-d", "--pull", "never")
    ok = e2e.wait_for(lambda: st.container_id() and
                      st.inspect()["State"]["Status"] == "running", timeout, interval=0.5)
    assert ok, "the gateway did not start:\n%s" % st.compose("logs", "--tail", "20",
                                                             check=False).stdout


def _hosts_entry(st, address):
    """NAME -> address for the program's host-side lookups only: a hosts file in its private
    /etc overlay (Stack.program), so the host never asks a real resolver."""
    path = os.path.join(st.etc, "upper", "hosts")
    with open("/etc/hosts") as f:
        text = f.read()
    with open(path, "w") as f:
        f.write(text.rstrip("\n") + "\n%s %s\n" % (address, NAME))
    return path


def _resolves_in_gateway(st):
    cid = st.container_id()
    res = sh(["docker", "exec", cid, "node", "-e", st.probe_js, "dns", NAME, "2500"],
             check=False, timeout=30)
    assert res.returncode in (0, 1), res.stderr
    return res.returncode == 0


def _dns_answers_from_host(addr):
    """The control: the resolver itself answers (a UDP query from the host to the namespace)."""
    code = ("import socket,struct,sys\n"
            "q=struct.pack('>HHHHHH',7,0x100,1,0,0,0)+b''.join(bytes([len(p)])+p.encode() "
            "for p in %r.split('.'))+b'\\0\\0\\1\\0\\1'\n"
            "s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM);s.settimeout(2)\n"
            "s.sendto(q,(%r,53))\n"
            "try: s.recvfrom(512)\nexcept OSError: sys.exit(1)\n" % (NAME, addr))
    return sh([PYTHON, "-c", code], check=False, timeout=10).returncode == 0


def test_slow_standin_still_gets_every_probe_judged(stack):  # noqa: F811
    stack.ensure_up()
    slow_tag = "claw-cage-e2e-slow:%d" % os.getpid()
    sh(["docker", "build", "-q", "-t", slow_tag, "-"], timeout=120,
       input="FROM %s\nENV CLAW_STANDIN_START_DELAY=%s\n" % (stack.image, SLOW),
       env=dict(os.environ, DOCKER_BUILDKIT="0"))
    edit = EnvEdit(stack, OPENCLAW_IMAGE=slow_tag)
    try:
        _up_running(stack)
        assert stack.inspect()["Config"]["Image"] == slow_tag
        started = time.monotonic()
        res = stack.verify("--json")
        took = time.monotonic() - started
        rows = _rows(res)
        probes = [r for r in rows if r["check"].startswith("probe ")]
        assert probes, rows
        skipped = [r for r in probes if r["status"] == "skip"]
        assert not skipped, "probes not judged on a slow start: %s" % skipped
        assert all(r["status"] == "pass" for r in probes), probes
        # the first firewall row: the real gateway sits on the caged bridge only
        assert rows[0]["check"] == "gateway network" and rows[0]["status"] == "pass", rows[0]
        # it really was slow: more than the old cap on the whole probe command
        assert took > OLD_CAP, took
        assert "\n" not in "".join(r["detail"] for r in rows)
    finally:
        edit.restore()
        stack.up()
        e2e.untag(slow_tag)


def test_stopped_gateway_is_incomplete_not_ok(stack):  # noqa: F811
    stack.ensure_up()
    # With persistence (in the test's private /etc) nothing fails: the gap alone decides.
    stack.firewall_on(persist=True)
    stack.compose("stop", "openclaw")
    try:
        res = stack.verify()
        last = _out(res).strip().splitlines()[-1]
        assert res.returncode == 9, _out(res)
        assert "NOT verified" in last and "gateway container" in last, last
        js = stack.verify("--json")
        assert js.returncode == 9
        needed = [r for r in _rows(js) if r["check"] in ("container", "probes")]
        assert [r["status"] for r in needed] == ["skip", "skip"], needed
        # Without persistence a row fails (exit 7), and the last line still names the gap.
        stack.firewall_off()
        stack.firewall_on()
        res = stack.verify()
        last = _out(res).strip().splitlines()[-1]
        assert res.returncode == 7 and "persistence" in last, _out(res)
        assert "also NOT verified: the gateway container" in last, last
    finally:
        stack.up()
        stack.firewall_off()
        stack.firewall_on()     # the fixture's state: rules on, no persistence
    again = stack.verify()
    assert "NOT verified" not in _out(again), _out(again)
    assert stack.etc_files() == [], stack.etc_files()


def test_names_resolve_from_the_internet_not_the_lan(stack):  # noqa: F811
    """After --firewall with no --allow (the fixture's), CLAW_DNS at a resolver in the WAN
    namespace: names resolve inside the container, --verify's DNS rows pass. CLAW_DNS at the
    LAN router's resolver: --firewall warns, and that resolver stays out of reach."""
    stack.ensure_up()
    cleanup = e2e.Cleanup()
    try:
        stack.wan.serve_dns(cleanup, stack.wan.addr, PYTHON)
        hosts = _hosts_entry(stack, stack.wan.addr)
        cleanup.push("remove " + hosts, os.unlink, hosts)
        assert _dns_answers_from_host(stack.wan.addr) and _dns_answers_from_host(stack.lan.addr)

        # 1. a resolver standing for the internet
        edit = EnvEdit(stack, CLAW_DNS=stack.wan.addr, CLAW_DNS_2=stack.wan.addr)
        cleanup.push("restore .env and the stack", lambda: (edit.restore(), stack.up()))
        _up_running(stack)
        assert stack.inspect()["HostConfig"]["Dns"] == [stack.wan.addr]
        fw = stack.firewall_on()
        assert "CLAW_DNS" not in _out(fw), _out(fw)          # a public resolver: no warning
        assert _resolves_in_gateway(stack), "a name must resolve in the caged container"
        res = stack.program("--verify", "--json", "--dir", stack.dir, timeout=60,
                            env={"CLAW_CAGE_INTERNET_PROBE": "%s:%d" % (NAME, stack.wan.port)})
        rows = dict((r["check"], r) for r in _rows(res))
        assert rows["container DNS"]["status"] == "pass", rows["container DNS"]
        assert stack.wan.addr in rows["container DNS"]["detail"]
        assert rows["probe DNS %s" % NAME]["status"] == "pass", rows
        assert rows["probe internet %s:%d" % (NAME, stack.wan.port)]["status"] == "pass"
        edit.restore()

        # 2. the LAN router's resolver (the fixture's LAN namespace serves DNS too)
        edit = EnvEdit(stack, CLAW_DNS=stack.lan.addr, CLAW_DNS_2=stack.lan.addr)
        _up_running(stack)
        fw = stack.firewall_on()
        assert "CLAW_DNS in .env points at %s" % stack.lan.addr in _out(fw), _out(fw)
        assert "--allow %s:53" % stack.lan.addr in _out(fw)
        assert not _resolves_in_gateway(stack), "the LAN resolver must be out of reach"
        assert _dns_answers_from_host(stack.lan.addr), "the control: it does answer"
        res = stack.program("--verify", "--json", "--dir", stack.dir, timeout=60,
                            env={"CLAW_CAGE_INTERNET_PROBE": "%s:%d" % (NAME, stack.wan.port)})
        rows = dict((r["check"], r) for r in _rows(res))
        assert rows["container DNS"]["status"] == "warn", rows["container DNS"]
        assert rows["probe DNS %s" % NAME]["status"] == "fail", rows["probe DNS %s" % NAME]
        assert res.returncode == 7
    finally:
        errors = cleanup.run()
        assert not errors, errors
    assert stack.inspect()["HostConfig"]["Dns"] == ["1.1.1.1", "9.9.9.9"]
