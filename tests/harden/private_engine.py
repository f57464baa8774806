"""A private Docker engine for --harden-docker tests: the system's own dockerd binary, run in
mount, network and PID namespaces of its own, so that the test can restart it and rewrite its
/etc/docker/daemon.json while other tests use the system's engine.

    with PrivateEngine(init="sysv") as engine:   # or init="systemd"; bindir=another engine
        engine.daemon_json                      # the host path of the engine's daemon.json
        engine.run(argv, env=None)              # a command inside the namespaces
        engine.product(pyz, "--harden-docker")  # the built program, as root, inside them
        engine.info()                           # `docker info` of the private engine (dict)
        engine.sleeper(name), .running(name)    # a busybox container; (running, pid)

Inside, /etc/docker is a bind mount of a test folder (the real one is never written), the
engine's socket, data-root, exec-root and pidfile are under the test folder, and the storage
driver is vfs. Its restart goes through the same command the product runs (`service docker
restart`, or `systemctl restart docker` when init="systemd": then /run/systemd/system exists
in the private mount namespace); fake `service`/`systemctl` scripts first on PATH really stop
and start the private dockerd and behave like the real ones, failure modes included:
  sysv     like /etc/init.d/docker: `start` backgrounds dockerd and exits 0 at once, even when
           dockerd then dies (a broken daemon.json is noticed only by asking dockerd).
  systemd  like docker.service (Type=notify): `restart` returns once dockerd answers, or exits
           1 ("Job for docker.service failed") when dockerd exits first; more than 3 starts in
           60 s fail ("attempted too often", StartLimitBurst=3) until `reset-failed`.
The dockerd command line is read from dockerd.args at each start, so a test can change it
under the running engine, as an edited docker.service waiting for its restart.
PID 1 of the namespace is a small reaper: when the test ends it is killed, and with it every
process of the namespace; the namespaces go away with their last process.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time

REAPER = ("import os, time\n"
          "while True:\n"
          "    try:\n"
          "        os.wait()\n"
          "    except ChildProcessError:\n"
          "        time.sleep(0.2)\n")

FAKE = r"""#!/bin/bash
# Fake @NAME@ for the --harden-docker tests (tests/harden/private_engine.py): really stops and
# starts the private dockerd. Mode @MODE@.
set -u
T=@TMP@
case "$(basename "$0")" in
    service) unit=${1:-}; action=${2:-} ;;
    systemctl) action=${1:-}; unit=${2:-} ;;
esac
unit=${unit%.service}
if [ "$unit" != docker ]; then
    echo "Unit $unit.service not found." >&2; exit 5
fi
dstop() {
    local pid
    pid=$(cat "$T/fake.pid" 2>/dev/null) || return 0
    kill "$pid" 2>/dev/null || return 0
    for i in $(seq 200); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null; return 0
}
dstart() {
    local pid now recent
    if [ @MODE@ = systemd ]; then
        now=$(date +%s)
        recent=$(awk -v now="$now" 'now - $1 < 60' "$T/starts" 2>/dev/null | wc -l)
        if [ "$recent" -ge 3 ]; then
            echo "Job for docker.service failed because start of the service was attempted too often." >&2
            return 1
        fi
        echo "$now" >> "$T/starts"
    fi
    mapfile -t args < "$T/dockerd.args"
    dockerd "${args[@]}" >> "$T/dockerd.log" 2>&1 < /dev/null &
    pid=$!
    echo "$pid" > "$T/fake.pid"
    if [ @MODE@ = sysv ]; then
        echo "Starting Docker: docker."; return 0
    fi
    for i in $(seq 300); do
        if DOCKER_HOST="unix://$T/docker.sock" docker version >/dev/null 2>&1; then return 0; fi
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "Job for docker.service failed because the control process exited with error code." >&2
            return 1
        fi
        sleep 0.1
    done
    return 1
}
case "$action" in
    start) dstart ;;
    stop) dstop ;;
    restart) dstop; dstart ;;
    reset-failed) rm -f "$T/starts" ;;
    *) echo "fake @NAME@: unsupported action $action" >&2; exit 2 ;;
