"""Names the proxy judges stay the names it looks up and logs: the BUILT program in a lab
namespace whose resolv.conf has a search domain and whose DNS server is a stand-in on the
namespace's 127.0.0.1:53 (tests/lab/dnsstub.py) that records every question.

  - a newline in a name (CONNECT x\\n.y:443) is a malformed request, 400, and one log line;
  - resolv.conf's search domain never expands a judged name: x.wild.test, unknown to DNS,
    is not retried as x.wild.test.corp.test, which the stand-in would answer (the control: a
    plain lookup in the same namespace does expand it, and reaches the WAN server);
  - the host's loopback names open only through an exact entry, never through *.docker.internal.
"""

import socket
import time

import pytest

from conftest import require_root
from lab import proxylab
from lab.dnsstub import DnsStub
from lab.proxylab import WAN, read_head, read_response, unix_client

SEARCH = "corp.test"
CONFIG = {"allow": ["allowed.test", "*.wild.test", "*.docker.internal", "localhost:8443"],
          "ports": [443], "header_timeout": 5, "idle_timeout": 30}


@pytest.fixture(scope="module")
def lab():
    require_root("the proxy's namespace lab")
    resolv = "search %s\nnameserver 127.0.0.1\noptions timeout:1 attempts:1\n" % SEARCH
    with proxylab.ProxyLab([(WAN, "allowed.test")], resolv=resolv) as lab:
        sock = lab.socket_in(lab.p, socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 53))
        lab.dns = DnsStub(sock, {"x.wild.test." + SEARCH: WAN, "y.wild.test": WAN})
        try:
            yield lab
        finally:
            lab.dns.stop()


@pytest.fixture(scope="module")
def proxy(lab, pyz):
    return lab.start_proxy(pyz, CONFIG)


def send(proxy, raw):
    with unix_client(proxy.sock_path) as s:
        s.sendall(raw)
        return read_response(s)


def status(proxy, target):
    with unix_client(proxy.sock_path) as s:
        s.sendall(("CONNECT %s HTTP/1.1\r\nHost: x\r\n\r\n" % target).encode())
        return read_head(s)[0]


def log_lines(proxy):
    return proxy.log_text().splitlines()


def wait_lines(proxy, count, timeout=10):
    end = time.monotonic() + timeout
    while len(log_lines(proxy)) < count and time.monotonic() < end:
        time.sleep(0.05)
    time.sleep(0.3)   # and no more come
    return log_lines(proxy)


@pytest.mark.parametrize("raw", [
    b"CONNECT x\n.wild.test:443 HTTP/1.1\r\nHost: x\r\n\r\n",
    b"CONNECT allowed.test\n:443 HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET http://x\n.wild.test/ HTTP/1.1\r\nHost: x\r\n\r\n",
    b"CONNECT [fe80::1%a\nb]:443 HTTP/1.1\r\nHost: x\r\n\r\n",
], ids=["connect-label", "connect-last", "plain-get", "ipv6-scope"])
def test_a_newline_in_a_name_is_400_and_one_log_line(lab, proxy, raw):
    before = len(log_lines(proxy))
    got, _head, _body = send(proxy, raw)
    assert got == 400
    lines = wait_lines(proxy, before + 1)
    assert len(lines) == before + 1, lines[before:]
    assert " refused-400 " in lines[-1], lines[-1]


def test_control_a_name_without_newline_is_judged(lab, proxy):
    assert status(proxy, "allowed.test:443") == 200          # /etc/hosts still answers
    assert status(proxy, "y.wild.test:443") == 200           # and DNS, for a listed name


def test_search_domain_never_expands_a_judged_name(lab, proxy):
    # the control: in this namespace an ordinary lookup of the same name does expand it
    res = lab.exec(lab.p, [proxylab.PY, "-c", "import socket; print(socket.getaddrinfo('x.wild.test', "
                           "443, type=socket.SOCK_STREAM)[0][4][0])"], check=False)
    assert res.stdout.strip() == WAN, res.stdout + res.stderr
    assert "x.wild.test." + SEARCH in lab.dns.asked
    del lab.dns.asked[:]
    assert status(proxy, "x.wild.test:443") == 502
    assert "x.wild.test" in lab.dns.asked
    assert "x.wild.test." + SEARCH not in lab.dns.asked, lab.dns.asked


@pytest.mark.parametrize("target", ["host.docker.internal:443", "localhost:443"])
def test_loopback_names_only_as_exact_entries(lab, proxy, target):
    """*.docker.internal matches host.docker.internal as a name, yet never opens the host's
    loopback; localhost is listed on 8443 only, so 443 stays shut."""
    assert status(proxy, target) == 403
    assert status(proxy, "localhost:8443") == 200   # the control: the exact entry opens
