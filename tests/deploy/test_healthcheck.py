"""The compose healthcheck's probe: the same PROBE_JS as --verify's, run in real node against
real HTTP servers on 127.0.0.1."""

import http.server
import os
import shutil
import subprocess
import sys
import threading
import time

import pytest

from compose_support import ROOT, config_for, installed_env


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/slow":
            time.sleep(3)
        status = {"/ok": 200, "/nocontent": 204, "/err": 500, "/redir": 302,
                  "/missing": 404}.get(self.path, 200)
        self.send_response(status)
        if status == 302:
            self.send_header("Location", "/ok")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def http_server():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    yield "http://127.0.0.1:%d" % server.server_address[1]
    server.shutdown()
    server.server_close()


def closed_port():
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def run_probe_js(js, args, timeout=10):
    node = shutil.which("node")
    if not node:
        pytest.fail("node not installed (tests/apt-packages.txt: nodejs)")
    start = time.monotonic()
    r = subprocess.run([node, "-e", js] + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=timeout)
    return r.returncode, time.monotonic() - start


def probe_cases(base):
    # (URL, timeout ms, expected exit code): exit 0 iff a GET answers 2xx in time.
    return [
        (base + "/ok", "3000", 0),
        (base + "/nocontent", "3000", 0),
        (base + "/err", "3000", 1),
        (base + "/missing", "3000", 1),
        (base + "/redir", "3000", 1),       # a redirect is not an answer from /healthz
        (base + "/slow", "500", 1),         # server answers after 3 s: the 0.5 s timeout wins
        ("http://127.0.0.1:%d/" % closed_port(), "3000", 1),
    ]


def healthcheck_js(tmp_path):
    test = config_for(tmp_path, installed_env())["services"]["openclaw"]["healthcheck"]["test"]
    return test[3]


def test_healthcheck_probe_runs_in_real_node(tmp_path, http_server):
    js = healthcheck_js(tmp_path)
    for url, ms, want in probe_cases(http_server):
        rc, took = run_probe_js(js, ["http", url, ms])
        assert rc == want, (url, ms, rc)
        assert took < int(ms) / 1000.0 + 2, (url, took)


def test_healthcheck_js_is_verify_probe_js(tmp_path):
    """One probe protocol, one text: the healthcheck runs --verify's PROBE_JS verbatim."""
    sys.path.insert(0, os.path.join(ROOT, "bootstrap"))
    try:
        from claw_cage.verify.probes import PROBE_JS
    finally:
        sys.path.pop(0)
    assert healthcheck_js(tmp_path) == PROBE_JS