esac
"""


class PrivateEngine:
    def __init__(self, init="sysv", flags=(), bindir=None):
        # short: containerd's socket under exec-root must fit a unix socket path (108 bytes)
        self.tmp = tempfile.mkdtemp(prefix="claw-h-", dir="/tmp")
        self.init = init
        self.etc = os.path.join(self.tmp, "etc-docker")
        self.daemon_json = os.path.join(self.etc, "daemon.json")
        self.sock = os.path.join(self.tmp, "docker.sock")
        self.bin = os.path.join(self.tmp, "bin")
        path = [self.bin] + ([bindir] if bindir else []) + [os.environ.get("PATH", "")]
        self.env = dict(os.environ, DOCKER_HOST="unix://" + self.sock,
                        PATH=os.pathsep.join(path))
        self.env.pop("CLAW_CAGE_DIR", None)
        self.holder = self.pid = None
        self.args = ["-H", "unix://" + self.sock, "--data-root", os.path.join(self.tmp, "data"),
                     "--exec-root", os.path.join(self.tmp, "exec"),
                     "--pidfile", os.path.join(self.tmp, "dockerd.pid"),
                     "--storage-driver", "vfs"] + list(flags)

    def set_args(self, args):
        with open(os.path.join(self.tmp, "dockerd.args"), "w") as f:
            f.write("".join(a + "\n" for a in args))

    def __enter__(self):
        os.makedirs(self.etc)
        os.makedirs(self.bin)
        self.set_args(self.args)
        for name in ("service", "systemctl"):
            path = os.path.join(self.bin, name)
            with open(path, "w") as f:
                f.write(FAKE.replace("@NAME@", name).replace("@MODE@", self.init)
                        .replace("@TMP@", self.tmp))
            os.chmod(path, 0o755)
        self.holder = subprocess.Popen(
            ["unshare", "--mount", "--net", "--pid", "--fork", "--mount-proc",
             "--propagation", "private", sys.executable, "-c", REAPER])
        try:
            self.pid = self._child()
            setup = "mount --bind %s /etc/docker && ip link set lo up" % self.etc
            if self.init == "systemd":
                setup += " && mount -t tmpfs tmpfs /run/systemd && mkdir /run/systemd/system"
            self.run(["sh", "-c", setup])
            self.service("start")
            self.wait()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _child(self):
        path = "/proc/%d/task/%d/children" % (self.holder.pid, self.holder.pid)
        for _ in range(100):
            with open(path) as f:
                kids = f.read().split()
            if kids:
                return int(kids[0])
            time.sleep(0.05)
        raise RuntimeError("unshare did not start its child")

    def __exit__(self, *exc):
        if self.pid:
            try:
                os.kill(self.pid, signal.SIGKILL)   # PID 1 of the namespace: all of it goes
            except ProcessLookupError:
                pass
        if self.holder:
            self.holder.wait(timeout=30)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                shutil.rmtree(self.tmp)
                break
            except OSError:
                time.sleep(0.5)

    def run(self, argv, check=True, timeout=120, input=None):
        return subprocess.run(["nsenter", "-t", str(self.pid), "-m", "-n", "-p", "--"]
                              + list(argv), env=self.env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, universal_newlines=True, check=check,
                              timeout=timeout, input=input)

    def service(self, action):
        if self.init == "systemd":
            return self.run(["systemctl", action, "docker"], check=False)
        return self.run(["service", "docker", action], check=False)

    def product(self, pyz, *args):
        return self.run([sys.executable, pyz] + list(args), check=False, timeout=300)

    def sleeper(self, name):
        """A container that just sleeps, from an image of the static busybox."""
        tar = os.path.join(self.tmp, "busybox.tar")
        if not os.path.exists(tar):
            with tarfile.open(tar, "w") as t:
                t.add(shutil.which("busybox") or "/bin/busybox", arcname="bin/busybox")
            self.run(["docker", "import", tar, "claw-sleeper:1"])
        self.run(["docker", "run", "-d", "--name", name, "claw-sleeper:1",
                  "/bin/busybox", "sleep", "3600"])

    def running(self, name):
        """(running, pid) of a container."""
        out = self.run(["docker", "inspect", "-f", "{{.State.Running}} {{.State.Pid}}",
                        name]).stdout.split()
        return out[0] == "true", int(out[1])

    def info(self):
        res = self.run(["docker", "info", "--format", "{{json .}}"], check=False)
        return json.loads(res.stdout) if res.returncode == 0 else None

    def dockerd_pid(self):
        try:
            with open(os.path.join(self.tmp, "fake.pid")) as f:
                return int(f.read())
        except (OSError, ValueError):
            return None

    def wait(self, timeout=60):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.info():
                return
            time.sleep(0.3)
        raise RuntimeError("private dockerd does not answer; log:\n" + self.log()[-3000:])

    def log(self):
        """Everything the private dockerd wrote, across its restarts."""
        try:
            with open(os.path.join(self.tmp, "dockerd.log")) as f:
                return f.read()
        except OSError:
            return ""
