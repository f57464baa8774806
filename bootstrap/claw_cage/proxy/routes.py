"""The routes: `http://<routes listener>/<name>/<rest>` is served as `<upstream>/<rest>` with
the real key added by the proxy, so the agent holds only a placeholder.

Per request: every credential the client sent goes (Authorization, x-api-key, x-goog-api-key,
api-key, a key= query parameter), the route's key is added in its provider's form; the
upstream is reached by the policy's rules (blocked addresses refused after resolution) over
TLS verified against the host's CA store (name and certificate; a route without a key may be
plain http: the local Ollama). HTTP/1.1 both ways: keep-alive (one upstream connection kept
per client connection), Content-Length and chunked bodies moved as they come (a streamed
answer reaches the agent event by event), Expect: 100-continue answered by the proxy once the
request passed its checks. A Telegram route puts the real token in /bot<token>/ and
/file/bot<token>/ and refuses other paths; a route's `paths` is an exact allow-list (403).
Each request is one line of the log, its budget counted first (429 past it).
"""

import asyncio
import asyncio.sslproto
import collections
import os
import re
import ssl

from .http import CHUNKED, BodyReader, Head, Refused, copy_body, response
from .relay import Timer
from .upstream import connect_any, resolve

CREDENTIALS = ("authorization", "x-api-key", "x-goog-api-key", "api-key")
HOP_BY_HOP = ("connection", "keep-alive", "proxy-authorization", "proxy-connection", "te",
              "upgrade", "trailer", "transfer-encoding", "content-length", "expect", "host")
_TELEGRAM = re.compile(r"(/file)?/bot[^/]*(/.*)\Z")


_SSLProtocol = asyncio.sslproto.SSLProtocol


class _SharedReadBuffer(_SSLProtocol):
    """asyncio's TLS protocol (Python 3.11+) reads the socket into a buffer of its own,
    256 KiB per connection (1,000 streams held 340 MB), and copies what it read into its TLS
    object before the read returns: one buffer shared by every connection does the same job
    (the loop runs one read at a time). A 16 KiB buffer per connection (one TLS record) kept
    the memory but read a streamed answer a record per turn of the loop, most of the proxy's
    work; 256 KiB shared reads all that waits. Before 3.11 the socket transport reads 256 KiB
    into a new bytes object each time, and these attributes do not exist."""

    max_size = 16384   # what __init__ allocates, and each read of decrypted data (a record)

    def __init__(self, *args, **kwargs):
        _SSLProtocol.__init__(self, *args, **kwargs)
        if hasattr(self, "_ssl_buffer"):
            self._ssl_buffer, self._ssl_buffer_view = _SHARED, memoryview(_SHARED)


_SHARED = bytearray(262144)
asyncio.sslproto.SSLProtocol = _SharedReadBuffer


def load_keys(cfg):
    """{variable: value} for every route's key, from systemd's $CREDENTIALS_DIRECTORY or
    keys_dir; ValueError naming the missing one (never a value)."""
    where = os.environ.get("CREDENTIALS_DIRECTORY") or cfg.keys_dir
    keys = {}
    for route in cfg.routes.values():
        if route.key:
            if not where:
                raise ValueError("route %s needs its key %s: no $CREDENTIALS_DIRECTORY and no "
                                 "keys_dir" % (route.name, route.key))
            try:
                with open(os.path.join(where, route.key), encoding="utf-8") as f:
                    keys[route.key] = f.read().strip()
            except (OSError, UnicodeError) as err:
                raise ValueError("route %s: cannot read its key %s in %s: %s" % (
                    route.name, route.key, where, getattr(err, "strerror", None) or err))
            if not keys[route.key] or any(c in keys[route.key] for c in "\r\n/ "):
                raise ValueError("route %s: the key %s is empty or not one token"
                                 % (route.name, route.key))
    return keys


