"""A systemd booted in a container, for the tests of claw-cage's units (the proxy's, the backup
schedule's): this machine's PID 1 is not systemd, so systemd-nspawn --volatile=yes boots this
machine's own /usr with a throwaway root (every write lands in tmpfs; /usr/local through an
overlay whose upper folder is the test's). Docker's own units are masked in it.

  Booted(tmp, netns, binds)   boot; run(argv) executes a command inside; close() halts it.
                              netns: a lab namespace to join, or None for a private one
                              (only lo); binds: nspawn --bind values (PATH or SRC:DST)
  require_nspawn(why)         refuse (skip, or fail under CI) where it cannot run
  wait_for(fn, timeout)       fn's first true value, polled
"""

import contextlib
import os
import shutil
import subprocess
import time
import uuid

from conftest import refuse, require_root
from lab import netlab

NSPAWN = shutil.which("systemd-nspawn")
SYSTEMD = "/lib/systemd/systemd"
MASKED = ("docker.service", "docker.socket", "containerd.service", "nftables.service")


def require_nspawn(why):
    require_root(why)
    if not NSPAWN or not os.path.exists(SYSTEMD):
        refuse("systemd-nspawn or systemd NOT INSTALLED, NOT RUN (tests/run installs "
               "systemd-container from tests/apt-packages.txt)")


class Booted:
    """A systemd booted in a container; run() executes a command inside it."""

    def __init__(self, tmp, netns, binds):
        self.log = os.path.join(tmp, "nspawn.log")
        upper = os.path.join(tmp, "usr-local")
        os.makedirs(upper)
        argv = [NSPAWN, "--volatile=yes", "-D", "/", "-M", "cc" + uuid.uuid4().hex[:8],
                "--register=no", "--keep-unit", "--private-network" if netns is None else
                "--network-namespace-path=/run/netns/" + netns,
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

    def main_pid(self, unit):
        pid = self.run(["systemctl", "show", "-p", "MainPID", "--value", unit]).stdout.strip()
        return pid if pid not in ("", "0") else None

    def close(self):
        if self.proc.poll() is None:
            self.proc.terminate()   # nspawn halts the container on the first SIGTERM
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, 9)
                self.proc.wait(timeout=10)


def wait_for(fn, timeout):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = fn()
        if value:
            return value
        time.sleep(0.2)
    return fn()
