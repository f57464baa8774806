"""A namespace lab for the egress proxy: what names resolve to is the lab's choice, and every
address the proxy could be talked into reaching holds a real server that counts connections.

    proxy ns (P)   the proxy, its clients; /etc/netns/P/hosts decides what names resolve to,
                   /etc/netns/P/resolv.conf points DNS at 127.0.0.1 (nothing: fails at once).
                   Servers on 127.0.0.1 (loopback must be refused).
       |-- veth 198.51.100.1/30 -- wan ns (W): the "internet": 203.0.113.10, .11, 2001:db8::10
       `-- veth 192.168.1.1/24  -- lan ns (L): 192.168.1.10, fd00:1::5, and one address in each
                                   routable IPv4 range of the firewall's table (RANGE_ADDRS)
    Every server answers HTTP on ports 80, 443 and 8443 (GET /bytes/N: N bytes; POST /echo:
    the body back; anything else: "hello from ADDRESS") and appends "ADDRESS PORT" to a
    per-namespace file for each connection it accepts (ProxyLab.accepted).

Packets go only to 127.0.0.0/8 and addresses inside these namespaces. Needs root and iproute2.

API
  ProxyLab(hosts)    context manager; hosts: [(address, name), ...] for P's /etc/hosts
  lab.p / lab.w / lab.l                 namespace names
  lab.exec(ns, argv) / lab.sh(ns, script)
  lab.socket_in(ns, family=AF_INET)     a socket created inside ns (usable from this process)
  lab.accepted(ns) -> ["ADDRESS PORT", ...]  connections the servers of ns accepted so far
  lab.start_proxy(pyz, cfg, env=None, python=PY, no_splice=False) -> Proxy
                                        run `python pyz --proxy --config` in P (env: added to
                                        the environment; no_splice: under a seccomp filter
                                        that refuses splice); cfg["listen"] gets
                                        a unix socket in the lab's directory (reachable from
                                        this process) unless it names its own
  Proxy.sock_path, .pid, .log_text(), .stop()
  RANGE_ADDRS: {cidr: address} one address per range of the firewall table
"""

import contextlib
import ctypes
import ipaddress
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "bootstrap"))
from claw_cage.firewall import rules  # noqa: E402
from lab.namespaces import Namespaces  # noqa: E402

PY = sys.executable
WAN, WAN2, WAN6 = "203.0.113.10", "203.0.113.11", "2001:db8::10"
LAN, LAN6 = "192.168.1.10", "fd00:1::5"
PORTS = (80, 443, 8443)
# IPv4 ranges a packet can be routed to through a veth (loopback, multicast and broadcast
# cannot: those are judged by the proxy's answer alone)
UNROUTABLE = ("127.0.0.0/8", "224.0.0.0/4", "255.255.255.255/32")


