"""Issue 29's --verify rows, with real parts: the gateway's scan (SCAN_JS) run by the real
node on a state folder the test writes, its questions answered by a real HTTP server on
127.0.0.1 that plays the proxy's routes (403 for Ollama's /api/pull, 502 where the provider is
out of reach); and `--verify --json` of the built program never prints a planted key."""

import http.server
import json
import os
import shutil
import subprocess
import sys
import threading

import pytest

from conftest import PYTHON, ROOT

sys.path.insert(0, os.path.join(ROOT, "bootstrap"))
from claw_cage.verify import keys_rows  # noqa: E402
from claw_cage.verify.report import FAIL, PASS, SKIP, WARN  # noqa: E402

NODE = shutil.which("node")
KEY = "sk-ant-planted-verify-777"


class Routes(http.server.BaseHTTPRequestHandler):
    def _answer(self):
        code = {"/ollama/api/pull": 403, "/anthropic/": 401, "/groq/": 502,
                "/ollama/api/version": 200}.get(self.path, 404)
        self.send_response(code)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_POST = _answer

    def log_message(self, *a):
        pass


@pytest.fixture
def routes():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Routes)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()


def scan(home, job):
    env = {"HOME": str(home), "PATH": os.environ["PATH"]}
    proc = subprocess.run([NODE, "-e", keys_rows.SCAN_JS], input=json.dumps(job), env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.mark.skipif(not NODE, reason="NOT RUN: node is missing")
def test_the_scan_finds_a_key_in_the_state_and_names_only_files(tmp_path, routes):
    state = tmp_path / ".openclaw"
    (state / "agents" / "main" / "agent").mkdir(parents=True)
    (state / "sessions").mkdir()
    (state / "sessions" / "s1.jsonl").write_text('{"note": "the key is %s"}\n' % KEY)
    (state / "clean.json").write_text("{}")
    cfg = {"listen": [], "routes": [
        {"name": "anthropic", "upstream": "https://api.anthropic.com", "key": "A", "auth": "x"},
        {"name": "groq", "upstream": "https://api.groq.com", "key": "G", "auth": "bearer"},
        {"name": "ollama", "upstream": "http://127.0.0.1:11434", "key": None, "auth": None}]}
    questions = keys_rows.asks(cfg, "127.0.0.1", routes)
    out = scan(tmp_path, {"values": ["not-there-1", KEY], "asks": [q for _, q in questions]})
    assert KEY not in out
    lines = out.splitlines()
    assert 'state 1 "sessions/s1.jsonl"' in lines and not any("clean" in l for l in lines)
    answers = dict((int(l.split()[1]), l.split(" ", 2)[2]) for l in lines if l[:3] == "ask")
    judged = [keys_rows.judge(check, answers[j]) for j, (check, _) in enumerate(questions)]
    assert [(r.check, r.status) for r in judged] == [
        ("route anthropic", PASS), ("route groq", SKIP), ("route ollama", PASS),
        ("ollama refuses /api/pull", PASS)]
    assert "this host cannot reach the provider" in judged[1].detail


def test_judging_what_the_routes_answer():
    assert keys_rows.judge("ollama refuses /api/pull", "HTTP 200").status == FAIL
    assert keys_rows.judge("CONNECT api.anthropic.com:443 refused", "HTTP 200").status == FAIL
    assert keys_rows.judge("CONNECT api.anthropic.com:443 refused", "HTTP 403").status == PASS
    assert keys_rows.judge("route openai", "ECONNREFUSED").status == FAIL
    assert keys_rows.budget_row({"routes": [{"name": "openai", "key": "O", "auth": "bearer",
                                             "budget": None}]}).status == WARN


def test_configs_row_names_the_file_and_the_key_never_the_value(tmp_path):
    (tmp_path / "openclaw.json").write_text('{"models": {"apiKey": "%s"}}' % KEY)
    row = keys_rows.configs_row(str(tmp_path), [KEY], ["ANTHROPIC_API_KEY"])
    assert row.status == FAIL and "openclaw.json (ANTHROPIC_API_KEY)" in row.detail
    assert KEY not in row.detail


def test_verify_json_never_prints_a_planted_key(pyz, tmp_path):
    d = tmp_path / "claw-cage"
    d.mkdir()
    shutil.copy(os.path.join(ROOT, "deploy", "docker-compose.yml"), str(d))
    (d / ".env").write_text("OPENCLAW_GATEWAY_TOKEN=t0k\nANTHROPIC_API_KEY=%s\n" % KEY)
    (d / "openclaw.json").write_text('{"apiKey": "%s"}' % KEY)   # found, named, not shown
    proc = subprocess.run([PYTHON, pyz, "--verify", "--json", "--dir", str(d)],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, timeout=300)
    assert KEY not in proc.stdout + proc.stderr
    rows = {r["check"]: r for r in json.loads(proc.stdout)}
    assert rows["no key in the OpenClaw configs"]["status"] == "fail"
    assert "ANTHROPIC_API_KEY" in rows["no key in the OpenClaw configs"]["detail"]


def test_the_routes_listener_row_names_the_subnet_it_serves(tmp_path):
    """The internet profile's TCP routes listener serves the claw-cage network alone: PASS
    when routes_clients is the compose file's subnet, FAIL (with what to run) otherwise; no
    row for a unix socket listener (api-only)."""
    d = str(tmp_path)
    shutil.copy(os.path.join(ROOT, "deploy", "docker-compose.yml"), d)
    tcp = {"routes_listen": ["172.30.0.1:18790"]}
    row = keys_rows.listener_row(dict(tcp, routes_clients=["172.30.0.0/24"]), d)
    assert row.status == PASS and "172.30.0.0/24 alone" in row.detail
    for clients in ([], ["0.0.0.0/0"], ["172.30.0.0/24", "192.168.0.0/16"]):
        row = keys_rows.listener_row(dict(tcp, routes_clients=clients), d)
        assert row.status == FAIL and "--firewall" in row.detail, clients
    assert keys_rows.listener_row({"routes_listen": ["unix:/run/r.sock"]}, d) is None
