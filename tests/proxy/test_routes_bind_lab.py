"""The internet profile's routes listen on the claw-cage bridge's own address (172.30.0.1:18790),
which Docker creates. At boot the proxy's unit starts before Docker (Before=docker.service), and
`docker compose down` removes the bridge while the proxy may restart: the proxy must start while
the address does not exist and serve once it is added (IP_FREEBIND on that listener).

By packets in the routes' namespace lab (tests/proxy/test_routes_lab.py's stand-in provider,
test CA and keys): the BUILT proxy starts with routes_listen on an address no interface of its
namespace holds; the address is added afterwards (a bridge named like Docker's); a request
through the route then reaches the stand-in with the real key. A plain bind() fails at the start
("Cannot assign requested address"): the proxy exits and this test fails.
"""

from test_routes_lab import (  # noqa: F401 (fixtures)
    KEY, PLACEHOLDER, Reader, certs, header, lab, last, standin, start)

BRIDGE_ADDR = "172.30.0.1"
PORT = 18790

def _request(lab, path, extra=""):
    s = lab.socket_in(lab.p)
    s.settimeout(20)
    try:
        s.connect((BRIDGE_ADDR, PORT))
        s.sendall(("GET %s HTTP/1.1\r\nHost: %s:%d\r\n%s\r\n"
                   % (path, BRIDGE_ADDR, PORT, extra)).encode())
        return Reader(s).response()
    finally:
        s.close()

def _addresses(lab):
    return lab.sh(lab.p, "ip -4 -o addr show").stdout

def test_the_routes_listener_starts_before_the_bridge_address_exists(lab, pyz, certs,
                                                                      standin):
    assert BRIDGE_ADDR not in _addresses(lab)
    proxy = start(lab, pyz, certs, "freebind",
                  routes_listen=["%s:%d" % (BRIDGE_ADDR, PORT)],
                  routes_clients=["172.30.0.0/24"])
    try:
        assert proxy.proc.poll() is None, proxy.log_text()
        assert "%s:%d (routes" % (BRIDGE_ADDR, PORT) in proxy.log_text()
        lab.sh(lab.p, "ip link add claw-cage0 type bridge && ip addr add %s/24 dev claw-cage0 "
                      "&& ip link set claw-cage0 up" % BRIDGE_ADDR)
        try:
            assert BRIDGE_ADDR in _addresses(lab)
            status, _h, body = _request(lab, "/openai/chat/completions",
                                        "Authorization: Bearer %s\r\n" % PLACEHOLDER)
            assert (status, body) == (200, b'{"ok": true}'), (status, body, proxy.log_text())
            got = last(standin)
            assert got["target"] == "/v1/chat/completions"
            assert header(got, "authorization") == ["Bearer " + KEY]
            # the address goes (docker compose down) and comes back (up): served again
            lab.sh(lab.p, "ip link del claw-cage0")
            lab.sh(lab.p, "ip link add claw-cage0 type bridge && ip addr add %s/24 dev "
                          "claw-cage0 && ip link set claw-cage0 up" % BRIDGE_ADDR)
            assert _request(lab, "/anthropic/v1/models",
                            "x-api-key: %s\r\n" % PLACEHOLDER)[0] == 200
            assert header(last(standin), "x-api-key") == [KEY]
            # only that address: the port on another address of the namespace is closed
            s = lab.socket_in(lab.p)
            s.settimeout(5)
            try:
                refused = s.connect_ex(("127.0.0.1", PORT))
            finally:
                s.close()
            assert refused != 0
        finally:
            lab.sh(lab.p, "ip link del claw-cage0 2>/dev/null || true")
    finally:
        proxy.stop()
    assert proxy.proc.returncode in (0, -15), proxy.log_text()
