"""Network namespaces a test makes, and what runs in them: the set-up and clean-up that every
namespace lab shares (netlab.Lab, proxylab.ProxyLab, engines.EngineLab, e2e_support.Peer).
Everything is removed on close, also after a build that failed halfway: the servers, every
process left in the namespaces, the namespaces, the scratch folder.

One owner here for:
  sh()                    one external command, bounded in time, raising with its output
  PEER_SERVER, DNS_SERVER the namespaces' tiny HTTP (200 "peer ADDR" on every GET) and DNS
                          (every A query: argv[3]) servers
  connect() / wait_port() a TCP connection from inside a namespace; waiting for a server
  Namespaces              the lifecycle: add(), serve(), exec(), close()

Needs root and iproute2. Nothing here touches the root namespace's network."""

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid

PY = sys.executable


def sh(argv, check=True, timeout=60, env=None, input=None, cwd=None, tail=2000):
    """Run one command, text in/out. check=True raises with the last `tail` characters of its
    output on a non-zero exit."""
    res = subprocess.run(argv, input=input, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         universal_newlines=True, timeout=timeout, env=env, cwd=cwd)
    if check and res.returncode != 0:
        raise AssertionError("%s exited %d:\n%s%s" % (" ".join(argv), res.returncode,
                                                      res.stdout[-tail:], res.stderr[-tail:]))
    return res


def netns_exec(ns):
    """The prefix that runs a command in namespace ns (`ip netns exec`). The engine labs use
    `nsenter --net` instead: `ip netns exec` remounts /sys, which hides dockerd's cgroups."""
    return ["ip", "netns", "exec", ns]


# A tiny HTTP server: 200 on every GET. Run by the interpreter running pytest (stdlib only).
# socketserver, not http.server.HTTPServer: the latter's server_bind() looks up the bound
# address's name (a reverse DNS query to the machine's resolver), a packet we must not send.
PEER_SERVER = r"""
import http.server, socketserver, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"peer " + sys.argv[1].encode() + b"\n"
        self.send_response(200); self.send_header("Content-Length", str(len(body)))
        self.end_headers(); self.wfile.write(body)
    def log_message(self, *a): pass
socketserver.ThreadingTCPServer.allow_reuse_address = True
socketserver.ThreadingTCPServer((sys.argv[1], int(sys.argv[2])), H).serve_forever()
"""


# A tiny DNS server (UDP): every A question gets argv[3], every other type an empty answer.
# Enough for getaddrinfo, busybox nslookup and Docker's embedded DNS forwarding to it.
DNS_SERVER = r"""
import socket, struct, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], int(sys.argv[2])))
ip = socket.inet_aton(sys.argv[3])
while True:
    data, peer = s.recvfrom(512)
    if len(data) < 17:
        continue
    i = 12
    while i < len(data) and data[i]:
        i += data[i] + 1
    question = data[12:i + 5]
    is_a = data[i + 1:i + 3] == b"\x00\x01"
    head = struct.pack(">HHHHHH", struct.unpack(">H", data[:2])[0], 0x8180, 1, int(is_a), 0, 0)
    answer = b"\xc0\x0c" + struct.pack(">HHIH", 1, 1, 60, 4) + ip if is_a else b""
    s.sendto(head + question + answer, peer)
"""


def connect(prefix, addr, port, timeout=2, python=PY):
    """True iff a TCP connection to addr:port opens from where `prefix` runs a command (a
    namespace: netns_exec(ns), or an engine lab's nsenter(ns))."""
    res = sh(list(prefix) + [python, "-c",
             "import socket,sys\ntry: socket.create_connection((%r, %d), %r).close()\n"
             "except OSError: sys.exit(1)" % (addr, port, timeout)],
             check=False, timeout=timeout + 10)
    return res.returncode == 0


