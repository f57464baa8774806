"""Network namespaces a test makes, and what runs in them: the set-up and clean-up that the
namespace labs (netlab.Lab, proxylab.ProxyLab) share. Everything is removed on close, also
after a build that failed halfway: the servers, every process left in the namespaces, the
namespaces, the scratch folder.

Needs root and iproute2. Nothing here touches the root namespace's network."""

import contextlib
import os
import shutil
import subprocess
import tempfile
import uuid


class Namespaces:
    """A subclass builds its namespaces in _build() with add(), and starts its servers with
    serve(); `with` closes everything even when the build fails."""

    def __init__(self, kind):
        self.tag = kind + uuid.uuid4().hex[:6]      # a unique prefix per run
        self.tmp = tempfile.mkdtemp(prefix=self.tag + "-")
        self._made, self._procs = [], []

    def __enter__(self):
        try:
            self._build()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc):
        self.close()

    def add(self, ns):
        """A new namespace, without duplicate address detection: addresses usable at once, no
        flaky first probe."""
        subprocess.run(["ip", "netns", "add", ns], check=True)
        self._made.append(ns)
        self.exec(ns, ["sysctl", "-qw", "net.ipv6.conf.all.accept_dad=0",
                       "net.ipv6.conf.default.accept_dad=0"])

    def serve(self, ns, argv):
        """argv started in ns, once it printed its "ready" line; closing its stdin stops it."""
        proc = subprocess.Popen(["ip", "netns", "exec", ns] + list(argv), stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, universal_newlines=True)
        self._procs.append(proc)
        if proc.stdout.readline().strip() != "ready":
            raise AssertionError("server in %s did not start" % ns)
        return proc

    def close(self):
        for proc in self._procs:
            with contextlib.suppress(Exception):
                proc.stdin.close()
                proc.kill()
                proc.wait(timeout=5)
        self._procs = []
        for ns in reversed(self._made):
            pids = subprocess.run(["ip", "netns", "pids", ns], stdout=subprocess.PIPE,
                                  stderr=subprocess.DEVNULL, universal_newlines=True).stdout
            for pid in pids.split():
                with contextlib.suppress(OSError):
                    os.kill(int(pid), 9)
            subprocess.run(["ip", "netns", "del", ns], stderr=subprocess.DEVNULL)
        self._made = []
        shutil.rmtree(self.tmp, ignore_errors=True)

    def exec(self, ns, argv, check=True, timeout=60, **kw):
        kw.setdefault("stdout", subprocess.PIPE)
        kw.setdefault("stderr", subprocess.PIPE)
        proc = subprocess.run(["ip", "netns", "exec", ns] + list(argv), timeout=timeout,
                              universal_newlines=True, **kw)
        if check and proc.returncode != 0:
            raise AssertionError("in %s: %s -> exit %d\n%s%s" % (
                ns, " ".join(argv), proc.returncode, proc.stdout, proc.stderr))
        return proc

    def sh(self, ns, script, check=True, timeout=60):
        return self.exec(ns, ["bash", "-euo", "pipefail", "-c", script], check=check,
                         timeout=timeout)
