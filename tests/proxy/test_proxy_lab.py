"""The proxy by packets: the BUILT program in a namespace whose /etc/hosts the test writes,
an "internet" (203.0.113.10) and a LAN (192.168.1.10, one address per blocked range) behind
veths, each address served by a server that records every connection it accepts.

Every refusal stands next to a control: the same target reached directly from the proxy's
namespace (the path is open; only the proxy stops it), and the server's record shows that
nothing arrived through the proxy.
"""

import ipaddress
import os
import socket
import time

import pytest

from lab.proxylab import (LAN, RANGE_ADDRS, WAN, WAN2, WAN6, read_head, read_response,
                          unix_client)
from conftest import find_python
from proxy_setup import BLACKHOLE, CONFIG, EMBEDDED, RANGE_NAMES, lab, proxy  # noqa: F401 (fixtures)

SECRET = "s3cr3t-token-4242"


def request(proxy, raw):
    """Send raw bytes to the proxy's unix socket; (status, head, body) once it closes."""
    with unix_client(proxy.sock_path) as s:
        s.sendall(raw)
        return read_response(s)


def get(proxy, url, headers=""):
    return request(proxy, ("GET %s HTTP/1.1\r\nHost: x\r\n%s\r\n" % (url, headers)).encode())


def tunnel(proxy, target):
    """CONNECT target; (status, socket or None)."""
    s = unix_client(proxy.sock_path)
    s.sendall(("CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n" % (target, target)).encode())
    status, _head = read_head(s)
    if status != 200:
        s.close()
        return status, None
    return status, s


def direct(lab, address, port):
    """Control: can the proxy's namespace reach address:port directly? (Returns once the
    server has recorded the connection, so that later counts do not race it.)"""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    before = arrivals(lab, address, settle=0.3)
    s = lab.socket_in(lab.p, family)
    s.settimeout(3)
    try:
        s.connect((address, port))
    except OSError:
        return False
    finally:
        s.close()
    end = time.monotonic() + 5
    while arrivals(lab, address) == before and time.monotonic() < end:
        time.sleep(0.02)
    return True


def arrivals(lab, address, settle=0.0):
    """How many connections the lab's servers accepted on address so far. settle: wait until
    the count has not changed for that long (a server records a connection just after
    accepting it), at most 5 s."""
    address = str(ipaddress.ip_address(address))

    def count():
        return sum(line.split(" ")[0] == address
                   for ns in (lab.p, lab.w, lab.l) for line in lab.accepted(ns))
    n, end = count(), time.monotonic() + 5
    while settle and time.monotonic() < end:
        time.sleep(settle)
        m = count()
        if m == n:
            break
        n = m
    return n


def last_log(proxy, name, timeout=10):
    """The proxy's last log line for name (logged when the connection ends)."""
    end = time.monotonic() + timeout
    while True:
        lines = [l for l in proxy.log_text().splitlines() if " %s:" % name in l or
                 " %s " % name in l]
        if lines or time.monotonic() > end:
            return lines[-1] if lines else ""
        time.sleep(0.05)


# -- allowed ------------------------------------------------------------------------------

def test_connect_allowed_bytes_match(lab, proxy):
    before = arrivals(lab, WAN, settle=0.3)
    status, s = tunnel(proxy, "allowed.test:443")
    assert status == 200
    body = os.urandom(1 << 20)
    with s:
        s.sendall(b"POST /echo HTTP/1.1\r\nHost: allowed.test\r\nContent-Length: %d\r\n\r\n"
                  % len(body) + body)
        st, _h, back = read_response(s)
    assert st == 200 and back == body
    assert arrivals(lab, WAN) == before + 1
    line = last_log(proxy, "allowed.test")
    assert "allowed.test:443 %s:443 allowed" % WAN in line, line
    up, down = [int(w.split("=")[1]) for w in line.split() if w[:3] in ("up=", "dow")]
    assert up >= len(body) and down >= len(body), line


