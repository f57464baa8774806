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

import os
import re
import shutil

import pytest

from lab import netlab
from lab.systemd import Booted, require_nspawn, wait_for
from support import install_dir

SERVICE = "claw-cage-proxy.service"
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
    d = install_dir(home, env_text="", channels=())
    proc = box.run(["python3", program, "--firewall", "--profile", "api-only", "--allow-domain",
                    "allowed.test", "--no-persist", "--dir", d], check=False)
    assert proc.returncode == 0, (proc.stdout, proc.stderr)
    assert "%s started" % SERVICE in proc.stdout
    assert box.run(["systemctl", "is-enabled", SERVICE]).stdout.strip() == "enabled"
    assert wait_for(lambda: box.run(["systemctl", "is-active", SERVICE], check=False)
                    .stdout.strip() == "active", 10)

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
    pid = box.main_pid(SERVICE)   # read once it serves: before its exec a child is still root
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
    assert not answer().stdout.startswith("HTTP/1.1")
    assert not any("CLAW-CAGE" in line for line in lab.save(4).splitlines())
