"""HTTP/1.1 heads: the one parser of the proxy (the CONNECT and plain requests of the egress
side, the routes' requests and their upstreams' responses), and the refusals it answers with.

Strict where leniency lets a second request hide in the first: a field name is a token with no
space before its colon, no folded lines, no bare CR or LF; a body's length is one
Content-Length of digits or `Transfer-Encoding: chunked` alone, never both.
"""

import asyncio
import re

PHRASES = {100: "Continue", 400: "Bad Request", 403: "Forbidden", 404: "Not Found",
           408: "Request Timeout", 413: "Content Too Large", 429: "Too Many Requests",
           431: "Request Header Fields Too Large", 502: "Bad Gateway",
           503: "Service Unavailable", 504: "Gateway Timeout"}
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+\Z")
_DIGITS = re.compile(r"[0-9]{1,18}\Z")
_HEX = re.compile(r"[0-9A-Fa-f]{1,15}\Z")
CHUNKED = -1   # a body's length when it comes in chunks
READ = 262144   # the most one read of a body takes (what asyncio's transports read at once)


class Refused(Exception):
    """A request the proxy answers itself: status and a one-line reason."""

    def __init__(self, status, reason):
        Exception.__init__(self, reason)
        self.status, self.reason = status, reason


def response(status, reason, close=True):
    body = ("claw-cage proxy: %s\n" % reason).encode("ascii", "replace")
    head = "HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n%s\r\n" % (
        status, PHRASES[status], len(body), "Connection: close\r\n" if close else "")
    return head.encode("ascii") + body


def head_end(buf, scanned, limit):
    """Where the head in buf ends (index past its blank line), or -1 while it has not; only
    the bytes after `scanned` are searched again. Refused 431 past limit."""
    end = buf.find(b"\r\n\r\n", max(0, scanned - 3))
    if end < 0 and len(buf) > limit or end + 4 > limit:
        raise Refused(431, "request head larger than %d bytes" % limit)
    return end + 4 if end >= 0 else -1


class Head:
    """A message head: the three parts of its first line and its fields in order."""

    def __init__(self, first, fields):
        self.first, self.fields = first, fields

    @classmethod
    def parse(cls, data, request=True):
        """data: the head's bytes, with or without its blank line. ValueError: malformed."""
        lines = data.decode("latin-1").rstrip("\r\n").split("\r\n")
        if any("\r" in line or "\n" in line for line in lines):
            raise ValueError("a bare CR or LF in the head")
        first = lines[0].split(" ", 2)
        if request:
            ok = len(first) == 3 and _TOKEN.match(first[0]) and " " not in first[2]
        else:
            first += [""] * (3 - len(first))
            ok = _DIGITS.match(first[1]) and len(first[1]) == 3
        if not ok or not first[2 if request else 0].startswith("HTTP/1."):
            raise ValueError("malformed %s line" % ("request" if request else "status"))
        fields = []
        for line in lines[1:]:
            name, colon, value = line.partition(":")
            if not colon or not _TOKEN.match(name):
                raise ValueError("malformed header line")
            fields.append((name, value.strip(" \t")))
        return cls(first, fields)

    def values(self, name):
        return [v for n, v in self.fields if n.lower() == name]

    def get(self, name, default=None):
        found = self.values(name)
        return found[-1] if found else default

    def drop(self, names):
        self.fields = [(n, v) for n, v in self.fields if n.lower() not in names]

    def encode(self):
        lines = [" ".join(self.first)] + ["%s: %s" % f for f in self.fields]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    def length(self):
        """The body's length: bytes, CHUNKED, or None (none given). Refused 400 when the
        framing is ambiguous (what a smuggled request hides in)."""
        te, cl = self.values("transfer-encoding"), self.values("content-length")
        if te:
            if cl:
                raise Refused(400, "Content-Length together with Transfer-Encoding")
            if [t.lower() for t in te] != ["chunked"]:
                raise Refused(400, "a transfer coding other than chunked")
            return CHUNKED
        if len(cl) > 1:
            raise Refused(400, "more than one Content-Length")
        if cl and not _DIGITS.match(cl[0]):
            raise Refused(400, "a Content-Length that is not a number")
        return int(cl[0]) if cl else None


def chunk_size(line):
    """The size of a chunk from its size line (extensions ignored); ValueError when it is not
    hex digits: a length that two parsers could read differently."""
    size = line[:-2].split(b";", 1)[0]
    if not _HEX.match(size.decode("latin-1")):
        raise ValueError("a bad chunk size")
    return int(size, 16)


