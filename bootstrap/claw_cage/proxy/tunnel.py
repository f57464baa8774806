"""One client of the egress side, or of a forward: its request head (within header_timeout,
at most max_header bytes), the policy's decision, the upstream connection, then the relay.

A refusal is an HTTP status with a one-line reason: 400 malformed, 403 policy, 408 head too
slow, 431 head too large, 502 cannot resolve or connect, 503 too many connections.
"""

import asyncio

from .config import describe
from .http import Head, Refused, head_end, response
from .policy import split_host_port
from .relay import connect
from .upstream import connect_any, resolve

# never passed upstream: they are for the proxy, or describe the client's own connection
HOP_BY_HOP = ("connection", "keep-alive", "proxy-authorization", "proxy-connection", "host",
              "te", "upgrade", "trailer")


def parse_request(head):
    """Request head -> (host, port, bytes to send upstream: None for CONNECT, else the head
    rewritten for the origin server). ValueError: malformed."""
    head = Head.parse(head)
    method, target, version = head.first
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
    head.first = [method, path if path.startswith("/") else "/" + path, version]
    head.drop(HOP_BY_HOP)
    head.fields = [("Host", authority)] + head.fields + [("Connection", "close")]
    return host, port or 80, head.encode()


def refuse(conn, status, reason):
    conn.verdict, conn.why = "refused-%d" % status, reason
    conn.receive = None
    if conn.timer:
        conn.timer.cancel()
    client = conn.client
    if not client.lost:
        # Closing a socket with unread input resets it, and the client may never see the
        # answer: say it, end our side, read and drop what still comes for 1 s.
        t = client.transport
        t.write(response(status, reason))
        if t.can_write_eof():
            t.write_eof()
        t.resume_reading()
        conn.tunnels.loop.call_later(1.0, t.close)


def start(conn, cfg):
    """Collect the request head, then decide in a task of its own."""
    buf, scanned = bytearray(), [0]

    def receive(data):
        buf.extend(data)
        try:
            end = head_end(buf, scanned[0], cfg.max_header)
        except Refused as err:
            return refuse(conn, err.status, err.reason)
        scanned[0] = len(buf)
        if end > 0:
            conn.receive = None
            conn.timer.cancel()
            conn.client.transport.pause_reading()
            conn.verdict = "undecided"
            conn.task = asyncio.ensure_future(decide(conn, cfg, bytes(buf[:end]),
                                                     bytes(buf[end:])))
    conn.receive = receive
    conn.arm(cfg.header_timeout, lambda: refuse(
        conn, 408, "request head not received in %gs" % cfg.header_timeout))


async def decide(conn, cfg, head, early):
    try:
        try:
            host, port, out = parse_request(head)
            name, address, why = cfg.policy.check_target(host, port)
        except ValueError as err:
            raise Refused(400, str(err).split(":")[0])
        conn.name = describe(("tcp", (name, port)))   # logged as NAME:PORT (--refused reads it)
        if why:
            raise Refused(403, why)
        loop = conn.tunnels.loop
        note = lambda target: setattr(conn, "address", describe(target))  # noqa: E731
        addrs = await resolve(loop, name, address, port, cfg.connect_timeout, note)
        upstream = await connect_any(name, addrs, port, cfg.connect_timeout,
                                     lambda a, p: connect(loop, conn, ("tcp", (a, p))), note)
    except Refused as err:
        return refuse(conn, err.status, err.reason)
    except Exception as err:  # never let one connection take the proxy down
        return refuse(conn, 502, "internal error: %s" % type(err).__name__)
    if conn.client.lost:
        upstream.transport.close()
        return
    conn.verdict = "allowed"
    if out is None:
        conn.client.transport.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        conn.link(upstream, early)
    else:
        conn.link(upstream, out + early)


def forward(conn, cfg, target):
    """A forward: no head, the listener's one destination."""
    conn.name, conn.address = "forward", describe(target)
    conn.client.transport.pause_reading()
    conn.task = asyncio.ensure_future(_forward(conn, cfg, target))


async def _forward(conn, cfg, target):
    loop = conn.tunnels.loop
    try:
        upstream = await asyncio.wait_for(connect(loop, conn, target), cfg.connect_timeout)
    except (OSError, asyncio.TimeoutError):
        conn.verdict = "cannot-connect"
        conn.client.transport.close()
        return
    if conn.client.lost:
        upstream.transport.close()
        return
    conn.verdict = "relayed"
    conn.link(upstream)
