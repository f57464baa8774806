"""Moving bytes: one Conn per client connection, one Side (an asyncio Protocol) per socket.

Protocols rather than streams: a chunk read on one side is handed to the other side's
transport.write at once (one copy at most), and flow control is the transports' own: when
one side's send buffer passes its high-water mark, the other side stops reading until it
drains. Memory per tunnel is bounded by those buffers whatever the peers do.

Half-close is passed through (an EOF from one side becomes an EOF to the other); the tunnel
is closed when both directions have ended, or either side is lost, or it has been idle too
long (the server's sweeper calls Conn.abort).
"""

import asyncio
import time


class Conn:
    """One client connection and, once connected, its upstream; logged once when it ends."""

    def __init__(self, kind, server):
        self.kind, self.server = kind, server
        self.started = self.last = time.monotonic()
        self.name = self.address = None
        self.verdict, self.why = "closed-early", ""
        self.up = self.down = 0
        self.client = self.upstream = None
        self.eofs = 0
        self.done = self.counted = False
        self.target = self.task = None   # a forward's destination; the deciding task

    def touch(self):
        self.last = time.monotonic()

    def link(self, upstream, early=b""):
        """Join the client to its connected upstream and start moving bytes."""
        self.upstream = upstream
        self.client.peer, upstream.peer = upstream, self.client
        if early:
            self.up += len(early)
            upstream.transport.write(early)
        self.client.transport.resume_reading()

    def abort(self):
        for side in (self.client, self.upstream):
            if side is not None and side.transport is not None:
                side.transport.abort()

    def side_lost(self, side):
        other = side.peer
        if other is not None and other.transport is not None and not other.lost:
            other.transport.close()   # flushes what is buffered for it, then closes
        if side.is_upstream and side is not self.upstream:
            return   # lost before it was linked: the code that connected it reports that
        if self.client.lost and (self.upstream is None or self.upstream.lost) and not self.done:
            self.done = True
            self.server.finished(self)


class Side(asyncio.Protocol):
    """One socket of a connection. upstream=False: the client's; it may start by reading a
    request head (on_head) before it is linked."""

    def __init__(self, conn, upstream):
        self.conn, self.is_upstream = conn, upstream
        self.transport = self.peer = None
        self.lost = False
        self.head = None

    def connection_made(self, transport):
        self.transport = transport
        if not self.is_upstream:
            self.conn.client = self
            self.conn.server.accepted(self.conn)

    def data_received(self, data):
        conn = self.conn
        conn.last = time.monotonic()
        if self.peer is not None:
            if self.is_upstream:
                conn.down += len(data)
            else:
                conn.up += len(data)
            self.peer.transport.write(data)
        elif self.head is not None:
            self.head += data
            conn.server.head_data(conn, self)

    def eof_received(self):
        if self.peer is None:
            return False
        if self.peer.transport.can_write_eof() and not self.peer.lost:
            self.peer.transport.write_eof()
        self.conn.eofs += 1
        if self.conn.eofs >= 2:
            self.transport.close()
            self.peer.transport.close()
        return True

    def connection_lost(self, exc):
        self.lost = True
        self.conn.side_lost(self)

    # flow control: this side cannot send as fast as the other reads
    def pause_writing(self):
        if self.peer is not None:
            self.peer.transport.pause_reading()

    def resume_writing(self):
        if self.peer is not None:
            self.peer.transport.resume_reading()


async def connect(loop, conn, target, timeout):
    """Open the upstream Side to target: ("unix", path) or ("tcp", (address, port))."""
    factory = lambda: Side(conn, True)  # noqa: E731
    if target[0] == "unix":
        coro = loop.create_unix_connection(factory, target[1])
    else:
        coro = loop.create_connection(factory, target[1][0], target[1][1])
    _transport, side = await asyncio.wait_for(coro, timeout)
    return side
