"""The egress proxy's service under a real systemd: `--firewall --profile api-only`, run as a
user runs it, on a host whose PID 1 is systemd, then `--firewall --remove`.

This machine's PID 1 is not systemd, so the test boots one: systemd-nspawn --volatile=yes
boots this machine's own /usr with a throwaway root (every write lands in tmpfs; /usr/local
through an overlay whose upper folder is the test's). The container joins the namespace lab's
host namespace (a bridge and Docker's chains, nothing of the real host's network), and
Docker's own units are masked in it: nothing but the lab is touched.

What it proves, that `systemd-analyze verify` cannot: the unit starts as written (DynamicUser,
ProtectSystem=strict, RuntimeDirectory, ExecStartPre as root), the proxy serves the container's
uid 1000 through its socket, runs as a throwaway uid without privileges, is started again after
kill -9 (Restart=on-failure), and --remove stops and disables it.
"""

import contextlib
import os
import re
import shutil
import subprocess
import time
import uuid

import pytest

from conftest import refuse, require_root
from lab import netlab
from support import install_dir

NSPAWN = shutil.which("systemd-nspawn")
SYSTEMD = "/lib/systemd/systemd"
MASKED = ("docker.service", "docker.socket", "containerd.service", "nftables.service")
SERVICE = "claw-cage-proxy.service"
KEY = "sk-ant-nspawn-planted-31337"
ROUTE_CLIENT = r"""
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.settimeout(30)
s.connect(sys.argv[1])
s.sendall(b"GET /anthropic/v1/models HTTP/1.1\r\nHost: x\r\nx-api-key: claw-cage-placeholder\r\n\r\n")
print(s.recv(64).split(b"\r\n")[0].decode())
"""
CLIENT = r"""
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.settimeout(5)
s.connect(sys.argv[1])
s.sendall(b"CONNECT off-list.test:443 HTTP/1.1\r\nHost: off-list.test\r\n\r\n")
print(s.recv(64).split(b"\r\n")[0].decode())
"""


class Booted:
    """A systemd booted in a container; run() executes a command inside it."""

    def __init__(self, tmp, netns, binds):
        self.log = os.path.join(tmp, "nspawn.log")
        upper = os.path.join(tmp, "usr-local")
        os.makedirs(upper)
        argv = [NSPAWN, "--volatile=yes", "-D", "/", "-M", "cc" + uuid.uuid4().hex[:8],
                "--register=no", "--keep-unit", "--network-namespace-path=/run/netns/" + netns,
                "--overlay=/usr/local:%s:/usr/local" % upper, "-b", "--console=pipe", "-q"]
        argv += ["--bind=%s" % b for b in binds]
        argv += ["systemd.mask=" + u for u in MASKED]
        with open(self.log, "w") as log:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=log, start_new_session=True)
        self.leader = self._find_leader()
        state = ""
        for i in range(120):   # at most 60 s; "starting" for 15 s: some unit of this
            # machine's own is slow to settle, but systemd answers and runs jobs
            state = self.run(["systemctl", "is-system-running"], check=False).stdout.strip()
            if state in ("running", "degraded") or (state == "starting" and i >= 30):
                break
            time.sleep(0.5)
        assert state in ("running", "degraded", "starting"), \
            "the container did not boot: %s\n%s" % (state, self.log_text())

    def log_text(self):
        with open(self.log) as f:
            return f.read()[-3000:]

    def _find_leader(self):
        """The container's PID 1 (systemd), as the host sees it: nspawn's child."""
        for _ in range(100):
            with contextlib.suppress(OSError):
                with open("/proc/%d/task/%d/children" % (self.proc.pid, self.proc.pid)) as f:
                    for pid in f.read().split():
                        with open("/proc/%s/comm" % pid) as c:
                            if c.read().strip() == "systemd":
                                return pid
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        raise AssertionError("systemd-nspawn did not start systemd:\n" + self.log_text())

    def run(self, argv, check=True, timeout=120):
        proc = subprocess.run(["nsenter", "-t", self.leader, "-a"] + list(argv),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              universal_newlines=True, timeout=timeout)
        if check:
            netlab.ok(proc)
        return proc

    def status(self, pid):
        """Fields of /proc/PID/status inside the container."""
        text = self.run(["cat", "/proc/%s/status" % pid]).stdout
        return dict(line.split(":", 1) for line in text.splitlines() if ":" in line)

    def main_pid(self):
        pid = self.run(["systemctl", "show", "-p", "MainPID", "--value", SERVICE]).stdout.strip()
        return pid if pid not in ("", "0") else None

    def close(self):
        if self.proc.poll() is None:
            self.proc.terminate()   # nspawn halts the container on the first SIGTERM
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, 9)
                self.proc.wait(timeout=10)


@pytest.fixture
def booted(tmp_path):
    require_root("boots a systemd container with systemd-nspawn")
    if not NSPAWN or not os.path.exists(SYSTEMD):
        refuse("systemd-nspawn or systemd NOT INSTALLED, NOT RUN (tests/run installs "
               "systemd-container from tests/apt-packages.txt)")
    netlab.require_lab()
    home = str(tmp_path / "home")
    os.makedirs(home)
    with netlab.Lab() as lab:
        box = Booted(str(tmp_path), lab.host, [home])
        try:
            yield box, lab, home
        finally:
            box.close()


