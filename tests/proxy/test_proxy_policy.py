"""The proxy's decisions as pure functions: the allow list (exact, *.suffix, listed literals,
per-entry ports), the blocked addresses (the firewall's own table plus the IPv6 forms that
embed an IPv4 address), the request head parser, and the strict config. The packets that prove
the same are in test_proxy_lab.py."""

import ipaddress
import json
import os
import subprocess
import sys

import pytest

from conftest import ROOT

sys.path.insert(0, os.path.join(ROOT, "bootstrap"))
from claw_cage.firewall import rules  # noqa: E402
from claw_cage.proxy import config, policy, tunnel  # noqa: E402

A = ipaddress.ip_address


def test_every_range_of_the_firewall_table_is_blocked_at_both_ends():
    for family, ranges in rules.SPECIAL_RANGES.items():
        for cidr, _why in ranges:
            net = ipaddress.ip_network(cidr)
            for address in (net[0], net[-1]):
                assert policy.blocked(address), address


@pytest.mark.parametrize("text", [
    "::1", "::", "127.0.0.1", "0.0.0.0", "169.254.169.254", "fd00:ec2::254", "224.0.0.1",
    "ff02::1", "fe80::1", "fec0::1", "100.100.100.200",
    # the IPv6 forms that carry a blocked IPv4 address
    "::ffff:192.168.1.1", "::ffff:127.0.0.1", "::192.168.1.1", "64:ff9b::c0a8:101",
    "64:ff9b::a9fe:a9fe", "2002:c0a8:0101::1", "2002:7f00:1::",
    "2001:0:4136:e378:8000:63bf:3f57:fefe",      # Teredo, client 192.168.1.1 (XOR-ed)
    "2001:0:c0a8:101::1",                        # Teredo, server 192.168.1.1
    "2001:db8::5efe:c0a8:101", "2001:db8::200:5efe:a00:1",   # ISATAP
    "64:ff9b:1::1",                              # local-use NAT64: any mapping
])
def test_blocked(text):
    assert policy.blocked(A(text)), text


@pytest.mark.parametrize("text", [
    "203.0.113.10", "1.1.1.1", "160.79.104.10", "2606:4700::1111", "2001:db8::10",
    # the same forms around a public IPv4 address are judged by it
    "::ffff:1.1.1.1", "64:ff9b::101:101", "2002:101:101::1",
])
def test_not_blocked(text):
    assert policy.blocked(A(text)) is None, text


def test_embedded_ipv4():
    assert policy.embedded_ipv4(A("64:ff9b::c0a8:101")) == [A("192.168.1.1")]
    teredo = policy.embedded_ipv4(A("2001:0:4136:e378:8000:63bf:3f57:fefe"))
    assert teredo == [A("192.168.1.1"), A("65.54.227.120")]   # the client, then the server
    assert policy.embedded_ipv4(A("2606:4700::1111")) == []
    assert policy.embedded_ipv4(A("10.0.0.1")) == []


def test_allow_list():
    p = policy.Policy(["api.anthropic.com", "*.telegram.org", "192.168.1.50:11434",
                       "[fd00::5]:8080", "Example.COM."], [443])
    check = p.check_target
    assert check("api.anthropic.com", 443)[2] is None
    assert check("API.Anthropic.com.", 443)[2] is None
    assert check("api.anthropic.com", 80)[2] == "port 80 not allowed"
    assert check("x.api.anthropic.com", 443)[2] == "name not on the allow list"
    assert check("api.telegram.org", 443)[2] is None
    assert check("a.b.telegram.org", 443)[2] is None
    assert check("telegram.org", 443)[2] == "name not on the allow list"
    assert check("eviltelegram.org", 443)[2] == "name not on the allow list"
    assert check("example.com", 443)[2] is None
    assert check("192.168.1.50", 11434)[:2] == ("192.168.1.50", A("192.168.1.50"))
    assert check("192.168.1.50", 11434)[2] is None
    assert check("192.168.1.50", 443)[2] == "port 443 not allowed"
    assert check("192.168.1.51", 11434)[2] == "IP address not on the allow list"
    assert check("[fd00::5]", 8080)[2] is None
    assert check("fd00::5", 8080)[2] is None
    for bad in ("a..b", "-a.com", "a b", "a.com\r\nx", "1.2.3.999", "[a.com]", "x" * 64 + ".com"):
        with pytest.raises(ValueError):
            check(bad, 443)


