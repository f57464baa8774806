"""The listeners and each connection's decision: read the request head (bounded in size and
time), check it against the policy, resolve, check every address, connect, then relay.

A refusal is an HTTP status with a one-line reason: 400 malformed, 403 policy, 408 head too
slow, 431 head too large, 502 cannot resolve or connect, 503 too many connections.
"""

import asyncio
import ipaddress
import os
import resource
import signal
import socket
import stat
import sys
import time

from .config import RELOADED, ConfigError, describe, load
from .log import Log
from .policy import blocked, split_host_port
from .relay import Conn, Side, connect

PHRASES = {400: "Bad Request", 403: "Forbidden", 408: "Request Timeout",
           431: "Request Header Fields Too Large", 502: "Bad Gateway",
           503: "Service Unavailable"}
# never passed upstream: they are for the proxy, or describe the client's own connection
HOP_BY_HOP = ("connection", "keep-alive", "proxy-authorization", "proxy-connection", "host",
              "te", "upgrade", "trailer")


def response(status, reason):
    body = ("claw-cage proxy: %s\n" % reason).encode("ascii", "replace")
    head = ("HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n"
            "Connection: close\r\n\r\n" % (status, PHRASES[status], len(body)))
    return head.encode("ascii") + body


def parse_request(head):
    """Request head (bytes, without the blank line) -> (host, port, bytes to send upstream:
    None for CONNECT, else the head rewritten for the origin server). ValueError: malformed."""
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[0].isalpha() or not parts[2].startswith("HTTP/1."):
        raise ValueError("malformed request line")
    method, target, version = parts
    for line in lines[1:]:
        if not line or line[0] in " \t" or ":" not in line:
            raise ValueError("malformed header line")
    if method == "CONNECT":
        host, port = split_host_port(target)
        if port is None:
            raise ValueError("CONNECT needs HOST:PORT")
        return host, port, None
    if not target[:7].lower() == "http://":
        raise ValueError("plain requests need an absolute http:// URL (https goes through CONNECT)")
    rest = target[7:]
    cut = min([i for i in (rest.find(c) for c in "/?#") if i >= 0] or [len(rest)])
    authority, path = rest[:cut], rest[cut:].split("#")[0]
    if "@" in authority:
        raise ValueError("credentials in the URL are not forwarded")
    host, port = split_host_port(authority)
    path = "/" + path if not path.startswith("/") else path
    keep = [l for l in lines[1:] if l.split(":", 1)[0].strip().lower() not in HOP_BY_HOP]
    out = ["%s %s %s" % (method, path, version), "Host: " + authority] + keep
    out += ["Connection: close", "", ""]
    return host, port or 80, "\r\n".join(out).encode("latin-1")


