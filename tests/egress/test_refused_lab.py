"""--refused, --allow-domain --for and the proxy's reload against the REAL proxy in the proxy lab
(tests/lab/proxylab.py): /etc/claw-cage/proxy.json is the real path, in a mount namespace whose
/etc is an overlay (the host's /etc is never written), where the proxy, --refused and the
command it prints all run. Packets go only to the lab's namespaces.

Proven: a refused name appears in --refused (run as nobody: no root) with its count and a
command that, run as printed, lets the same request through without a restart (same PID; a
tunnel opened before stays up and carries a request after); --refused --json parses; a config
that does not validate is refused on reload with one log line and the old list stays; a
`--for 3s` entry opens, then is refused "expired" after 3 s, also after a proxy restart."""

import contextlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time

import pytest

from conftest import PYTHON, ROOT, require_root
from lab import proxylab
from lab.proxylab import WAN, read_head, read_response

sys.path.insert(0, os.path.join(ROOT, "bootstrap"))
from claw_cage.proxy import config as proxy_config  # noqa: E402

HOSTS = [(WAN, "allowed.test"), (WAN, "refused.test"), (WAN, "brief.test"), (WAN, "other.test")]
CONFIG = "/etc/claw-cage/proxy.json"


class Box:
    """A mount namespace in the lab's proxy namespace with /etc overlaid (upper: the test's)."""

    def __init__(self, lab, pyz):
        self.lab = lab
        self.upper, work = os.path.join(lab.tmp, "etc"), os.path.join(lab.tmp, "etc-work")
        os.makedirs(os.path.join(self.upper, "claw-cage"))
        os.makedirs(work)
        shutil.copy(os.path.join(lab.etc, "hosts"), self.upper)   # what `ip netns exec` binds
        shutil.copy(os.path.join(lab.etc, "resolv.conf"), self.upper)
        self.pyz = os.path.join(lab.tmp, "claw-cage.pyz")   # where nobody may read it
        shutil.copy(pyz, self.pyz)
        os.chmod(self.pyz, 0o644)
        self.log = os.path.join(lab.tmp, "proxy.log")
        self.write(proxy_config.render(listen=["127.0.0.1:3128"], allow=["allowed.test"],
                                       log=self.log, header_timeout=5))
        self.holder = subprocess.Popen(
            ["ip", "netns", "exec", lab.p, "unshare", "-m", "sh", "-c",
             "mount --make-rprivate / && mount -t overlay overlay -o lowerdir=/etc,upperdir=%s,"
             "workdir=%s /etc && echo ready && exec sleep 900" % (self.upper, work)],
            stdout=subprocess.PIPE, universal_newlines=True)
        assert self.holder.stdout.readline().strip() == "ready"
        self.proxy = None

    def write(self, text):   # before the overlay is mounted, or as a user would: through it
        if getattr(self, "holder", None) is None:
            with open(os.path.join(self.upper, "claw-cage", "proxy.json"), "w") as f:
                f.write(text)
        else:
            self.run(["sh", "-c", "cat > " + CONFIG], input=text)

    def argv(self, argv, nobody=False):
        return (["nsenter", "-t", str(self.holder.pid), "-m", "-n"] +
                (["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"] if nobody
                 else []) + list(argv))

    def run(self, argv, nobody=False, input=None):
        proc = subprocess.run(self.argv(argv, nobody), input=input, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, universal_newlines=True, timeout=60)
        assert proc.returncode == 0, (argv, proc.stdout, proc.stderr)
        return proc.stdout

    def start_proxy(self):
        before = self.log_text().count("listening on")
        self.proxy = subprocess.Popen(self.argv([PYTHON, self.pyz, "--proxy", "--config", CONFIG]),
                                      stdout=subprocess.DEVNULL, stderr=open(self.log, "a"))
        self.wait_log("listening on", before + 1)

    def stop_proxy(self):
        self.proxy.terminate()
        self.proxy.wait(timeout=10)

    def log_text(self):
        with contextlib.suppress(OSError), open(self.log, errors="replace") as f:
            return f.read()
        return ""

    def wait_log(self, text, count):
        end = time.monotonic() + 15
        while self.log_text().count(text) < count:
            assert time.monotonic() < end and self.proxy.poll() is None, self.log_text()[-1500:]
            time.sleep(0.05)

    def connect(self, name):
        """CONNECT name:443: (status, head and body of a refusal, or the open tunnel)."""
        s = self.lab.socket_in(self.lab.p)
        s.settimeout(10)
        s.connect(("127.0.0.1", 3128))
        s.sendall(("CONNECT %s:443 HTTP/1.1\r\nHost: %s\r\n\r\n" % (name, name)).encode())
        status, head = read_head(s)
        if status == 200:
            return status, s
        body = b""
        with s:
            while len(body) < 4096:
                data = s.recv(4096)
                if not data:
                    break
                body += data
        return status, head + body.decode()

    def close(self):
        for proc in (self.proxy, self.holder):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)