@pytest.mark.parametrize("entry", ["*.10.0.0.1", "*", "a.*.com", "a.com:0", "a.com:99999",
                                   "[::1", ""])
def test_bad_allow_entries(entry):
    with pytest.raises(ValueError):
        policy.Policy([entry], [443])


def test_parse_request_rewrites_plain_http():
    head = (b"GET http://user.example:8080/p?q=1 HTTP/1.1\r\nHost: other.example\r\n"
            b"Proxy-Authorization: Basic c2VjcmV0\r\nProxy-Connection: keep-alive\r\n"
            b"Accept: */*")
    host, port, out = tunnel.parse_request(head)
    assert (host, port) == ("user.example", 8080)
    assert out == (b"GET /p?q=1 HTTP/1.1\r\nHost: user.example:8080\r\nAccept: */*\r\n"
                   b"Connection: close\r\n\r\n")
    assert tunnel.parse_request(b"GET http://a.example?x HTTP/1.0")[2].startswith(
        b"GET /?x HTTP/1.0\r\nHost: a.example\r\n")
    assert tunnel.parse_request(b"CONNECT [2001:db8::1]:443 HTTP/1.1\r\nHost: x") == (
        "[2001:db8::1]", 443, None)


@pytest.mark.parametrize("head", [
    b"", b"GET / HTTP/1.1", b"GET https://a.example/ HTTP/1.1", b"CONNECT a.example HTTP/1.1",
    b"GET http://u:p@a.example/ HTTP/1.1", b"GET http://a.example/ HTTP/2",
    b"GET http://a.example/ HTTP/1.1\r\nnocolon", b"GET http://a.example/ HTTP/1.1\r\n folded",
    b"G\x00T http://a.example/ HTTP/1.1", b"GET  http://a.example/ HTTP/1.1",
])
def test_parse_request_refuses_malformed(head):
    with pytest.raises(ValueError):
        tunnel.parse_request(head)


GOOD = {"listen": ["unix:/run/claw-cage/egress/proxy.sock", "127.0.0.1:3128"],
        "allow": ["api.anthropic.com", "*.telegram.org"], "ports": [443],
        "forward": [{"listen": "127.0.0.1:18789", "to": "unix:/run/claw-cage/gateway/gw.sock"}],
        "log": "-", "max_conns": 256, "header_timeout": 10, "idle_timeout": 300}


def test_config_valid():
    c = config.validate(GOOD)
    assert c.listen == [("unix", "/run/claw-cage/egress/proxy.sock"), ("tcp", ("127.0.0.1", 3128))]
    assert c.forward == [(("tcp", ("127.0.0.1", 18789)), ("unix", "/run/claw-cage/gateway/gw.sock"))]
    assert config.validate({"listen": ["[::1]:3128"]}).listen == [("tcp", ("::1", 3128))]


@pytest.mark.parametrize("change", [
    {"lisen": []}, {"listen": "127.0.0.1:3128"}, {"listen": ["127.0.0.1"]},
    {"listen": ["unix:relative.sock"]}, {"allow": ["*.1.2.3.4"]}, {"ports": [0]},
    {"ports": ["443"]}, {"ports": [True]}, {"max_conns": 0}, {"max_conns": 1.5},
    {"header_timeout": -1}, {"idle_timeout": "300"}, {"log": ""},
    {"forward": [{"listen": "127.0.0.1:1"}]}, {"forward": [{"listen": "127.0.0.1:1", "to": "x",
                                                             "extra": 1}]},
    {"listen": [], "forward": []},
])
def test_config_refused(change):
    with pytest.raises(ValueError):
        config.validate(dict(GOOD, **change))


def _run_cli(tmp_path, text):
    path = tmp_path / "proxy.json"
    path.write_text(text)
    env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, "bootstrap"))
    return subprocess.run([sys.executable, "-m", "claw_cage", "--proxy", "--config", str(path)],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, env=env, timeout=60)