async def copy_body(reader, writer, length, touch, cap=None):
    """Move one body from a StreamReader to a StreamWriter as it arrives, waiting for the
    writer to drain (so memory holds at most a read and a send buffer): length bytes, CHUNKED
    (sent on re-framed from the sizes read, extensions and trailers dropped), or None: until
    the reader ends. Returns the bytes moved. Refused 413 past cap; ValueError on bad framing;
    asyncio.IncompleteReadError when the sender leaves mid-body."""
    moved = 0
    while length == CHUNKED:
        n = chunk_size(await reader.readuntil(b"\r\n"))
        if cap is not None and moved + n > cap:
            raise Refused(413, "request body larger than %d bytes" % cap)
        if not n:
            for _ in range(64):   # trailers, dropped
                if await reader.readuntil(b"\r\n") == b"\r\n":
                    writer.write(b"0\r\n\r\n")
                    await writer.drain()
                    return moved
            raise ValueError("too many trailer lines")
        writer.write(b"%x\r\n" % n)
        moved += await _copy(reader, writer, n, touch)
        if await reader.readexactly(2) != b"\r\n":
            raise ValueError("a chunk without its CRLF")
        writer.write(b"\r\n")
    if cap is not None and length and length > cap:
        raise Refused(413, "request body larger than %d bytes" % cap)
    return moved + await _copy(reader, writer, length, touch)


async def _copy(reader, writer, n, touch):
    """n bytes (None: until the end) from reader to writer."""
    moved = 0
    while n is None or moved < n:
        data = await reader.read(READ if n is None else min(n - moved, READ))
        if not data:
            if n is None:
                break
            raise asyncio.IncompleteReadError(b"", n - moved)
        touch()
        writer.write(data)
        await writer.drain()
        moved += len(data)
    return moved


class BodyReader(asyncio.StreamReader):
    """The StreamReader of an upstream connection: heads and chunked bodies are read from it
    as from any; pass_to moves a body that needs no re-framing (a Content-Length, or until the
    upstream ends) past its buffer. On a route's streamed download the buffer's copies in and
    out and a task switch per read were most of the proxy's work (0.33x of a direct TLS
    read): here each piece the transport delivers is written to the client at once."""

    _pass = None   # while a body passes: its _Passing
    passed = 0     # the bytes the last pass_to moved, also when it failed

    def feed_data(self, data):
        if self._pass is None:
            return asyncio.StreamReader.feed_data(self, data)
        self._pass.data(data)

    def feed_eof(self):
        asyncio.StreamReader.feed_eof(self)
        if self._pass is not None:
            self._pass.end(None)

    def set_exception(self, exc):
        asyncio.StreamReader.set_exception(self, exc)
        if self._pass is not None:
            self._pass.end(exc)

    def reusable(self):
        """Whether the connection can carry the next request: it has not ended, and holds no
        byte that no request asked for (what a desynchronised upstream would answer with)."""
        return not (self._buffer or self._eof or self._exception)

    async def pass_to(self, out, length, touch):
        """length bytes (None: until the upstream ends) to out, the client's StreamWriter, as
        they arrive; past out's high-water mark the upstream stops reading until out drains.
        Returns (bytes moved, whether this connection can carry another request: not when it
        ended, or sent bytes past the body); self.passed holds the bytes moved, also when it
        raises. asyncio.IncompleteReadError when the upstream leaves mid-body,
        ConnectionError when the client does."""
        body = self._pass = _Passing(self._transport, out, length, touch)
        if length == 0:
            body.end(None)
        try:
            early = bytes(self._buffer)   # what came with the head
            del self._buffer[:]
            if self._paused:   # the buffer had filled: reading resumes for the body
                self._paused = False
                self._transport.resume_reading()
            if early:
                body.data(early)
            if self._eof or self._exception:
                body.end(self._exception)
            while not body.ended:
                if body.paused:
                    await out.drain()
                    body.paused = False
                    self._transport.resume_reading()
                else:
                    body.waiter = asyncio.get_event_loop().create_future()
                    await body.waiter
            if body.paused:   # it ended while paused (TLS before 3.11 reads on after a pause)
                self._transport.resume_reading()
        finally:
            self._pass, self.passed = None, body.moved
        if body.failed:
            raise body.failed
        return body.moved, not body.extra and self.reusable()


class _Passing:
    """One body on its way through BodyReader.pass_to."""

    def __init__(self, transport, out, left, touch):
        self.transport, self.out, self.left, self.touch = transport, out, left, touch
        self.high = out.transport.get_write_buffer_limits()[1]
        self.moved, self.extra, self.failed = 0, False, None
        self.ended = self.paused = False
        self.waiter = None

    def wake(self):
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    def data(self, data):
        if self.ended:
            self.extra = True   # past the body: this upstream cannot be trusted with another
            return
        if self.left is not None:
            if len(data) > self.left:
                data, self.extra = data[:self.left], True
            self.left -= len(data)
        if self.out.transport.is_closing():
            return self.end(ConnectionResetError("the client left"))
        self.touch()
        self.out.write(data)
        self.moved += len(data)
        if self.left == 0:
            self.end(None)
        elif not self.paused and self.out.transport.get_write_buffer_size() > self.high:
            self.paused = True
            self.transport.pause_reading()
            self.wake()

    def end(self, exc):
        """The upstream ended (exc None: cleanly) or the body is complete."""
        if not self.ended:
            self.ended = True
            if exc is None and self.left:
                exc = asyncio.IncompleteReadError(b"", self.left)
            self.failed = exc
            self.wake()
