"""The listeners: each accepted connection is admitted under its kind's cap (max_conns; past
it a proxy client gets 503, a forward's is closed) and handed to its kind's start; every
connection is logged once when it ends. The routes' listeners hand theirs to routes.py.
SIGHUP reads the routes' keys again."""

import asyncio
import os
import resource
import signal
import socket
import stat
import sys
import time

from . import tunnel
from .config import RELOADED, ConfigError, admitted, describe, load
from .log import Log
from .relay import Conn, Side, Tunnels
from .routes import Routes


class Server:
    def __init__(self, cfg, log):
        self.cfg, self.log = cfg, log
        self.loop = asyncio.get_event_loop()
        self.tunnels = Tunnels(self.loop, cfg.idle_timeout)
        self.open = {"proxy": set(), "forward": set()}

    def admit(self, conn, start):
        """Start conn unless its kind is at the cap."""
        active = self.open[conn.kind]
        if len(active) >= self.cfg.max_conns:
            conn.ended = self.log.line
            if conn.kind == "proxy":
                tunnel.refuse(conn, 503, "too many connections")
            else:
                conn.verdict = "refused-too-many"
                conn.client.transport.close()
            return
        active.add(conn)
        conn.ended = self.finished
        start(conn)

    def finished(self, conn):
        self.open[conn.kind].discard(conn)
        self.log.line(conn)

    def tunnel(self, kind, start):
        """The protocol factory of a listener of the egress side or a forward."""
        return lambda: Side(Conn(self.tunnels, kind, lambda conn: self.admit(conn, start)), False)

    async def listen(self, where, factory, freebind=False):
        """A listener on where. freebind (the routes' TCP address): bound even while the
        address does not exist yet (IP_FREEBIND), and serving once it appears."""
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
            elif freebind:
                srv = await self.loop.create_server(factory, sock=_freebind_socket(*where[1]),
                                                    backlog=1024)
            else:
                srv = await self.loop.create_server(factory, where[1][0], where[1][1],
                                                    backlog=1024, reuse_address=True)
        except OSError as err:
            raise ConfigError("proxy cannot listen on %s: %s"
                              % (describe(where), err.strerror or err))
        return srv

    def close(self):
        for active in self.open.values():
            for conn in list(active):
                conn.abort()


# Linux's IP_FREEBIND (linux/in.h); Python's socket module names it from 3.12 on only.
IP_FREEBIND = getattr(socket, "IP_FREEBIND", 15)


def _freebind_socket(host, port):
    """A TCP socket bound to host:port with IP_FREEBIND, before the address exists. The
    internet profile's routes listen on the claw-cage bridge's own address (172.30.0.1),
    which Docker creates: at boot the proxy starts before Docker (its unit is ordered
    Before=docker.service for api-only's folders), and `docker compose down` removes the
    bridge while the proxy may restart. A plain bind() fails then ("Cannot assign requested
    address"); a bounded retry would race Docker and systemd's start limit. With IP_FREEBIND
    the bind succeeds at once and the kernel delivers connections to it as soon as the
    address is up, and again after the bridge is made anew; only that address is served."""
    info = socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM, 0, socket.AI_PASSIVE)[0]
    sock = socket.socket(info[0], socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_IP, IP_FREEBIND, 1)   # IPv6 sockets take it at SOL_IP too
        sock.bind(info[4])
    except OSError:
        sock.close()
        raise
    return sock


async def peer_gate(cfg, log, where, routes, reader, writer):
    """A TCP routes listener serves the claw-cage network alone (routes_clients). Linux is a
    weak host: a LAN neighbour that routes the bridge's subnet via this host's LAN address
    reaches the bridge's own address through the LAN interface, and the firewall's row for the
    bridge never sees it. Such a peer is closed unanswered (a reset) and logged in one line
    with its address only. A LAN host that forges a source inside the subnet cannot get past
    this either: the SYN-ACK goes to the forged address, on the bridge, so the handshake never
    completes and no request is read (tests/proxy/test_routes_peer_lab.py). A unix socket
    listener has no peer address: its folder's permissions gate it."""
    peer = writer.get_extra_info("peername")
    host = peer[0] if isinstance(peer, tuple) and peer else None
    if admitted(cfg.routes_clients, host):
        return await routes.serve(reader, writer)
    log.write("route", host or "-", describe(where), "refused-peer", 0, 0, time.monotonic(),
              "not in routes_clients (the claw-cage network)")
    writer.transport.abort()


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
    rest = [f for f in new._fields if getattr(new, f) != getattr(server.cfg, f)]
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
    try:
        routes = Routes(cfg, log, server.loop)
    except ValueError as err:
        raise ConfigError("proxy: %s" % err)
    egress = server.tunnel("proxy", lambda c: tunnel.start(c, server.cfg))
    listeners = [await server.listen(w, egress) for w in cfg.listen]
    listeners += [await server.listen(w, server.tunnel(
        "forward", lambda c, to=to: tunnel.forward(c, cfg, to))) for w, to in cfg.forward]
    listeners += [await server.listen(w, lambda w=w: asyncio.StreamReaderProtocol(
        asyncio.StreamReader(limit=cfg.max_header), routes.serve if w[0] == "unix" else
        lambda reader, writer, w=w: peer_gate(cfg, log, w, routes, reader, writer)),
        freebind=True) for w in cfg.routes_listen]
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        server.loop.add_signal_handler(sig, stop.set)
    server.loop.add_signal_handler(signal.SIGHUP, lambda: (reload(server, path),
                                                           routes.reload_keys()))
    names = [describe(w) for w in cfg.listen] + ["%s -> %s" % (describe(w), describe(t))
                                                  for w, t in cfg.forward]
    names += ["%s (routes %s)" % (describe(w), ", ".join(cfg.routes)) for w in cfg.routes_listen]
    sys.stderr.write("claw-cage proxy: listening on %s; %d allow-list entries, ports %s\n"
                     % (", ".join(names), len(cfg.allow), ",".join(map(str, cfg.ports))))
    sys.stderr.flush()
    await stop.wait()
    for srv in listeners:
        srv.close()
    server.close()
    routes.close()
    for where in cfg.listen + [w for w, _ in cfg.forward] + cfg.routes_listen:
        if where[0] == "unix" and os.path.exists(where[1]):
            os.unlink(where[1])
    await asyncio.sleep(0)


def main(args):
    cfg = load(args.config)
    # A judged name is looked up as it is, never with resolv.conf's search domains appended
    # (x.wild.com must not become x.wild.com.corp.lan). A final dot would do it for DNS, but
    # glibc's /etc/hosts lookup then finds nothing; an empty LOCALDOMAIN, which glibc reads
    # instead of resolv.conf's search and domain lines, empties the search list alone.
    os.environ["LOCALDOMAIN"] = ""
    raise_fd_limit()
    asyncio.run(serve(cfg, args.config))
    return 0
