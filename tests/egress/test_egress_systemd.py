"""The egress proxy's service under a real systemd: `--firewall --profile api-only`, run as a
user runs it, on a host whose PID 1 is systemd, then `--firewall --remove`.

This machine's PID 1 is not systemd, so the test boots one (tests/lab/systemd.py). The
container joins the namespace lab's host namespace (a bridge and Docker's chains, nothing of the real host's network), and
Docker's own units are masked in it: nothing but the lab is touched.

What it proves, that `systemd-analyze verify` cannot: the unit starts as written (DynamicUser,
ProtectSystem=strict, RuntimeDirectory, ExecStartPre as root), the proxy serves the container's
uid 1000 through its socket, runs as a throwaway uid without privileges, is started again after
kill -9 (Restart=on-failure), and --remove stops and disables it.
"""

import json
import os
import re
import shlex
import shutil
import subprocess

import pytest

from lab import netlab
from lab.systemd import Booted, require_nspawn, wait_for
from support import install_dir

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


@pytest.fixture
def booted(tmp_path):
    require_nspawn("boots a systemd container with systemd-nspawn")
    netlab.require_lab()
    home = str(tmp_path / "home")
    os.makedirs(home)
    with netlab.Lab() as lab:
        box = Booted(str(tmp_path), lab.host, [home])
        try:
            yield box, lab, home
        finally:
            box.close()


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

    # the proxy, as the unit runs it: serving the relay's uid the way the containers reach it (the
    # folder bind-mounted; DynamicUser keeps it under /run/private, 0700, so no local user
    # gets there by the host's path), as a throwaway uid without privileges
    def answer(through_mount=True):
        sock = "/tmp/egress/proxy.sock" if through_mount else "/run/claw-cage/egress/proxy.sock"
        return box.run(["unshare", "-m", "sh", "-c", "mkdir -p /tmp/egress && mount --bind "
                        "/run/claw-cage/egress /tmp/egress && exec \"$@\"", "sh", "setpriv",
                        "--reuid=65100", "--regid=65100", "--clear-groups", "python3", "-c",
                        CLIENT, sock], check=False)
    assert wait_for(lambda: answer().stdout.startswith("HTTP/1.1 403"), 15), (box.run(
        ["journalctl", "-u", SERVICE, "--no-pager"], check=False).stdout, answer().stderr)
    assert "PermissionError" in answer(through_mount=False).stderr

    def route():
        return box.run(["python3", "-c", ROUTE_CLIENT, "/run/claw-cage/egress/routes.sock"],
                       check=False)
    assert wait_for(lambda: route().stdout.startswith("HTTP/1.1 5"), 30), route()
    assert KEY not in box.run(["journalctl", "-u", SERVICE, "--no-pager"], check=False).stdout
    pid = box.main_pid(SERVICE)   # read once it serves: before its exec a child is still root
    st = box.status(pid)
    uid = int(st["Uid"].split()[0])
    assert 61184 <= uid <= 65519, st["Uid"]          # systemd's DynamicUser range
    assert st["NoNewPrivs"].strip() == "1"
    assert int(st["CapEff"], 16) == 0 and int(st["CapBnd"], 16) == 0
    assert box.run(["stat", "-c", "%u %a", "/run/claw-cage/gateway"]).stdout.split() == [
        "65100", "755"]   # the relay's uid, which no host account has
    # ProtectSystem=strict: the service's view of / is read-only
    mounts = box.run(["cat", "/proc/%s/mountinfo" % pid]).stdout
    assert re.search(r"^\S+ \S+ \S+ \S+ / ro[,\s]", mounts, re.M), mounts[:500]

    # kill -9: Restart=on-failure starts it again, and the socket serves again
    box.run(["kill", "-9", pid])
    new = wait_for(lambda: (box.main_pid(SERVICE) or pid) != pid and box.main_pid(SERVICE), 15)
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
    for folder in ("/etc/claw-cage", "/run/claw-cage/egress", "/run/claw-cage/gateway",
                   "/run/claw-cage"):   # the folders claw-cage made, empty of anything else
        assert box.run(["test", "-e", folder], check=False).returncode == 1, folder
    assert not answer().stdout.startswith("HTTP/1.1")
    assert not any("CLAW-CAGE" in line for line in lab.save(4).splitlines())


ORIGIN = "203.0.113.10"   # a TEST-NET address on the lab host's loopback: the proxy may reach it
ORIGIN_SERVER = r"""
import socket, sys, threading
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], 443))
s.listen(16)
print("ready", flush=True)
def serve(c):
    with c:
        data = b""
        while True:   # one connection, many requests: a tunnel's life
            while b"\r\n\r\n" not in data:
                more = c.recv(4096)
                if not more:
                    return
                data += more
            head, _, data = data.partition(b"\r\n\r\n")
            path = head.split(b" ")[1]
            c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(path), path))
while True:
    threading.Thread(target=serve, args=(s.accept()[0],), daemon=True).start()
"""
# uid 1000 as the containers are: CONNECT argv[2]:443 through the bound socket folder, say the
# status; on each line of input, one GET through the same tunnel, and its answer
TUNNEL = r"""
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.settimeout(10)
s.connect(sys.argv[1])
s.sendall(b"CONNECT %s:443 HTTP/1.1\r\nHost: x\r\n\r\n" % sys.argv[2].encode())
head = b""
while b"\r\n\r\n" not in head:
    head += s.recv(1)
print(head.split(b"\r\n")[0].decode(), head[:20].decode(), flush=True)
for line in sys.stdin:
    s.sendall(b"GET /%s HTTP/1.1\r\nHost: x\r\n\r\n" % line.strip().encode())
    print(s.recv(4096).split(b"\r\n\r\n")[-1].decode(), flush=True)
"""


