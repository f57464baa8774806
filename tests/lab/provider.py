"""A stand-in model provider / Bot API / Ollama for the routes' tests: a real HTTP/1.1 server
(keep-alive, Content-Length and chunked request bodies), over TLS with a certificate of a test
CA made here by the openssl CLI, or plain. Every request it receives is appended to a JSON-lines
file (connection id, method, path, headers, body) so a test sees exactly what reached it.

    python3 provider.py LOG ADDRESS:PORT:CERT:KEY ... (CERT "-": plain HTTP)

Paths: /sse?n=N&gap=MS   N server-sent events, one every MS ms (chunked), "aborted" logged
                         when the client side goes away mid-stream
       /stall            the head and one chunk, then silence
       /nohead           silence
       /cut              Content-Length 100000, 1000 bytes, then the connection closes
       /stallbody        Content-Length 100000, 1000 bytes, then silence
       /extra            Content-Length 5, "hello", and in the same write a second answer
                         that no request asked for
       /bulk?n=BYTES[&rate=MB]  BYTES of body (Content-Length), at most MB megabytes a second
                         when rate is given (a link's speed), not logged (the benchmark's)
       anything else     200, JSON {"ok": true}

make_certs(dir, names=NAMES) -> {"ca", "good", "other", "self"}: cert/key paths (good and
self: for names; other: for other.example).
"""

import json
import os
import socket
import ssl
import subprocess
import sys
import threading
import time

NAMES = ("api.anthropic.com", "api.openai.com", "generativelanguage.googleapis.com",
         "api.telegram.org")


def make_certs(d, names=NAMES):
    def run(*argv):
        subprocess.run(["openssl"] + list(argv), check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, cwd=d)

    def cert(name, sans, signer):
        run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", name + ".key", "-out",
            name + ".csr", "-subj", "/CN=" + sans[0])
        with open(os.path.join(d, name + ".ext"), "w") as f:
            f.write("subjectAltName=" + ",".join("DNS:" + s for s in sans) + "\n")
        if signer:
            run("x509", "-req", "-in", name + ".csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                "-CAcreateserial", "-days", "2", "-out", name + ".pem", "-extfile", name + ".ext")
        else:
            run("x509", "-req", "-in", name + ".csr", "-signkey", name + ".key", "-days", "2",
                "-out", name + ".pem", "-extfile", name + ".ext")
        return os.path.join(d, name + ".pem"), os.path.join(d, name + ".key")
    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
        "-days", "2", "-subj", "/CN=claw-cage test CA")
    return {"ca": os.path.join(d, "ca.pem"), "good": cert("good", list(names), True),
            "other": cert("other", ["other.example"], True),
            "self": cert("self", list(names), False)}


def main():
    log_path, lock, ids = sys.argv[1], threading.Lock(), iter(range(1 << 30))

    def record(**entry):
        with lock, open(log_path, "a") as f:
            f.write(json.dumps(entry) + "\n")

    def body_of(f, hdrs):
        if hdrs.get("transfer-encoding", "").lower() == "chunked":
            out = b""
            while True:
                n = int(f.readline().split(b";")[0], 16)
                if not n:
                    while f.readline() not in (b"\r\n", b""):
                        pass
                    return out
                out += f.read(n)
                f.read(2)
        return f.read(int(hdrs.get("content-length", "0")))

    def handle(c, port):
        cid = next(ids)
        f = c.makefile("rb")
        try:
            while True:
                line = f.readline()
                if not line:
                    return
                if not line.endswith(b" HTTP/1.1\r\n"):   # a TLS hello to a plain server
                    c.sendall(b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n")
                    return
                method, target, _v = line.decode("latin-1").split(" ", 2)
                fields = []
                while True:
                    h = f.readline().decode("latin-1")
                    if h in ("\r\n", ""):
                        break
                    k, _, v = h.partition(":")
                    fields.append([k, v.strip()])
                hdrs = {k.lower(): v for k, v in fields}
                body = body_of(f, hdrs)
                if target.startswith("/bulk?n="):
                    q = dict(p.split("=") for p in target[6:].split("&"))
                    n, rate = int(q["n"]), float(q.get("rate", 0)) * 1e6
                    c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % n)
                    block, sent, started = b"x" * 65536, 0, time.monotonic()
                    while sent < n:
                        c.sendall(block[:min(n - sent, 65536)])
                        sent += 65536
                        ahead = rate and started + sent / rate - time.monotonic()
                        if ahead and ahead > 0:
                            time.sleep(ahead)
                    continue
                record(conn=cid, port=port, method=method, target=target, headers=fields,
                       body=body.decode("latin-1"))
                path, _, query = target.partition("?")
                if path.endswith("/sse"):
                    q = dict(p.split("=") for p in query.split("&"))
                    c.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                              b"Transfer-Encoding: chunked\r\n\r\n")
                    try:
                        for i in range(int(q["n"])):
                            ev = b"data: event %d %f\n\n" % (i, time.time())
                            c.sendall(b"%x\r\n%s\r\n" % (len(ev), ev))
                            time.sleep(int(q["gap"]) / 1000.0)
                        c.sendall(b"0\r\n\r\n")
                    except OSError:
                        record(conn=cid, aborted=True)
                        return
                elif path.endswith("/stall"):
                    c.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n")
                    time.sleep(60)
                    return
                elif path.endswith("/nohead"):
                    time.sleep(60)
                    return
                elif path.endswith("/stallbody"):
                    c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + b"x" * 1000)
                    time.sleep(60)
                    return
                elif path.endswith("/extra"):
                    c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"
                              b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nsmuggled")
                elif path.endswith("/cut"):
                    c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + b"x" * 1000)
                    return
                else:
                    out = b'{"ok": true}'
                    c.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                              b"Content-Length: %d\r\n\r\n%s" % (len(out), out))
        except (OSError, ValueError):
            pass
        finally:
            c.close()

    def serve(s, ctx, port):
        while True:
            c, _ = s.accept()
            # as real API servers do: without it, a small answer written after TLS 1.3's
            # session tickets waits for the client's delayed ACK (40 ms), direct or proxied
            c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def run(c=c):
                try:
                    if ctx:
                        c.settimeout(10)
                        c = ctx.wrap_socket(c, server_side=True)
                        c.settimeout(None)
                except (OSError, ssl.SSLError):
                    c.close()
                    return
                handle(c, port)
            threading.Thread(target=run, daemon=True).start()

    for spec in sys.argv[2:]:
        addr, port, cert, key = spec.rsplit(":", 3)
        ctx = None
        if cert != "-":
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(cert, key)
        s = socket.socket(socket.AF_INET)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((addr, int(port)))
        s.listen(2048)
        threading.Thread(target=serve, args=(s, ctx, int(port)), daemon=True).start()
    print("ready", flush=True)
    sys.stdin.read()


if __name__ == "__main__":
    main()