def _pick(net):
    """One address inside net, not its first or last: from the table, not a copy of it."""
    if net.num_addresses <= 2:
        return net[0]
    return net[net.num_addresses // 2 + 1]


RANGE_ADDRS = {cidr: str(_pick(ipaddress.ip_network(cidr)))
               for family in rules.FAMILIES for cidr, _why in rules.SPECIAL_RANGES[family]}
RANGE_ADDRS["192.168.0.0/16"] = LAN      # the LAN server itself
RANGE_ADDRS["fc00::/7"] = LAN6

SERVER = r'''
import socket, sys, threading
addrs, ports, log = sys.argv[1].split(","), [int(p) for p in sys.argv[2].split(",")], sys.argv[3]
lock = threading.Lock()
CHUNK = b"x" * 262144
def handle(c, local):
    try:
        with lock, open(log, "a") as f:
            f.write("%s %d\n" % local[:2])
        buf = b""
        while b"\r\n\r\n" not in buf and len(buf) < 65536:
            data = c.recv(65536)
            if not data: return
            buf += data
        head, _, body = buf.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        method, path = lines[0].split(" ")[:2]
        hdrs = dict((l.split(":", 1)[0].lower(), l.split(":", 1)[1].strip()) for l in lines[1:] if ":" in l)
        if path.startswith("/bytes/"):
            n = int(path[7:])
            c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % n)
            while n > 0:
                c.sendall(CHUNK[:min(n, len(CHUNK))])
                n -= len(CHUNK)
            return
        if method == "POST":
            want = int(hdrs.get("content-length", "0"))
            while len(body) < want:
                data = c.recv(65536)
                if not data: break
                body += data
            out = body
        else:
            out = ("hello from %s path=%s host=%s\n" % (local[0], path, hdrs.get("host", ""))).encode()
        c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % len(out) + out)
    except OSError:
        pass
    finally:
        c.close()
def serve(s):
    while True:
        c, _ = s.accept()
        threading.Thread(target=handle, args=(c, c.getsockname()), daemon=True).start()
for a in addrs:
    for p in ports:
        s = socket.socket(socket.AF_INET6 if ":" in a else socket.AF_INET)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((a, p))
        s.listen(1024)
        threading.Thread(target=serve, args=(s,), daemon=True).start()
print("ready", flush=True)
sys.stdin.read()
'''

# Runs argv with the splice system call refused (EPERM) by a seccomp filter, as a unit's
# SystemCallFilter= might: the proxy must fall back to copying.
NO_SPLICE = r'''
import ctypes, os, platform, struct, sys
nr, arch = {"x86_64": (275, 0xC000003E), "aarch64": (76, 0xC00000B7)}[platform.machine()]
ops = [(0x20, 0, 0, 4), (0x15, 0, 3, arch), (0x20, 0, 0, 0), (0x15, 0, 1, nr),
       (0x06, 0, 0, 0x00050000 | 1), (0x06, 0, 0, 0x7FFF0000)]
prog = b"".join(struct.pack("HBBI", *op) for op in ops)
buf = ctypes.create_string_buffer(prog)
fprog = struct.pack("HxxxxxxP", len(ops), ctypes.addressof(buf))
libc = ctypes.CDLL(None, use_errno=True)
assert libc.prctl(38, 1, 0, 0, 0) == 0                     # PR_SET_NO_NEW_PRIVS
assert libc.prctl(22, 2, ctypes.c_char_p(fprog), 0, 0) == 0  # PR_SET_SECCOMP, FILTER
os.execv(sys.argv[1], sys.argv[1:])
'''

_libc = ctypes.CDLL(None, use_errno=True)
CLONE_NEWNET = 0x40000000


class Proxy:
    def __init__(self, proc, sock_path, log_path):
        self.proc, self.sock_path, self.log_path = proc, sock_path, log_path
        self.pid = proc.pid

    def log_text(self):
        with open(self.log_path, encoding="utf-8", errors="replace") as f:
            return f.read()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


class ProxyLab(Namespaces):
    def __init__(self, hosts=(), resolv="nameserver 127.0.0.1\n"):
        super().__init__("ccpx")
        self.p, self.w, self.l = ("%s-%s" % (self.tag, n) for n in ("p", "w", "l"))
        self.hosts, self.resolv = list(hosts), resolv
        os.chmod(self.tmp, 0o755)
        self.etc = os.path.join("/etc/netns", self.p)
        self._proxies = []

    def close(self):
        for proxy in self._proxies:
            with contextlib.suppress(Exception):
                proxy.stop()
        super().close()
        shutil.rmtree(self.etc, ignore_errors=True)

    # -- running things ----------------------------------------------------------------------
    def socket_in(self, ns, family=socket.AF_INET, kind=socket.SOCK_STREAM):
        """A socket created inside ns: a socket keeps the namespace it was made in, so a
        thread enters ns (setns affects only the calling thread), makes it, and ends."""
        out = []

        def make():
            fd = os.open("/var/run/netns/" + ns, os.O_RDONLY)
            try:
                if _libc.setns(fd, CLONE_NEWNET) != 0:
                    out.append(OSError(ctypes.get_errno(), "setns " + ns))
                    return
                out.append(socket.socket(family, kind))
            finally:
                os.close(fd)
        t = threading.Thread(target=make)
        t.start()
        t.join()
        if isinstance(out[0], Exception):
            raise out[0]
        return out[0]

    def accepted(self, ns):
        path = os.path.join(self.tmp, ns + ".conns")
        if not os.path.exists(path):
            return []
        with open(path) as f:
            return f.read().split("\n")[:-1]

    def start_proxy(self, pyz, cfg, name="proxy", env=None, python=PY, no_splice=False):
        cfg = dict(cfg)
        sock_path = os.path.join(self.tmp, name + ".sock")
        cfg.setdefault("listen", ["unix:" + sock_path])
        cfg_path = os.path.join(self.tmp, name + ".json")
        log_path = os.path.join(self.tmp, name + ".log")
        with open(cfg_path, "w") as f:
            json.dump(cfg, f)
        with open(log_path, "w") as log:
            wrap = [PY, "-c", NO_SPLICE] if no_splice else []
            proc = subprocess.Popen(["ip", "netns", "exec", self.p] + wrap + [
                python, pyz, "--proxy", "--config", cfg_path], stdout=log, stderr=log,
                                    stdin=subprocess.DEVNULL, env=dict(os.environ, **(env or {})))
        proxy = Proxy(proc, sock_path, log_path)
        self._proxies.append(proxy)
        end = time.monotonic() + 30
        while "listening on" not in proxy.log_text():
            if proc.poll() is not None or time.monotonic() > end:
                raise AssertionError("proxy did not start: %s" % proxy.log_text())
            time.sleep(0.05)
        return proxy

    # -- building ----------------------------------------------------------------------------
    def _build(self):
        for ns in (self.p, self.w, self.l):
            self.add(ns)
        os.makedirs(self.etc)
        with open(os.path.join(self.etc, "hosts"), "w") as f:
            f.write("127.0.0.1 localhost\n::1 localhost\n")
            f.writelines("%s %s\n" % h for h in self.hosts)
        with open(os.path.join(self.etc, "resolv.conf"), "w") as f:
            f.write(self.resolv)   # by default no DNS server there: unlisted names fail fast
        routed = {c: a for c, a in RANGE_ADDRS.items()
                  if c not in UNROUTABLE and ":" not in a and a != LAN}
        self.sh(self.p, """
            ip link set lo up
            ip link add wan0 type veth peer name up0 netns %(w)s
            ip addr add 198.51.100.1/30 dev wan0
            ip addr add 2001:db8:ffff::1/64 dev wan0 nodad
            ip link set wan0 up
            ip link add lan0 type veth peer name up0 netns %(l)s
            ip addr add 192.168.1.1/24 dev lan0
            ip addr add fd00:ffff::1/64 dev lan0 nodad
            ip link set lan0 up
            ip route add %(wan)s via 198.51.100.2
            ip route add %(wan2)s via 198.51.100.2
            ip -6 route add %(wan6)s via 2001:db8:ffff::2
            ip -6 route add %(lan6)s via fd00:ffff::2
            %(routes)s
        """ % {"w": self.w, "l": self.l, "wan": WAN, "wan2": WAN2, "wan6": WAN6, "lan6": LAN6,
               "routes": "\n".join("ip route add %s via 192.168.1.10" % a
                                   for a in routed.values())})
        self.sh(self.w, """
            ip link set lo up
            ip addr add 198.51.100.2/30 dev up0
            ip addr add 2001:db8:ffff::2/64 dev up0 nodad
            ip link set up0 up
            ip addr add %s/32 dev lo
            ip addr add %s/32 dev lo
            ip addr add %s/128 dev lo
            ip route add default via 198.51.100.1
            ip -6 route add default via 2001:db8:ffff::1
        """ % (WAN, WAN2, WAN6))
        self.sh(self.l, """
            ip link set lo up
            ip addr add 192.168.1.10/24 dev up0
            ip addr add fd00:ffff::2/64 dev up0 nodad
            ip link set up0 up
            ip addr add %s/128 dev lo
            %s
            ip route add default via 192.168.1.1
            ip -6 route add default via fd00:ffff::1
        """ % (LAN6, "\n".join("ip addr add %s/32 dev lo" % a for a in routed.values())))
        self._serve(self.w, [WAN, WAN2, WAN6])
        self._serve(self.l, [LAN, LAN6] + list(routed.values()))
        self._serve(self.p, ["127.0.0.1", RANGE_ADDRS["127.0.0.0/8"]])

    def _serve(self, ns, addrs):
        log = os.path.join(self.tmp, ns + ".conns")
        self.serve(ns, [PY, "-c", SERVER, ",".join(addrs), ",".join(map(str, PORTS)), log])


# -- a client speaking to the proxy ---------------------------------------------------------

def read_response(sock, limit=1 << 30):
    """(status, headers text, body) reading until the peer closes."""
    buf = bytearray()
    while len(buf) < limit:
        data = sock.recv(262144)
        if not data:
            break
        buf += data
    head, _, body = bytes(buf).partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1]) if head.startswith(b"HTTP/") else 0
    return status, head.decode("latin-1"), body


def read_head(sock):
    """The response head of a CONNECT (up to the blank line): (status, head text)."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        data = sock.recv(1)
        if not data:
            break
        buf += data
    status = int(buf.split(b" ", 2)[1]) if buf.startswith(b"HTTP/") else 0
    return status, buf.decode("latin-1")


def unix_client(path, timeout=20):
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(timeout)
    s.connect(path)
    return s