def as_container(argv):
    return ["unshare", "-m", "sh", "-c", "mkdir -p /tmp/egress && mount --bind "
            "/run/claw-cage/egress /tmp/egress && exec \"$@\"", "sh", "setpriv", "--reuid=1000",
            "--regid=1000", "--clear-groups"] + argv


def test_refused_then_opened_by_its_command_with_a_reload_under_systemd(pyz, booted):
    """--refused reads the unit's journal; the command it prints opens the name through
    `systemctl reload` (ExecReload): the same main PID, and a tunnel opened before carries a
    request after; a --firewall that changes only the list reloads too."""
    box, lab, home = booted
    program = os.path.join(home, "claw-cage.pyz")
    shutil.copy(pyz, program)
    d = install_dir(home, env_text="", channels=())
    box.run(["sh", "-c", "printf '%s allowed.test\\n%s off-list.test\\n%s later.test\\n' >> "
             "/etc/hosts" % (ORIGIN, ORIGIN, ORIGIN)])
    lab.sh(lab.host, "ip addr add %s/32 dev lo" % ORIGIN)
    origin = subprocess.Popen(["ip", "netns", "exec", lab.host, "python3", "-c", ORIGIN_SERVER,
                               ORIGIN], stdout=subprocess.PIPE, universal_newlines=True)
    tunnel = None
    try:
        assert origin.stdout.readline().strip() == "ready"
        proc = box.run(["python3", program, "--firewall", "--profile", "api-only",
                        "--allow-domain", "allowed.test", "--no-persist", "--dir", d], check=False)
        assert proc.returncode == 0, (proc.stdout, proc.stderr)
        sock = "/tmp/egress/proxy.sock"

        def connect(name):
            return box.run(as_container(["python3", "-c", TUNNEL, sock, name]),
                           check=False).stdout
        assert wait_for(lambda: connect("off-list.test").startswith("HTTP/1.1 403"), 15)
        pid = box.main_pid(SERVICE)
        tunnel = subprocess.Popen(["nsenter", "-t", box.leader, "-a"] + as_container(
            ["python3", "-c", TUNNEL, sock, "allowed.test"]), stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, universal_newlines=True)
        assert tunnel.stdout.readline().startswith("HTTP/1.1 200")

        def refused():
            text = box.run(["python3", program, "--refused"]).stdout
            return text if "off-list.test:443" in text else None
        out = wait_for(refused, 10)
        assert out and "journal of %s" % SERVICE in out, out
        lines = out.splitlines()
        row = next(i for i, l in enumerate(lines) if l.startswith("  off-list.test:443  "))
        assert lines[row + 1] == ("    open it for 1h: sudo python3 %s --allow-domain "
                                  "off-list.test --for 1h" % program), out
        data = json.loads(box.run(["python3", program, "--refused", "--json"]).stdout)
        assert data["refused"][0]["destination"] == "off-list.test:443"

        said = box.run(shlex.split(lines[row + 1].split(": ", 1)[1])[1:]).stdout   # no sudo
        assert "reloaded its list" in said, said
        assert wait_for(lambda: connect("off-list.test").startswith("HTTP/1.1 200"), 10)
        assert box.main_pid(SERVICE) == pid
        tunnel.stdin.write("after-the-reload\n")
        tunnel.stdin.flush()
        assert tunnel.stdout.readline().strip() == "/after-the-reload"

        # a --firewall that changes only the list: a reload, not a restart
        proc = box.run(["python3", program, "--firewall", "--profile", "api-only",
                        "--allow-domain", "allowed.test", "--allow-domain", "later.test",
                        "--no-persist", "--dir", d], check=False)
        assert proc.returncode == 0 and "%s reloaded" % SERVICE in proc.stdout, proc.stdout
        assert "  off-list.test  (--allow-domain, until " in proc.stdout   # marked temporary
        assert wait_for(lambda: connect("later.test").startswith("HTTP/1.1 200"), 10)
        assert box.main_pid(SERVICE) == pid
        tunnel.stdin.write("after-firewall\n")
        tunnel.stdin.flush()
        assert tunnel.stdout.readline().strip() == "/after-firewall"
        journal = box.run(["journalctl", "-u", SERVICE, "--no-pager", "-o", "cat"]).stdout
        assert journal.count("claw-cage proxy: reloaded") == 2, journal
    finally:
        for p in (tunnel, origin):
            if p is not None:
                p.kill()
                p.wait(timeout=10)
