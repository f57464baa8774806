"""Moving bytes: one Conn per client connection, one Side (an asyncio Protocol) per socket.

Once linked, where Python has os.splice (3.10+ on Linux), a Pump per direction moves the
bytes socket -> pipe -> socket inside the kernel: they never enter Python, which on a busy
host is the difference between a proxy that keeps up and one that halves the throughput
(tests/bench/bench_proxy.py). The pumps use duplicates of the sockets' descriptors (asyncio
will not share a descriptor with a transport); the transports stay paused until the end.
CLAW_CAGE_PROXY_COPY=1 in the environment keeps the copying path (the tests run both).

Otherwise, protocols rather than streams: a chunk read on one side is handed to the other
side's transport.write at once, and flow control is the transports' own: when one side's
send buffer passes its high-water mark, the other side stops reading until it drains.
Memory per tunnel is bounded by those buffers (or by the two pipes) whatever the peers do.

Half-close is passed through (an EOF from one side becomes an EOF to the other); the tunnel
is closed when both directions have ended, or either side is lost, or it has been idle too
long (each connection's own Timer).
"""

import asyncio
import errno
import fcntl
import os
import socket
import time

# A side stops the other from reading once this much waits to be sent to it: big enough that
# a fast transfer does not stall on it, small enough that 1,000 stalled tunnels stay small.
WRITE_HIGH = 128 * 1024


class Timer:
    """Calls expire() once `seconds` pass without a touch(): one timer per connection, re-armed
    only when it fires (a touch just notes the time), so moving bytes costs nothing here.
    Never touched, it is a deadline."""

    def __init__(self, loop, seconds, expire):
        self.loop, self.seconds, self.expire = loop, seconds, expire
        self.last = loop.time()
        self.handle = loop.call_later(seconds, self.check)

    def touch(self):
        self.last = self.loop.time()

    def check(self):
        left = self.last + self.seconds - self.loop.time()
        if left > 0:
            self.handle = self.loop.call_later(left, self.check)
        else:
            self.expire()

    def cancel(self):
        self.handle.cancel()


class Tunnels:
    """What every tunnel shares: the loop, the idle timeout, and whether splice works here
    (it starts on where Python has it, unless CLAW_CAGE_PROXY_COPY=1)."""

    def __init__(self, loop, idle_timeout):
        self.loop, self.idle_timeout = loop, idle_timeout
        self.splice = hasattr(os, "splice") and not os.environ.get("CLAW_CAGE_PROXY_COPY")


class Conn:
    """One client connection and, once connected, its upstream. Whoever accepts it sets
    `receive` (the client's bytes before the link) and `ended` (called once, at the end)."""

    def __init__(self, tunnels, kind, accepted):
        self.tunnels, self.kind, self.accepted = tunnels, kind, accepted
        self.receive = self.ended = None
        self.started = time.monotonic()
        self.name = self.address = None
        self.verdict, self.why = "closed-early", ""
        self.up = self.down = 0
        self.client = self.upstream = self.timer = None
        self.eofs = 0
        self.pumps = []
        self.done = False
        self.task = None   # what decides, connects or serves it

    def arm(self, seconds, expire):
        """The connection's one timer (the head's deadline, then the tunnel's idle timeout)."""
        if self.timer is not None:
            self.timer.cancel()
        self.timer = Timer(self.tunnels.loop, seconds, expire)

    def idle(self):
        self.why = "idle for %gs" % self.tunnels.idle_timeout
        self.abort()

    def link(self, upstream, early=b""):
        """Join the client to its connected upstream and start moving bytes."""
        self.upstream = upstream
        client = self.client
        client.peer, upstream.peer = upstream, client
        self.arm(self.tunnels.idle_timeout, self.idle)
        if early:
            self.up += len(early)
            upstream.transport.write(early)
        if self.tunnels.splice and not (client.transport.get_write_buffer_size()
                                        or upstream.transport.get_write_buffer_size()):
            upstream.transport.pause_reading()
            try:
                c, u = _dup(client), _dup(upstream)
            except OSError:   # a side closed between its connect and here: nothing to relay
                return self.abort()
            self.pumps = [Pump(self, c, u, True), Pump(self, u, c, False)]
        else:
            client.transport.resume_reading()

    def copy_instead(self):
        """splice refused here (a seccomp filter, an odd socket) before a byte moved: from now
        on every tunnel copies through Python."""
        self.tunnels.splice = False
        pumps, self.pumps = self.pumps, []
        for pump in pumps:
            pump.release()
        self.client.transport.resume_reading()
        self.upstream.transport.resume_reading()

    def end_pumps(self, clean):
        """Both directions ended (clean), or one failed: release the pumps, close the sides."""
        pumps, self.pumps = self.pumps, []
        for pump in pumps:
            pump.release()
        if pumps:
            for side in (self.client, self.upstream):
                if clean:
                    side.transport.close()
                else:
                    side.transport.abort()

    def abort(self):
        self.timer and self.timer.cancel()
        self.end_pumps(False)
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
            self.timer and self.timer.cancel()
            self.ended(self)