def test_copy_path_moves_the_same_bytes(lab, pyz):
    """Where Python has no os.splice (3.8, 3.9) tunnels copy through Python: same bytes."""
    other = lab.start_proxy(pyz, {"allow": ["allowed.test"], "ports": [443, 80]}, name="copy",
                            env={"CLAW_CAGE_PROXY_COPY": "1"})
    try:
        test_connect_allowed_bytes_match(lab, other)
        status, _h, body = get(other, "http://allowed.test/bytes/3000000")
        assert status == 200 and body == b"x" * 3000000
    finally:
        other.stop()


def test_splice_refused_by_seccomp_falls_back_to_copying(lab, pyz):
    other = lab.start_proxy(pyz, CONFIG, name="seccomp", no_splice=True)
    try:
        test_connect_allowed_bytes_match(lab, other)
        assert get(other, "http://allowed.test/bytes/300000")[2] == b"x" * 300000
    finally:
        other.stop()


@pytest.mark.parametrize("version", ["3.8", "3.13"])
def test_oldest_and_newest_python_serve_and_refuse_alike(lab, pyz, version):
    """Python 3.8 (no os.splice, older asyncio and ipaddress) and 3.13: the same answers."""
    other = lab.start_proxy(pyz, CONFIG, name="py" + version, python=find_python(version))
    try:
        test_connect_allowed_bytes_match(lab, other)
        assert get(other, "http://allowed.test/bytes/300000")[2] == b"x" * 300000
        for name in ("rebind.test", "nat64.embed.test", "offlist.test"):
            assert request(other, b"CONNECT %s:443 HTTP/1.1\r\n\r\n" % name.encode())[0] == 403
        assert get(other, "http://mapped-public.embed.test/")[0] == 200
    finally:
        other.stop()


def test_plain_http_allowed_and_host_rewritten(lab, proxy):
    status, _h, body = get(proxy, "http://allowed.test/bytes/300000")
    assert status == 200 and body == b"x" * 300000
    status, _h, body = get(proxy, "http://allowed.test/p?q=1", "Host: evil.example\r\n")
    assert status == 200
    assert body == ("hello from %s path=/p?q=1 host=allowed.test\n" % WAN).encode()


def test_unix_listener_is_for_everyone_the_directory_lets_in(lab, proxy):
    assert os.stat(proxy.sock_path).st_mode & 0o777 == 0o666


def test_tcp_listener_and_ipv6_destination(lab, proxy):
    s = lab.socket_in(lab.p)
    s.settimeout(20)
    with s:
        s.connect(("127.0.0.1", 3128))
        s.sendall(b"GET http://v6.test/ HTTP/1.1\r\nHost: v6.test\r\n\r\n")
        status, _h, body = read_response(s)
    assert status == 200 and body.startswith(("hello from %s " % WAN6).encode())


def test_wildcard_is_subdomains_only(lab, proxy):
    assert tunnel(proxy, "a.wild.test:443")[0] == 200
    before = arrivals(lab, WAN, settle=0.3)
    status, _h, body = get(proxy, "http://wild.test/")
    assert status == 403 and b"name not on the allow list" in body
    assert arrivals(lab, WAN) == before


# -- refused ------------------------------------------------------------------------------

def test_off_list_refused(lab, proxy):
    assert direct(lab, WAN, 443), "control: the internet server must be reachable directly"
    before = arrivals(lab, WAN, settle=0.3)
    for raw in (b"CONNECT offlist.test:443 HTTP/1.1\r\n\r\n",
                b"GET http://offlist.test/ HTTP/1.1\r\nHost: offlist.test\r\n\r\n"):
        status, _h, body = request(proxy, raw)
        assert status == 403 and body == b"claw-cage proxy: name not on the allow list\n"
    assert arrivals(lab, WAN) == before
    assert "offlist.test:443 - refused-403" in last_log(proxy, "offlist.test")