def wait_port(prefix, addr, port, error=AssertionError, proc=None, within=10, python=PY):
    """Until a server answers on addr:port (from `prefix`), at most `within` seconds; raises
    `error` when it does not, or at once when `proc` (the server) died."""
    deadline = time.time() + within
    while time.time() < deadline:
        if proc is not None and proc.poll() is not None:
            raise error("server for %s:%d died: %s" % (addr, port, (proc.stderr.read() or b"")
                                                       .decode(errors="replace")[-500:]))
        if connect(prefix, addr, port, 1, python):
            return
        time.sleep(0.2)
    raise error("test server %s:%d does not answer (%s)" % (addr, port, " ".join(prefix)))


def kill_processes(ns, rounds=1):
    """SIGKILL every process in namespace ns; a few rounds for what forks while dying."""
    for i in range(rounds):
        pids = sh(["ip", "netns", "pids", ns], check=False).stdout.split()
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(OSError):
                os.kill(int(pid), signal.SIGKILL)
        if i + 1 < rounds:
            time.sleep(0.5)


class Namespaces:
    """A subclass builds its namespaces in _build() with add(), and starts its servers with
    serve(); `with` closes everything even when the build fails.
    kind: the prefix of every name (tag = kind + 6 hex digits); tmp_dir: where the scratch
    folder `tag-XXXX` goes (the system's temporary folder unless named)."""

    def __init__(self, kind, tmp_dir=None):
        self.tag = kind + uuid.uuid4().hex[:6]      # a unique prefix per run
        self.tmp = tempfile.mkdtemp(prefix=self.tag + "-", dir=tmp_dir)
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

    def add(self, ns, no_dad=True):
        """A new namespace; no_dad: without IPv6 duplicate address detection (addresses usable
        at once, no flaky first probe)."""
        sh(["ip", "netns", "add", ns])
        self._made.append(ns)
        if no_dad:
            self.exec(ns, ["sysctl", "-qw", "net.ipv6.conf.all.accept_dad=0",
                           "net.ipv6.conf.default.accept_dad=0"])

    def enter(self, ns):
        """The prefix that runs a command in namespace ns (an engine lab: nsenter)."""
        return netns_exec(ns)

    def serve(self, ns, argv):
        """argv started in ns, once it printed its "ready" line; closing its stdin stops it."""
        proc = subprocess.Popen(self.enter(ns) + list(argv), stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, universal_newlines=True)
        self._procs.append(proc)
        if proc.stdout.readline().strip() != "ready":
            raise AssertionError("server in %s did not start" % ns)
        return proc

    def close(self):
        self.stop_servers()
        for ns in reversed(self._made):
            kill_processes(ns)
        self.delete_namespaces()
        shutil.rmtree(self.tmp, ignore_errors=True)

    # the steps of close(), for a lab that has more to undo in between (engines.EngineLab)
    def stop_servers(self):
        for proc in self._procs:
            with contextlib.suppress(Exception):
                if proc.stdin:
                    proc.stdin.close()
                proc.kill()
                proc.wait(timeout=5)
        self._procs = []

    def delete_namespaces(self):
        """Every namespace made, deleted; the failures, one line each."""
        errors = []
        for ns in reversed(self._made):
            res = sh(["ip", "netns", "del", ns], check=False)
            if res.returncode != 0:
                errors.append("ip netns del %s: %s" % (ns, res.stderr.strip()))
        self._made = []
        return errors

    def exec(self, ns, argv, check=True, timeout=60, **kw):
        kw.setdefault("stdout", subprocess.PIPE)
        kw.setdefault("stderr", subprocess.PIPE)
        proc = subprocess.run(self.enter(ns) + list(argv), timeout=timeout,
                              universal_newlines=True, **kw)
        if check and proc.returncode != 0:
            raise AssertionError("in %s: %s -> exit %d\n%s%s" % (
                ns, " ".join(argv), proc.returncode, proc.stdout, proc.stderr))
        return proc

    def sh(self, ns, script, check=True, timeout=60):
        return self.exec(ns, ["bash", "-euo", "pipefail", "-c", script], check=check,
                         timeout=timeout)