class Side(asyncio.Protocol):
    """One socket of a connection. upstream=False: the client's, whose bytes go to
    conn.receive until the connection is linked."""

    def __init__(self, conn, upstream):
        self.conn, self.is_upstream = conn, upstream
        self.transport = self.peer = None
        self.lost = False

    def connection_made(self, transport):
        self.transport = transport
        transport.set_write_buffer_limits(WRITE_HIGH)
        if not self.is_upstream:
            self.conn.client = self
            self.conn.accepted(self.conn)

    def data_received(self, data):
        conn = self.conn
        if self.peer is not None:
            conn.timer.touch()
            if self.is_upstream:
                conn.down += len(data)
            else:
                conn.up += len(data)
            self.peer.transport.write(data)
        elif conn.receive is not None:
            conn.receive(data)

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


class Pump:
    """One direction of a linked tunnel, in the kernel: src socket -> pipe -> dst socket.
    Reads only when the pipe is empty, so at most one pipe's worth waits per direction."""

    FLAGS = getattr(os, "SPLICE_F_MOVE", 0) | getattr(os, "SPLICE_F_NONBLOCK", 0)

    def __init__(self, conn, src, dst, up):
        self.conn, self.up = conn, up
        self.loop = conn.tunnels.loop
        self.src, self.dst = src, dst   # shared with the other direction's pump
        self.r, self.w = os.pipe()
        self.pending = 0
        self.moved = self.big = False
        self.loop.add_reader(self.src.fileno(), self.readable)

    def readable(self):
        conn = self.conn
        try:
            for _ in range(16):   # then let the other connections have the loop
                if not self.pending:
                    n = os.splice(self.src.fileno(), self.w, 1 << 20, flags=self.FLAGS)
                    if not n:
                        return self.eof()
                    if n >= 65536 and not self.big:
                        self.big = self.grow()
                    self.pending, self.moved = n, True
                    conn.timer.touch()
                    if self.up:
                        conn.up += n
                    else:
                        conn.down += n
                if not self.flush():
                    self.loop.remove_reader(self.src.fileno())
                    self.loop.add_writer(self.dst.fileno(), self.writable)
                    return
        except BlockingIOError:
            pass
        except OSError as err:
            if (err.errno in (errno.EINVAL, errno.EPERM, errno.ENOSYS)
                    and not any(p.moved for p in conn.pumps)):
                conn.copy_instead()
            else:
                conn.end_pumps(False)

    def grow(self):
        """A tunnel with a read that fills the pipe carries a bulk transfer: a 1 MiB pipe
        (the kernel's unprivileged maximum) halves the wake-ups per megabyte; 0.6-0.7x of a
        direct copy became 0.8-0.9x on the bench's bare veth. Only such tunnels get one: the
        kernel caps a user's pipe memory (pipe-user-pages-soft, 64 MiB), and past the cap new
        pipes are tiny. Refused (the cap, an old kernel): the tunnel keeps its 64 KiB."""
        try:
            fcntl.fcntl(self.w, getattr(fcntl, "F_SETPIPE_SZ", 1031), 1 << 20)
        except OSError:
            pass
        return True   # tried once: a refusal is not asked again

    def flush(self):
        """Send what waits in the pipe; False when dst cannot take it all now."""
        try:
            while self.pending:
                self.pending -= os.splice(self.r, self.dst.fileno(), self.pending,
                                          flags=self.FLAGS)
        except BlockingIOError:
            return False
        return True

    def writable(self):
        try:
            if self.flush():
                self.loop.remove_writer(self.dst.fileno())
                self.loop.add_reader(self.src.fileno(), self.readable)
        except OSError:
            self.conn.end_pumps(False)

    def eof(self):
        self.loop.remove_reader(self.src.fileno())
        try:
            self.dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        self.conn.eofs += 1
        if self.conn.eofs >= 2:
            self.conn.end_pumps(True)

    def release(self):
        for sock in (self.src, self.dst):
            if sock.fileno() >= 0:
                self.loop.remove_reader(sock.fileno())
                self.loop.remove_writer(sock.fileno())
        self.src.close()   # the other pump's dst: both are released together
        os.close(self.r)
        os.close(self.w)


def _dup(side):
    """A second descriptor of a side's socket, for the pumps (asyncio refuses to watch a
    descriptor a transport owns; the transport keeps the original, paused)."""
    sock = side.transport.get_extra_info("socket")
    return socket.fromfd(sock.fileno(), sock.family, sock.type)


async def connect(loop, conn, target):
    """Open the upstream Side to target: ("unix", path) or ("tcp", (address, port))."""
    factory = lambda: Side(conn, True)  # noqa: E731
    if target[0] == "unix":
        _transport, side = await loop.create_unix_connection(factory, target[1])
    else:
        _transport, side = await loop.create_connection(factory, *target[1])
    return side