@pytest.mark.parametrize("name", ["rebind.test", "mixed.test"])
def test_rebinding_refused(lab, proxy, name):
    assert direct(lab, LAN, 443), "control: the LAN server must be reachable directly"
    before = arrivals(lab, LAN, settle=0.3), arrivals(lab, WAN, settle=0.3)
    status, _h, body = request(proxy, b"CONNECT %s:443 HTTP/1.1\r\n\r\n" % name.encode())
    assert status == 403 and b"resolves to a blocked address" in body, body
    assert (arrivals(lab, LAN), arrivals(lab, WAN)) == before


def test_literal_ip_refused_unless_listed(lab, proxy):
    assert direct(lab, WAN, 443)
    before = arrivals(lab, WAN, settle=0.3)
    for target in (WAN + ":443", "[::ffff:%s]:443" % WAN, "[%s]:443" % WAN6):
        status, _h, body = request(proxy, b"CONNECT %s HTTP/1.1\r\n\r\n" % target.encode())
        assert status == 403 and b"IP address not on the allow list" in body, target
    assert arrivals(lab, WAN) == before
    status, _h, body = get(proxy, "http://%s/" % WAN)
    assert status == 403
    # listed: reached, by CONNECT and plain HTTP
    status, s = tunnel(proxy, WAN2 + ":443")
    assert status == 200
    s.close()
    status, _h, body = get(proxy, "http://%s/" % WAN2)
    assert status == 200 and body.startswith(("hello from %s " % WAN2).encode())


@pytest.mark.parametrize("cidr", sorted(RANGE_ADDRS))
def test_every_blocked_range_refused(lab, proxy, cidr):
    address, name = RANGE_ADDRS[cidr], RANGE_NAMES[cidr]
    reachable = direct(lab, address, 443)
    before = arrivals(lab, address, settle=0.3)
    status, _h, body = request(proxy, b"CONNECT %s:443 HTTP/1.1\r\n\r\n" % name.encode())
    assert status == 403 and b"resolves to a blocked address" in body, (cidr, body)
    assert arrivals(lab, address) == before
    # the lab routes every range that can be routed: their refusal is proven against an open path
    if cidr not in ("224.0.0.0/4", "255.255.255.255/32", "fe80::/10", "ff00::/8", "0.0.0.0/8"):
        assert reachable, "control: %s (%s) must be reachable directly" % (address, cidr)


@pytest.mark.parametrize("name", sorted(EMBEDDED))
def test_ipv6_forms_embedding_a_lan_address_refused(lab, proxy, name):
    before = arrivals(lab, LAN, settle=0.3)
    status, _h, body = request(proxy, b"CONNECT %s:443 HTTP/1.1\r\n\r\n" % name.encode())
    assert status == 403 and b"inside" in body and b"192.168.0.0/16" in body, body
    assert arrivals(lab, LAN) == before


def test_ipv4_mapped_public_address_is_judged_by_the_address_inside(lab, proxy):
    # control for the above: the same form around the internet address goes through
    status, _h, body = get(proxy, "http://mapped-public.embed.test/")
    assert status == 200 and body.startswith(("hello from %s " % WAN).encode()), body


def test_port_not_allowed_refused(lab, proxy):
    assert direct(lab, WAN, 8443)
    before = arrivals(lab, WAN, settle=0.3)
    status, _h, body = request(proxy, b"CONNECT allowed.test:8443 HTTP/1.1\r\n\r\n")
    assert status == 403 and body == b"claw-cage proxy: port 8443 not allowed\n"
    status, _h, _b = get(proxy, "http://allowed.test:8443/")
    assert status == 403
    assert arrivals(lab, WAN) == before


def test_port_80_only_when_asked(lab, pyz):
    other = lab.start_proxy(pyz, {"allow": ["allowed.test"]}, name="default-ports")
    try:
        status, _h, body = get(other, "http://allowed.test/")
        assert status == 403 and b"port 80 not allowed" in body
        status, s = tunnel(other, "allowed.test:443")
        assert status == 200
        s.close()
    finally:
        other.stop()


def test_unresolvable_name_is_502(lab, proxy):
    status, _h, body = request(proxy, b"CONNECT missing.test:443 HTTP/1.1\r\n\r\n")
    assert status == 502 and body == b"claw-cage proxy: cannot resolve missing.test\n"


