"""The routes' pure parts: the budget's sliding windows (an hour passing cannot run here: the
clock is the one thing given), the routes' config fields as the contract writes them, and the
head parser's framing rules. The packets are in test_routes_lab.py."""

import os
import sys

import pytest

from conftest import ROOT

sys.path.insert(0, os.path.join(ROOT, "bootstrap"))
from claw_cage.proxy import config, http, routes  # noqa: E402

ROUTE = {"name": "anthropic", "upstream": "https://api.anthropic.com",
         "key": "ANTHROPIC_API_KEY", "auth": "x-api-key", "paths": None,
         "budget": {"hour": 2, "day": 3}}


def test_budget_refuses_past_the_hour_then_frees_up_on_its_own():
    b = routes.Budget({"hour": 2, "day": 3})
    assert b.take(0) is None and b.take(10) is None
    why = b.take(20)
    assert "budget of 2 requests per hour used; the next frees up in 60 min" == why
    assert b.take(3599) is not None           # the first still counts
    assert b.take(3600) is None               # an hour after the first: free again
    assert "per day" in b.take(3700 + 3600)   # 3 in the day: the day's window now
    assert b.take(86400 + 10) is None         # a day after the second


def test_routes_config_follows_the_contract():
    cfg = config.validate({"routes": [ROUTE, {"name": "ollama", "upstream":
                                              "http://127.0.0.1:11434", "key": None,
                                              "auth": None, "paths": ["/api/chat"],
                                              "budget": None}],
                           "routes_listen": ["unix:/run/claw-cage/egress/routes.sock",
                                             "172.18.0.1:18790"],
                           "routes_clients": ["172.18.0.0/24"]})
    r = cfg.routes["anthropic"]
    assert (r.scheme, r.host, r.port, r.base, r.auth) == ("https", "api.anthropic.com", 443,
                                                          "", "x-api-key")
    assert cfg.routes["ollama"].port == 11434 and cfg.max_body == 64 << 20
    assert '"routes_listen": []' in config.render(listen=["127.0.0.1:3128"])


@pytest.mark.parametrize("change, why", [
    ({"upstream": "http://api.anthropic.com"}, "needs an https upstream"),
    ({"upstream": "ftp://x"}, "upstream is https://"),
    ({"upstream": "https://user@x"}, "upstream is https://"),
    ({"name": "Bad_Name"}, "[a-z0-9-]+"),
    ({"auth": None}, "go together"),
    ({"auth": "cookie"}, "go together"),
    ({"key": "A-B"}, "go together"),
    ({"paths": ["api/chat"]}, "absolute"),
    ({"budget": {"week": 3}}, "budget is"),
    ({"budget": {"hour": 0}}, "positive"),
    ({"extra": 1}, "each route is"),
])
def test_bad_routes_are_one_line(change, why):
    with pytest.raises(ValueError) as err:
        config.validate({"routes": [dict(ROUTE, **change)], "routes_listen": ["127.0.0.1:1"],
                         "routes_clients": ["127.0.0.0/8"]})
    assert why in str(err.value)


def test_routes_need_a_listener_and_distinct_names():
    with pytest.raises(ValueError, match="routes need routes_listen"):
        config.validate({"routes": [ROUTE], "listen": ["127.0.0.1:1"]})
    with pytest.raises(ValueError, match="two routes"):
        config.validate({"routes": [ROUTE, ROUTE], "routes_listen": ["127.0.0.1:1"],
                         "routes_clients": ["127.0.0.0/8"]})


@pytest.mark.parametrize("listen, clients, why", [
    (["172.30.0.1:18790"], [], "needs routes_clients"),          # a TCP listener serves whom?
    (["unix:/run/r.sock"], ["172.30.0.0/24"], "routes_clients needs one"),
    (["172.30.0.1:18790"], ["172.30.0.1/24"], "CIDR"),           # host bits: not strict
    (["172.30.0.1:18790"], ["172.30.0.0"], "CIDR"),              # no prefix length
    (["172.30.0.1:18790"], ["lan"], "CIDR"),
    (["172.30.0.1:18790"], "172.30.0.0/24", "list of strings"),
    (["172.30.0.1:18790"], [24], "list of strings"),
])
def test_routes_clients_are_strict(listen, clients, why):
    with pytest.raises(ValueError, match=why.replace("(", r"\(")):
        config.validate({"routes": [ROUTE], "routes_listen": listen,
                         "routes_clients": clients})


def test_only_peers_inside_routes_clients_are_admitted():
    nets = config.validate({"routes": [ROUTE], "routes_listen": ["172.30.0.1:18790"],
                            "routes_clients": ["172.30.0.0/24"]}).routes_clients
    assert config.admitted(nets, "172.30.0.2") and config.admitted(nets, "172.30.0.1")
    assert config.admitted(nets, "::ffff:172.30.0.9")          # a dual-stack socket's view
    for peer in ("192.168.1.50", "172.30.1.2", "127.0.0.1", "::1", "fe80::1%eth0", "", None,
                 "not-an-address"):
        assert not config.admitted(nets, peer), peer


@pytest.mark.parametrize("head, length", [
    (b"POST / HTTP/1.1\r\nContent-Length: 5", 5),
    (b"POST / HTTP/1.1\r\nTransfer-Encoding: Chunked", http.CHUNKED),
    (b"GET / HTTP/1.1\r\nHost: x", None),
    (b"POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked", 400),
    (b"POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 5", 400),
    (b"POST / HTTP/1.1\r\nContent-Length: \xb2", 400),   # a digit to str.isdigit, not to HTTP
    (b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked", 400),
])
def test_body_framing(head, length):
    h = http.Head.parse(head)
    if length == 400:
        with pytest.raises(http.Refused):
            h.length()
    else:
        assert h.length() == length


@pytest.mark.parametrize("line", [b"5 \r\n", b"0x5\r\n", b"\r\n", b"+5\r\n", b"5\n\r\n",
                                  b"1" * 16 + b"\r\n"])
def test_bad_chunk_sizes(line):
    with pytest.raises(ValueError):
        http.chunk_size(line)
    assert http.chunk_size(b"1F;name=v\r\n") == 31