@pytest.fixture
def box(pyz):
    require_root("the proxy's namespace lab and a mount namespace")
    with proxylab.ProxyLab(HOSTS) as lab:
        b = Box(lab, pyz)
        try:
            yield b
        finally:
            b.close()


def test_refused_then_opened_by_its_command_without_a_restart(box):
    box.start_proxy()
    pid = box.proxy.pid
    status, tunnel = box.connect("allowed.test")       # open before the reload, used after
    assert status == 200
    for _ in range(3):
        status, text = box.connect("refused.test")
        assert status == 403 and "name not on the allow list" in text
    box.wait_log("refused.test:443 - refused-403", 3)   # logged when each connection ends

    out = box.run([PYTHON, box.pyz, "--refused"], nobody=True)   # no root: the log is readable
    row = [l for l in out.splitlines() if l.startswith("  refused.test:443  ")]
    assert len(row) == 1 and row[0].startswith("  refused.test:443  3 times, "), out
    command = out.splitlines()[out.splitlines().index(row[0]) + 1]
    prefix = "    open it for 1h: sudo python3 %s --allow-domain refused.test --for 1h" % box.pyz
    assert command == prefix, out
    data = json.loads(box.run([PYTHON, box.pyz, "--refused", "--json"], nobody=True))
    assert {r["destination"]: r["count"] for r in data["refused"]} == {"refused.test:443": 3}

    argv = shlex.split(command.split(": ", 1)[1])
    assert argv[:2] == ["sudo", "python3"]
    said = box.run(argv[1:])                            # as printed (root already: no sudo)
    assert "refused.test allowed until " in said and "reloaded its list" in said, said
    box.wait_log("claw-cage proxy: reloaded", 1)
    status, opened = box.connect("refused.test")
    assert status == 200
    opened.close()
    assert box.proxy.pid == pid and box.proxy.poll() is None   # no restart
    with tunnel:                                        # the tunnel opened before the reload
        tunnel.sendall(b"GET /before HTTP/1.1\r\nHost: allowed.test\r\n\r\n")
        status, _head, body = read_response(tunnel)
    assert status == 200 and b"hello from %s path=/before" % WAN.encode() in body
    entry = json.loads(open(os.path.join(box.upper, "claw-cage", "proxy.json")).read())
    assert "refused.test" in entry["allow"] and list(entry["expires"]) == ["refused.test"]


def test_a_bad_config_on_reload_keeps_the_list_in_force(box):
    box.write(proxy_config.render(listen=["127.0.0.1:3128"], allow=["allowed.test",
                                                                    "refused.test"], log=box.log))
    box.start_proxy()
    box.write('{"listen": ["127.0.0.1:3128"], "allow": ["allowed.test"], "ports": "443"}')
    box.proxy.send_signal(signal.SIGHUP)
    box.wait_log("reload refused", 1)
    assert box.connect("refused.test")[0] == 200       # the old list is still in force
    assert box.connect("other.test")[0] == 403
    lines = [l for l in box.log_text().splitlines() if "reload" in l]
    assert len(lines) == 1 and "the list in force stays" in lines[0] and "ports" in lines[0], lines
    assert box.proxy.poll() is None


def test_a_temporary_entry_ends_on_time_also_across_a_restart(box):
    box.start_proxy()
    started = time.time()
    box.run([PYTHON, box.pyz, "--allow-domain", "brief.test", "--for", "3s"])
    box.wait_log("claw-cage proxy: reloaded", 1)
    status, s = box.connect("brief.test")
    assert status == 200 and time.time() < started + 3
    s.close()
    time.sleep(max(0, started + 3.5 - time.time()))     # the entry's time has passed
    status, text = box.connect("brief.test")
    assert status == 403 and "expired" in text, text
    box.stop_proxy()                                    # a restart does not extend it
    box.start_proxy()
    status, text = box.connect("brief.test")
    assert status == 403 and "temporary entry expired" in text, text
    out = box.run([PYTHON, box.pyz, "--refused"])
    assert "brief.test:443  2 times" in out and "--allow-domain brief.test --for 1h" in out