def test_connect_failure_is_502(lab, proxy):
    # allowed.test:9 is listed, and nothing listens there
    status, _h, body = request(proxy, b"CONNECT allowed.test:9 HTTP/1.1\r\n\r\n")
    assert status == 502 and body == b"claw-cage proxy: cannot connect to allowed.test:9\n"


def test_silent_addresses_are_502_after_connect_timeout(lab, pyz):
    for a in BLACKHOLE:
        lab.sh(lab.w, "ip route add blackhole %s" % a)
        lab.sh(lab.p, "ip route add %s via 198.51.100.2" % a)
    other = lab.start_proxy(pyz, {"allow": ["slow.test"], "connect_timeout": 1}, name="slow")
    try:
        status, _h, body = request(other, b"CONNECT slow.test:443 HTTP/1.1\r\n\r\n")
        assert status == 502 and body == b"claw-cage proxy: cannot connect to slow.test:443\n"
    finally:
        other.stop()


# -- the log ------------------------------------------------------------------------------

def test_log_never_holds_headers_query_or_credentials(lab, proxy):
    headers = ("Proxy-Authorization: Basic %s\r\nAuthorization: Bearer %s\r\nCookie: c=%s\r\n"
               % (SECRET, SECRET, SECRET))
    status, _h, body = get(proxy, "http://allowed.test/x?token=%s" % SECRET, headers)
    assert status == 200 and SECRET.encode() in body   # the query reached the server...
    with unix_client(proxy.sock_path) as s:
        s.sendall(("CONNECT allowed.test:443 HTTP/1.1\r\n%s\r\n" % headers).encode())
        assert read_head(s)[0] == 200
    status, _h, _b = get(proxy, "http://offlist.test/?token=%s" % SECRET, headers)
    assert status == 403
    time.sleep(0.5)
    log = proxy.log_text()
    assert SECRET not in log and "token" not in log and "Bearer" not in log   # ...not the log
    assert "Authorization" not in log and "/x" not in log
    for line in log.splitlines()[1:]:
        fields = line.split()
        assert fields[1] in ("proxy", "forward") and fields[5].startswith("up="), line


def test_one_log_line_per_connection(lab, proxy):
    before = len(proxy.log_text().splitlines())
    for _ in range(5):
        get(proxy, "http://allowed.test/")
        get(proxy, "http://offlist.test/")
    end = time.monotonic() + 10
    while len(proxy.log_text().splitlines()) < before + 10 and time.monotonic() < end:
        time.sleep(0.05)
    time.sleep(0.3)
    assert len(proxy.log_text().splitlines()) == before + 10


# -- the ingress relay ----------------------------------------------------------------------

def test_forward_relays_bytes_to_a_unix_socket(lab, pyz):
    gw_path = os.path.join(lab.tmp, "gateway.sock")
    gw = socket.socket(socket.AF_UNIX)
    gw.bind(gw_path)
    gw.listen(4)
    other = lab.start_proxy(pyz, {"forward": [{"listen": "127.0.0.1:18789",
                                                "to": "unix:" + gw_path}]}, name="forward")
    try:
        c = lab.socket_in(lab.p)
        c.settimeout(10)
        gw.settimeout(10)
        with c:
            c.connect(("127.0.0.1", 18789))
            conn, _ = gw.accept()
            with conn:
                payload = os.urandom(200000)
                c.sendall(payload)
                got = b""
                while len(got) < len(payload):
                    got += conn.recv(65536)
                assert got == payload
                conn.sendall(b"pong")
                assert c.recv(4) == b"pong"
        gw.close()
        os.unlink(gw_path)
        # the gateway gone: the client is closed at once, the log says why
        c = lab.socket_in(lab.p)
        c.settimeout(10)
        with c:
            c.connect(("127.0.0.1", 18789))
            assert c.recv(10) == b""
        assert "cannot-connect" in last_log(other, "forward")
    finally:
        other.stop()
