"""A real HTTP server on 127.0.0.1 serving deploy/, with the faults a download meets.

    with ArtifactServer(ROOT/deploy) as srv:
        srv.url                      # http://127.0.0.1:PORT/deploy
        srv.fault(name, kind)        # make one file misbehave
        srv.requests                 # paths requested so far
        srv.latency = 0.15           # seconds added before each response

Fault kinds, each what a real server or network does:
  404, 500         the status code with a short body
  reset            headers and half the body, then a TCP reset (SO_LINGER 0)
  slow             headers, then nothing for `stall` seconds (longer than the client timeout)
  tamper           the file with one byte changed, status 200
  oversize         a 2 MiB body of a plausible file (Content-Length announced)
  oversize-chunked 2 MiB without Content-Length (the client must cap while reading)
  redirect-http    302 to a plain http:// URL of the same file
"""

import os
import socket
import struct
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"

    def log_message(self, *args):
        pass

    def do_GET(self):
        srv = self.server.owner
        srv.requests.append(self.path)
        if srv.latency:
            time.sleep(srv.latency)
        prefix = "/deploy/"
        if not self.path.startswith(prefix):
            return self._send(404, b"not found\n")
        name = self.path[len(prefix):]
        path = os.path.join(srv.root, name)
        if "/" in name or not os.path.isfile(path):
            return self._send(404, b"not found\n")
        with open(path, "rb") as f:
            body = f.read()
        kind = srv.faults.get(name)
        if kind in ("404", "500"):
            return self._send(int(kind), b"error\n")
        if kind == "tamper":
            body = body[:-1] + bytes([body[-1] ^ 1]) if body else b"x"
        if kind == "oversize":
            return self._send(200, b"# " + b"A" * (2 * 1024 * 1024) + b"\n")
        if kind == "oversize-chunked":
            self.send_response(200)
            self.end_headers()
            for _ in range(64):
                self.wfile.write(b"B" * 32768)
            return
        if kind == "redirect-http":
            self.send_response(302)
            self.send_header("Location", "http://127.0.0.1:%d%s" % (srv.port, self.path))
            self.end_headers()
            return
        if kind == "reset":
            self.send_response(200)
            self.send_header("Content-Length", str(len(body) + 1000))
            self.end_headers()
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                       struct.pack("ii", 1, 0))
            self.connection.close()
            return
        if kind == "slow":
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.flush()
            srv.stalled.set()
            srv.release.wait(srv.stall)
            return
        self._send(200, body)

    def _send(self, code, body):
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class ArtifactServer:
    def __init__(self, root, stall=30.0):
        self.root = root
        self.faults = {}
        self.requests = []
        self.latency = 0.0
        self.stall = stall
        self.stalled = threading.Event()
        self.release = threading.Event()

    def fault(self, name, kind):
        self.faults[name] = kind

    def __enter__(self):
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.httpd.daemon_threads = True
        self.httpd.owner = self
        self.port = self.httpd.server_address[1]
        self.url = "http://127.0.0.1:%d/deploy" % self.port
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()