class Budget:
    """Requests per hour and per day, in sliding windows: a request counts for exactly an hour
    (a day) after it was made, so past the budget the route frees up as old requests age out,
    with no one acting. Sliding rather than clock windows: a clock window lets twice the
    budget through around its edge. Memory: one timestamp per counted request, at most the
    budget. Kept in the proxy's memory: a restart (root only) starts it afresh."""

    SPANS = {"hour": 3600, "day": 86400}

    def __init__(self, limits):
        self.windows = [(self.SPANS[k], n, collections.deque()) for k, n in limits.items()]

    def take(self, now):
        """None when the request may go (it is counted), else the reason it may not."""
        for span, n, times in self.windows:
            while times and times[0] <= now - span:
                times.popleft()
            if len(times) >= n:
                return "budget of %d requests per %s used; the next frees up in %d min" % (
                    n, "hour" if span == 3600 else "day", (times[0] + span - now) // 60 + 1)
        for _span, _n, times in self.windows:
            times.append(now)
        return None


class Routes:
    """The routes' shared state: the config, the keys, the budgets, the TLS context."""

    def __init__(self, cfg, log, loop):
        self.cfg, self.log, self.loop = cfg, log, loop
        self.keys = load_keys(cfg)
        self.budgets = {r.name: Budget(r.budget) for r in cfg.routes.values() if r.budget}
        # the host's CA store (SSL_CERT_FILE/SSL_CERT_DIR honoured): name and chain verified;
        # loaded only when there are routes (it costs 2 MB)
        self.tls = ssl.create_default_context() if cfg.routes else None
        self.open = set()

    def reload_keys(self):
        if not any(r.key for r in self.cfg.routes.values()):
            return
        try:
            self.keys = load_keys(self.cfg)
            self.log.write("route", "-", "-", "keys-reloaded", 0, 0, self.loop.time(), "")
        except ValueError as err:
            self.log.write("route", "-", "-", "keys-kept", 0, 0, self.loop.time(), str(err))

    async def serve(self, reader, writer):
        """One client connection: requests one after another while both sides keep it."""
        if len(self.open) >= self.cfg.max_conns:
            writer.write(response(503, "too many connections"))
            writer.close()
            return
        conn = Client(self, reader, writer)
        self.open.add(conn)
        try:
            await conn.run()
        finally:
            self.open.discard(conn)
            conn.close()

    def close(self):
        for conn in list(self.open):
            conn.close()


class Client:
    def __init__(self, routes, reader, writer):
        self.routes, self.cfg = routes, routes.cfg
        self.reader, self.writer = reader, writer
        self.up = None   # (route name, reader, writer): the upstream kept alive
        self.timer = self.stalled_for = None
        self.waiting = False   # for the upstream's answer: a stall there is a 504

    def close(self):
        self.writer.transport.abort()
        self.drop_upstream()
        if self.timer:
            self.timer.cancel()

    def drop_upstream(self):
        if self.up:
            self.up[2].transport.abort()
            self.up = None

    def stalled(self):
        self.stalled_for = self.cfg.idle_timeout
        self.drop_upstream()
        if not self.waiting:
            self.close()

    async def run(self):
        first = True
        while True:
            try:
                data = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"),
                                              self.cfg.header_timeout)
            except asyncio.LimitOverrunError:
                return self.refuse(431, "request head larger than %d bytes"
                                   % self.cfg.max_header)
            except asyncio.TimeoutError:
                if first:
                    self.refuse(408, "request head not received in %gs"
                                % self.cfg.header_timeout)
                return
            except (asyncio.IncompleteReadError, ConnectionError):
                return
            first = False
            if not await self.request(data):
                return

    def refuse(self, status, reason):
        self.writer.write(response(status, reason))

    async def request(self, data):
        """One request: True when the connection may carry the next."""
        loop = self.routes.loop
        started, self.stalled_for, self.waiting = loop.time(), None, False
        name, method, path, status, why = "-", "-", "-", 0, ""
        counts = [0, 0, 0]   # body bytes up, down; the status once the answer began
        keep = False
        self.timer = Timer(loop, self.cfg.idle_timeout, self.stalled)
        try:
            try:
                head = Head.parse(data)
            except ValueError as err:
                raise Refused(400, str(err))
            method, target = head.first[:2]
            length = head.length()
            if method == "CONNECT" or not target.startswith("/"):
                raise Refused(400, "a route is asked as /NAME/PATH")
            _, name, rest = (target.split("?", 1)[0] + "/").split("/", 2)
            query = target.partition("?")[2]
            path = "/%s/%s" % (name, rest[:-1])
            route = self.cfg.routes.get(name)
            if route is None:
                name = "-"
                raise Refused(404, "no route named %s" % target.split("/")[1][:40])
            upath = "/" + rest[:-1]
            if route.auth == "telegram-path":
                m = _TELEGRAM.match(upath)
                if not m:
                    raise Refused(403, "the telegram route serves /bot<token>/ and "
                                       "/file/bot<token>/ only")
                path = "/%s%s/bot<token>%s" % (name, m.group(1) or "", m.group(2))
                upath = "%s/bot%s%s" % (m.group(1) or "", self.routes.keys[route.key],
                                        m.group(2))
            if route.paths is not None and upath not in route.paths:
                raise Refused(403, "route %s does not serve %s" % (name, upath))
            budget = self.routes.budgets.get(name)
            over = budget and budget.take(loop.time())
            if over:
                raise Refused(429, "route %s: %s" % (name, over))
            if length is not None and length > self.cfg.max_body:
                raise Refused(413, "request body larger than %d bytes" % self.cfg.max_body)
            status, keep = await self.forward(route, head, length, upath, query, counts)
        except Refused as err:
            status, why = err.status, err.reason
            self.drop_upstream()
            if not self.writer.transport.is_closing():
                self.refuse(status, err.reason)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError,
                ValueError) as err:
            # after the answer began: nothing more can be said to the client
            self.drop_upstream()
            status, keep = counts[2], False
            why = ("no byte either way for %gs" % self.stalled_for if self.stalled_for
                   else "cut short: %s" % (str(err) if isinstance(err, ValueError)
                                           else type(err).__name__))
        finally:
            self.timer.cancel()
            self.routes.log.write("route", name, "%s %s" % (method, path), str(status),
                                  counts[0], counts[1], started, why)
        return keep

    async def forward(self, route, head, length, upath, query, counts):
        keep_client = head.first[2] == "HTTP/1.1" and "close" not in self.tokens(head)
        expect = head.get("expect", "").lower() == "100-continue"
        head.drop(CREDENTIALS + HOP_BY_HOP + tuple(self.tokens(head)))
        query = "&".join(p for p in query.split("&")
                         if p and p.split("=", 1)[0].lower() != "key")
        target = route.base + upath + ("?" + query if query else "")
        authority = route.host if route.port == (443 if route.scheme == "https" else 80) else (
            "%s:%d" % (route.host, route.port))
        fields = [("Host", authority)] + head.fields
        key = self.routes.keys.get(route.key)
        if route.auth in ("x-api-key", "x-goog-api-key", "api-key"):
            fields.append((route.auth, key))
        elif route.auth == "bearer":
            fields.append(("Authorization", "Bearer " + key))
        if length == CHUNKED:
            fields.append(("Transfer-Encoding", "chunked"))
        elif length:
            fields.append(("Content-Length", str(length)))
        out = Head([head.first[0], target, "HTTP/1.1"], fields).encode()
        up_reader, up_writer = await self.upstream(route)
        if expect and length:
            self.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        up_writer.write(out)
        try:
            counts[0] = await copy_body(self.reader, up_writer, length or 0, self.timer.touch,
                                        self.cfg.max_body)
        except ValueError as err:
            raise Refused(400, str(err))
        except asyncio.LimitOverrunError:
            raise Refused(400, "a chunk size line too long")
        self.waiting = True
        while True:   # interim answers (103 Early Hints) are dropped
            try:
                resp = Head.parse(await up_reader.readuntil(b"\r\n\r\n"), request=False)
                rlen = resp.length()
            except (ValueError, Refused, asyncio.LimitOverrunError):
                raise Refused(502, "the upstream sent a malformed or ambiguous response head")
            except (asyncio.IncompleteReadError, ConnectionError):
                if self.stalled_for:
                    raise Refused(504, "the upstream sent nothing for %gs" % self.stalled_for)
                raise Refused(502, "the upstream closed the connection without an answer")
            status = int(resp.first[1])
            if status >= 200 or status == 101:
                break
        self.waiting = False
        if status == 101:
            raise Refused(502, "the upstream switched protocols")
        if head.first[0] == "HEAD" or status in (204, 304):
            rlen = 0
        keep_up = rlen is not None and "close" not in self.tokens(resp)
        keep = keep_client and keep_up
        resp.drop(HOP_BY_HOP[:5] + ("proxy-authenticate",) + tuple(self.tokens(resp)))
        if rlen is None:
            resp.drop(("content-length", "transfer-encoding"))
        if not keep:
            resp.fields.append(("Connection", "close"))
        self.writer.write(resp.encode())
        counts[2] = status
        if rlen == CHUNKED:
            counts[1] = await copy_body(up_reader, self.writer, rlen, self.timer.touch)
        elif rlen != 0:
            try:
                _, reusable = await up_reader.pass_to(self.writer, rlen, self.timer.touch)
            finally:
                counts[1] = up_reader.passed   # what reached the client, also when cut
            keep_up = keep_up and reusable
        if not keep_up:
            self.drop_upstream()
        return status, keep

    @staticmethod
    def tokens(head):
        """The Connection header's options, lowercased (names of more hop-by-hop fields)."""
        return [t.strip().lower() for v in head.values("connection") for t in v.split(",")
                if t.strip()]

    async def upstream(self, route):
        """The kept connection to route's upstream, or a new one (Refused 502/403)."""
        if self.up and self.up[0] == route.name and self.up[1].reusable():
            return self.up[1:]
        self.drop_upstream()
        cfg, loop = self.cfg, self.routes.loop
        name, address, why = route.policy.check_target(route.host, route.port)
        if why:
            raise Refused(403, why)
        tls = self.routes.tls if route.scheme == "https" else None
        ignore = lambda target: None  # noqa: E731 (the log names the route, not addresses)
        addrs = await resolve(loop, name, address, route.port, cfg.connect_timeout, ignore)
        pair = await connect_any(name, addrs, route.port, cfg.connect_timeout,
                                 lambda a, p: _open(a, p, tls, route.host), ignore)
        self.up = (route.name,) + pair
        return pair


async def _open(address, port, tls, host):
    """asyncio.open_connection, with a BodyReader for the upstream's answers."""
    loop = asyncio.get_event_loop()
    reader = BodyReader(limit=65536)
    protocol = asyncio.StreamReaderProtocol(reader)
    try:
        transport, _ = await loop.create_connection(lambda: protocol, address, port, ssl=tls,
                                                    server_hostname=host if tls else None)
        return reader, asyncio.StreamWriter(transport, protocol, reader, loop)
    except ssl.SSLError as err:
        raise Refused(502, "TLS with %s failed: %s" % (host, getattr(
            err, "verify_message", None) or err.reason or err))
    except ConnectionResetError:   # connected, then cut in the handshake
        if tls:
            raise Refused(502, "TLS with %s failed: the server cut the handshake" % host)
        raise