def wait_for(fn, timeout):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = fn()
        if value:
            return value
        time.sleep(0.2)
    return fn()


def test_the_service_runs_under_systemd_and_comes_back_after_kill(pyz, booted):
    box, lab, home = booted
    program = os.path.join(home, "claw-cage.pyz")
    shutil.copy(pyz, program)
    d = install_dir(home, env_text="ANTHROPIC_API_KEY=%s\n" % KEY, channels=())
    proc = box.run(["python3", program, "--firewall", "--profile", "api-only", "--allow-domain",
                    "allowed.test", "--no-persist", "--dir", d], check=False)
    assert proc.returncode == 0, (proc.stdout, proc.stderr)
    assert "%s started" % SERVICE in proc.stdout and KEY not in proc.stdout + proc.stderr
    assert box.run(["systemctl", "is-enabled", SERVICE]).stdout.strip() == "enabled"
    assert wait_for(lambda: box.run(["systemctl", "is-active", SERVICE], check=False)
                    .stdout.strip() == "active", 10), box.run(
        ["journalctl", "-u", SERVICE, "--no-pager"], check=False).stdout

    # issue 29: the key reaches the service through LoadCredential= (systemd 252 here), from
    # the root-only store; the routes socket answers (the provider is out of the lab's reach)
    assert box.run(["stat", "-c", "%u %a", "/etc/claw-cage/keys",
                    "/etc/claw-cage/keys/ANTHROPIC_API_KEY"]).stdout.split() == [
        "0", "700", "0", "600"]
    cred = "/run/credentials/%s/ANTHROPIC_API_KEY" % SERVICE
    assert box.run(["cat", cred]).stdout == KEY

    # the proxy, as the unit runs it: serving uid 1000 the way the containers reach it (the
    # folder bind-mounted; DynamicUser keeps it under /run/private, 0700, so no local user
    # gets there by the host's path), as a throwaway uid without privileges
    def answer(through_mount=True):
        sock = "/tmp/egress/proxy.sock" if through_mount else "/run/claw-cage/egress/proxy.sock"
        return box.run(["unshare", "-m", "sh", "-c", "mkdir -p /tmp/egress && mount --bind "
                        "/run/claw-cage/egress /tmp/egress && exec \"$@\"", "sh", "setpriv",
                        "--reuid=1000", "--regid=1000", "--clear-groups", "python3", "-c",
                        CLIENT, sock], check=False)
    assert wait_for(lambda: answer().stdout.startswith("HTTP/1.1 403"), 15), (box.run(
        ["journalctl", "-u", SERVICE, "--no-pager"], check=False).stdout, answer().stderr)
    assert "PermissionError" in answer(through_mount=False).stderr

    def route():
        return box.run(["python3", "-c", ROUTE_CLIENT, "/run/claw-cage/egress/routes.sock"],
                       check=False)
    assert wait_for(lambda: route().stdout.startswith("HTTP/1.1 5"), 30), route()
    assert KEY not in box.run(["journalctl", "-u", SERVICE, "--no-pager"], check=False).stdout
    pid = box.main_pid()   # read once it serves: before its exec a child is still root
    st = box.status(pid)
    uid = int(st["Uid"].split()[0])
    assert 61184 <= uid <= 65519, st["Uid"]          # systemd's DynamicUser range
    assert st["NoNewPrivs"].strip() == "1"
    assert int(st["CapEff"], 16) == 0 and int(st["CapBnd"], 16) == 0
    assert box.run(["stat", "-c", "%u %a", "/run/claw-cage/gateway"]).stdout.split() == [
        "1000", "755"]
    # ProtectSystem=strict: the service's view of / is read-only
    mounts = box.run(["cat", "/proc/%s/mountinfo" % pid]).stdout
    assert re.search(r"^\S+ \S+ \S+ \S+ / ro[,\s]", mounts, re.M), mounts[:500]

    # kill -9: Restart=on-failure starts it again, and the socket serves again
    box.run(["kill", "-9", pid])
    new = wait_for(lambda: (box.main_pid() or pid) != pid and box.main_pid(), 15)
    assert new and new != pid, box.run(["systemctl", "status", SERVICE], check=False).stdout
    assert wait_for(lambda: answer().stdout.startswith("HTTP/1.1 403"), 10)
    exposure = box.run(["systemd-analyze", "security", SERVICE, "--no-pager"],
                       check=False).stdout.strip().splitlines()
    print("systemd-analyze security:", exposure[-1] if exposure else "(nothing)")

    proc = box.run(["python3", program, "--firewall", "--remove", "--dir", d], check=False)
    assert proc.returncode == 0, (proc.stdout, proc.stderr)
    assert "egress proxy removed" in proc.stdout
    state = box.run(["systemctl", "is-active", SERVICE], check=False).stdout.strip()
    assert state in ("inactive", "unknown"), state
    assert box.run(["test", "-e", "/etc/systemd/system/" + SERVICE], check=False).returncode == 1
    assert not answer().stdout.startswith("HTTP/1.1")
    assert not any("CLAW-CAGE" in line for line in lab.save(4).splitlines())