@pytest.mark.parametrize("text,words", [
    ('{"listen": ["127.0.0.1:3128"], "allow": [], "colour": 1}', "unknown key 'colour'"),
    ('{"listen": ["127.0.0.1:3128",', "proxy config"),
    ('[]', "must be a JSON object"),
])
def test_cli_bad_config_is_one_line_exit_13(tmp_path, text, words):
    proc = _run_cli(tmp_path, text)
    assert proc.returncode == 13, proc.stderr
    assert words in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_cli_cannot_bind_is_one_line_exit_13(tmp_path):
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    try:
        port = s.getsockname()[1]
        proc = _run_cli(tmp_path, json.dumps({"listen": ["127.0.0.1:%d" % port]}))
    finally:
        s.close()
    assert proc.returncode == 13, proc.stderr
    assert "cannot listen on 127.0.0.1:%d" % port in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_cli_refuses_a_regular_file_where_the_socket_goes(tmp_path):
    plain = tmp_path / "not-a-socket"
    plain.write_text("keep me")
    proc = _run_cli(tmp_path, json.dumps({"listen": ["unix:%s" % plain]}))
    assert proc.returncode == 13 and "is not a socket" in proc.stderr, proc.stderr
    assert plain.read_text() == "keep me"


def test_local_only_a_listed_endpoint_is_the_one_hole_port_exact():
    """local-only's list: HOST:PORT entries and no default port. A listed literal in a blocked
    range (the host's loopback, the LAN) is reached on its port and on no other; the host's
    other spellings, and host.docker.internal unlisted, stay refused."""
    p = policy.Policy(["127.0.0.1:11434", "192.168.1.50:11434"], [])
    check = p.check_target
    assert policy.blocked(A("127.0.0.1")) and policy.blocked(A("192.168.1.50"))  # both ranges
    assert check("127.0.0.1", 11434) == ("127.0.0.1", A("127.0.0.1"), None)
    assert check("192.168.1.50", 11434)[2] is None
    for port in (11435, 22, 443, 80):
        assert check("127.0.0.1", port)[2] == "port %d not allowed" % port
        assert check("192.168.1.50", port)[2] == "port %d not allowed" % port
    for other in ("127.0.0.2", "::1", "::ffff:127.0.0.1", "0.0.0.0", "192.168.1.51"):
        assert check(other, 11434)[2] == "IP address not on the allow list", other
    for name in ("localhost", "host.docker.internal", "api.anthropic.com"):
        assert check(name, 11434)[2] == "name not on the allow list", name
        assert check(name, 443)[2] == "name not on the allow list", name
    with pytest.raises(ValueError):
        check("127.1", 11434)


def test_host_docker_internal_listed_means_the_hosts_loopback():
    """The template of older installs names host.docker.internal: the proxy runs on the host,
    so when listed it is the host's 127.0.0.1, on its port only (the host's resolver does not
    know the name; were it resolved, loopback would be refused)."""
    p = policy.Policy(["host.docker.internal:11434", "localhost:8080"], [443])
    assert p.check_target("host.docker.internal", 11434) == \
        ("host.docker.internal", A("127.0.0.1"), None)
    assert p.check_target("localhost", 8080) == ("localhost", A("127.0.0.1"), None)
    assert p.check_target("host.docker.internal", 443)[2] == "port 443 not allowed"
    assert p.check_target("localhost", 11434)[2] == "port 11434 not allowed"


def test_loopback_names_open_only_through_their_exact_entry():
    """*.docker.internal matches host.docker.internal as a name, but the host's loopback opens
    only through the exact entry and its own ports (the old policy mapped it to 127.0.0.1)."""
    p = policy.Policy(["*.docker.internal", "*.localhost"], [443])
    assert p.check_target("host.docker.internal", 443)[2] == "name not on the allow list"
    assert p.check_target("localhost", 443)[2] == "name not on the allow list"
    assert p.check_target("other.docker.internal", 443)[2] is None   # an ordinary name
    p = policy.Policy(["*.docker.internal", "host.docker.internal:11434"], [443])
    assert p.check_target("host.docker.internal", 443)[2] == "port 443 not allowed"
    assert p.check_target("host.docker.internal", 11434)[1:] == (A("127.0.0.1"), None)


@pytest.mark.parametrize("host", ["x\n.example.com", "example.com\n", "ex\rample.com",
                                  "[fe80::1%eth0]", "[fe80::1%a\nb]"])
def test_a_control_character_or_scope_is_no_host(host):
    with pytest.raises(ValueError):
        policy.parse_host(host)


def test_a_log_line_stays_one_line(tmp_path):
    from claw_cage.proxy import log as plog
    path = str(tmp_path / "log")
    conn = type("C", (), dict(started=0.0, kind="proxy", name="x\n.y", address="-",
                              verdict="refused-400", up=0, down=0, why="bad\r\nline"))()
    plog.Log(path).line(conn)
    text = open(path).read()
    assert text.count("\n") == 1 and "x\\x0a.y" in text and "bad\\x0d\\x0aline" in text