class Server:
    def __init__(self, cfg, log):
        self.cfg, self.log = cfg, log
        self.loop = asyncio.get_event_loop()
        self.active = set()
        self.counts = {"proxy": 0, "forward": 0}

    # -- the connection's life -----------------------------------------------------------
    def accepted(self, conn):
        client = conn.client
        if self.counts[conn.kind] >= self.cfg.max_conns:
            conn.counted = False
            if conn.kind == "proxy":
                self.refuse(conn, 503, "too many connections")
            else:
                conn.verdict = "refused-too-many"
                client.transport.close()
            return
        conn.counted = True
        self.counts[conn.kind] += 1
        self.active.add(conn)
        if conn.kind == "proxy":
            client.head, client.scanned = bytearray(), 0
        else:
            client.transport.pause_reading()
            conn.task = self.loop.create_task(self.forward(conn))

    def finished(self, conn):
        if conn.counted:
            self.counts[conn.kind] -= 1
            self.active.discard(conn)
        self.log.line(conn)

    def refuse(self, conn, status, reason):
        conn.verdict, conn.why = "refused-%d" % status, reason
        client = conn.client
        client.head = None
        if not client.lost:
            # Closing a socket with unread input resets it, and the client may never see
            # the answer: say it, end our side, read and drop what still comes for 1 s.
            t = client.transport
            t.write(response(status, reason))
            if t.can_write_eof():
                t.write_eof()
            t.resume_reading()
            self.loop.call_later(1.0, t.close)

    def head_data(self, conn, client):
        buf = client.head
        end = buf.find(b"\r\n\r\n", max(0, client.scanned - 3))
        client.scanned = len(buf)
        limit = self.cfg.max_header
        if end < 0 and len(buf) > limit or end + 4 > limit:
            return self.refuse(conn, 431, "request head larger than %d bytes" % limit)
        if end < 0:
            return
        client.head = None
        client.transport.pause_reading()
        conn.verdict = "undecided"
        conn.task = self.loop.create_task(self.decide(conn, bytes(buf[:end]), bytes(buf[end + 4:])))

    async def decide(self, conn, head, early):
        try:
            await self._decide(conn, head, early)
        except Exception as err:  # never let one connection take the proxy down
            self.refuse(conn, 502, "internal error: %s" % type(err).__name__)

    async def _decide(self, conn, head, early):
        cfg = self.cfg
        try:
            host, port, out = parse_request(head)
            name, address, why = cfg.policy.check_target(host, port)
        except ValueError as err:
            return self.refuse(conn, 400, str(err).split(":")[0])
        conn.name = describe(("tcp", (name, port)))   # logged as NAME:PORT (--refused reads it)
        if why:
            return self.refuse(conn, 403, why)
        if address is not None:
            addrs = [address]
        else:
            try:
                infos = await asyncio.wait_for(self.loop.getaddrinfo(
                    name, port, type=socket.SOCK_STREAM), cfg.connect_timeout)
            except (OSError, UnicodeError, asyncio.TimeoutError):
                return self.refuse(conn, 502, "cannot resolve %s" % name)
            addrs = []
            for info in infos:
                a = ipaddress.ip_address(info[4][0].split("%")[0])
                if a not in addrs:
                    addrs.append(a)
            for a in addrs:
                why = blocked(a)
                if why:
                    conn.address = str(a)
                    return self.refuse(conn, 403, "the name resolves to a blocked address: "
                                       + why)
        upstream, deadline = None, time.monotonic() + cfg.connect_timeout
        for a in addrs:   # in getaddrinfo's order; connect_timeout bounds them all together
            target = ("tcp", (str(a), port))
            conn.address = describe(target)
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                upstream = await connect(self.loop, conn, target, left)
                break
            except (OSError, asyncio.TimeoutError):
                continue
        if upstream is None:
            return self.refuse(conn, 502, "cannot connect to %s:%d" % (name, port))
        if conn.client.lost:
            upstream.transport.close()
            return
        conn.verdict = "allowed"
        if out is None:
            conn.client.transport.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            conn.link(upstream, early)
        else:
            conn.link(upstream, out + early)

    async def forward(self, conn):
        conn.name, conn.address = "forward", describe(conn.target)
        try:
            upstream = await connect(self.loop, conn, conn.target, self.cfg.connect_timeout)
        except (OSError, asyncio.TimeoutError):
            conn.verdict = "cannot-connect"
            conn.client.transport.close()
            return
        if conn.client.lost:
            upstream.transport.close()
            return
        conn.verdict = "relayed"
        conn.link(upstream)

    async def sweep(self):
        """Close heads that are too slow (slowloris) and tunnels idle too long."""
        cfg = self.cfg
        interval = max(0.05, min(1.0, cfg.header_timeout / 4, cfg.idle_timeout / 4))
        while True:
            await asyncio.sleep(interval)
            now = time.monotonic()
            for conn in list(self.active):
                client = conn.client
                if client.head is not None and now - conn.started > cfg.header_timeout:
                    self.refuse(conn, 408, "request head not received in %gs"
                                % cfg.header_timeout)
                elif conn.upstream is not None and now - conn.last > cfg.idle_timeout:
                    conn.why = "idle for %gs" % cfg.idle_timeout
                    conn.abort()

    # -- listening -----------------------------------------------------------------------
    async def listen(self, where, kind, target=None):
        def factory():
            conn = Conn(kind, self)
            conn.target = target
            return Side(conn, False)
        try:
            if where[0] == "unix":
                path = where[1]
                if os.path.lexists(path):
                    if not stat.S_ISSOCK(os.lstat(path).st_mode):
                        raise OSError("exists and is not a socket")
                    os.unlink(path)   # left by a previous run
                srv = await self.loop.create_unix_server(factory, path, backlog=1024)
                # a socket anyone may connect to: the directory, which the deploy controls,
                # gates who can reach it (the agent's relay runs as another user)
                os.chmod(path, 0o666)  # nosec B103
            else:
                srv = await self.loop.create_server(factory, where[1][0], where[1][1],
                                                    backlog=1024, reuse_address=True)
        except OSError as err:
            raise ConfigError("proxy cannot listen on %s: %s"
                              % (describe(where), err.strerror or err))
        return srv


def raise_fd_limit():
    """Each tunnel holds two descriptors: allow as many as the hard limit does."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else 65536
    if soft != resource.RLIM_INFINITY and soft < want:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
        except (OSError, ValueError):
            pass


def reload(server, path):
    """SIGHUP (systemctl reload): the list (allow, ports, expires) from the file again, for
    new connections; open ones stay. Listeners, forwards, the log and the limits change only at
    a restart. A file that does not validate is refused and the list in force stays."""
    try:
        new = load(path)
    except ConfigError as err:
        sys.stderr.write("claw-cage proxy: reload refused, the list in force stays: %s\n" % err)
        return
    server.cfg = server.cfg._replace(**dict((f, getattr(new, f)) for f in RELOADED))
    rest = [f for f in old._fields if getattr(new, f) != getattr(server.cfg, f)]
    sys.stderr.write("claw-cage proxy: reloaded: %d allow-list entries (%d temporary), ports "
                     "%s%s\n" % (len(new.allow), len(new.expires), ",".join(map(str, new.ports)),
                                  "; %s change only at a restart" % ", ".join(rest) if rest
                                  else ""))


async def serve(cfg, path):
    try:
        log = Log(cfg.log)
    except OSError as err:
        raise ConfigError("proxy cannot open its log %s: %s" % (cfg.log, err.strerror or err))
    server = Server(cfg, log)
    listeners = [await server.listen(w, "proxy") for w in cfg.listen]
    listeners += [await server.listen(w, "forward", to) for w, to in cfg.forward]
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        server.loop.add_signal_handler(sig, stop.set)
    server.loop.add_signal_handler(signal.SIGHUP, reload, server, path)
    sweeper = server.loop.create_task(server.sweep())
    names = [describe(w) for w in cfg.listen] + ["%s -> %s" % (describe(w), describe(t))
                                                  for w, t in cfg.forward]
    sys.stderr.write("claw-cage proxy: listening on %s; %d allow-list entries, ports %s\n"
                     % (", ".join(names), len(cfg.allow), ",".join(map(str, cfg.ports))))
    sys.stderr.flush()
    await stop.wait()
    sweeper.cancel()
    for srv in listeners:
        srv.close()
    for conn in list(server.active):
        conn.abort()
    for where in cfg.listen + [w for w, _ in cfg.forward]:
        if where[0] == "unix" and os.path.exists(where[1]):
            os.unlink(where[1])
    await asyncio.sleep(0)


def main(args):
    cfg = load(args.config)
    raise_fd_limit()
    asyncio.run(serve(cfg, args.config))
    return 0
