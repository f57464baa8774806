"""The proxy's JSON config, /etc/claw-cage/proxy.json: this module owns its format. It
renders the file (--firewall), validates it (the proxy at start, --verify) and holds the
defaults, so nothing can write or pass a file the proxy refuses. An unknown key or a wrong
type is one line.

    {"listen": ["unix:/run/claw-cage/egress/proxy.sock", "127.0.0.1:3128"],
     "allow": ["api.anthropic.com", "*.telegram.org", "192.168.1.50:11434"],
     "ports": [443],
     "forward": [{"listen": "127.0.0.1:18789", "to": "unix:/run/claw-cage/gateway/gateway.sock"}],
     "log": "-",                 "-" = standard error, else a file appended to
     "max_conns": 256,           beyond it a client gets 503 at once
     "header_timeout": 10,       seconds to send the whole request head (slowloris)
     "idle_timeout": 300,        seconds without a byte either way before a tunnel is closed
     "connect_timeout": 10,      seconds to resolve, and again to connect (all addresses)
     "max_header": 16384,        bytes of request head (beyond: 431)
     "expires": {"pypi.org": "2026-12-07T09:00:00Z"},
                                 temporary entries of allow: each stops at its time (UTC);
                                 the time is absolute, so a restart never extends it
     "routes": [{"name": "anthropic", "upstream": "https://api.anthropic.com",
                 "key": "ANTHROPIC_API_KEY", "auth": "x-api-key", "paths": null,
                 "budget": {"hour": 500, "day": 5000}}],
     "routes_listen": ["unix:/run/claw-cage/egress/routes.sock", "172.18.0.1:18790"],
     "routes_clients": ["172.18.0.0/24"],
                                 the networks a TCP routes_listen serves (the claw-cage
                                 network's subnet); any other peer is closed unanswered.
                                 Required with a TCP routes_listen, refused without one
     "keys_dir": null,           without systemd's $CREDENTIALS_DIRECTORY: the keys' folder
     "max_body": 67108864}       bytes of one request's body on a route (beyond: 413)

An address is "unix:/absolute/path", "HOST:PORT" or "[IPv6]:PORT". A route's upstream is
https://HOST[:PORT][/PATH]; http:// only for a route without a key (the local Ollama): a key
never travels in clear. auth says how the key is sent (AUTH); paths, when given, is the exact
list of paths the route serves.
"""

import calendar
import collections
import ipaddress
import json
import re
import time

from ..errors import ClawCageError, EXIT_PROXY
from . import policy

Config = collections.namedtuple(
    "Config", "listen allow ports forward log max_conns header_timeout idle_timeout "
              "connect_timeout max_header expires policy routes routes_listen keys_dir "
              "max_body routes_clients")
Route = collections.namedtuple("Route", "name scheme host port base key auth paths budget policy")

DEFAULTS = {"listen": [], "allow": [], "ports": [443], "forward": [], "log": "-",
            "max_conns": 256, "header_timeout": 10, "idle_timeout": 300, "connect_timeout": 10,
            "max_header": 16384, "expires": {}, "routes": [], "routes_listen": [],
            "routes_clients": [], "keys_dir": None, "max_body": 64 << 20}
STAMP = "%Y-%m-%dT%H:%M:%SZ"
RELOADED = ("allow", "ports", "expires", "policy")   # what SIGHUP changes; the rest: a restart
AUTH = ("x-api-key", "bearer", "x-goog-api-key", "api-key", "telegram-path")
_ROUTE_KEYS = ("name", "upstream", "key", "auth", "paths", "budget")
_UPSTREAM = re.compile(r"(https?)://([^/?#@]+)(/[^?#]*)?\Z")


class ConfigError(ClawCageError):
    exit_code = EXIT_PROXY


def stamp(when):
    """Unix time -> the config's UTC time text."""
    return time.strftime(STAMP, time.gmtime(when))


def when(text):
    """The config's UTC time text -> unix time; ValueError when it is not one."""
    return calendar.timegm(time.strptime(text, STAMP))


def render(**fields):
    """proxy.json text: DEFAULTS with fields over them, every key written out so the file
    shows every setting; validated first (ValueError), so it is a file the proxy accepts."""
    config = dict(DEFAULTS, **fields)
    validate(config)
    return json.dumps(config, indent=2) + "\n"


def parse(text):
    """Config of proxy.json text; ValueError (one line) when the proxy would refuse it."""
    return validate(json.loads(text))


def describe(where):
    """A parsed address as the config writes it: "unix:/path", "host:port", "[v6]:port"."""
    kind, target = where
    if kind == "unix":
        return "unix:" + target
    return ("[%s]:%d" if ":" in target[0] else "%s:%d") % target


def parse_address(text):
    """"unix:/path" -> ("unix", path); "host:port" / "[v6]:port" -> ("tcp", (host, port))."""
    if not isinstance(text, str):
        raise ValueError("an address is a string, not %r" % (text,))
    if text.startswith("unix:"):
        path = text[5:]
        if not path.startswith("/"):
            raise ValueError("unix socket path must be absolute: %r" % text)
        return "unix", path
    host, port = policy.split_host_port(text)
    if port is None:
        raise ValueError("address needs a port: %r" % text)
    return "tcp", (host.strip("[]"), port)


def _number(key, value, integer):
    ok = isinstance(value, int) if integer else isinstance(value, (int, float))
    if not ok or isinstance(value, bool) or value <= 0:
        raise ValueError("%s must be a positive %s" % (key, "integer" if integer else "number"))
    return value


def _strings(key, value):
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError("%s must be a list of strings" % key)
    return value


def _networks(key, value):
    """A list of networks in strict CIDR form ("172.30.0.0/24": no host bits, a prefix
    length given) -> [ipaddress network]; ValueError otherwise."""
    out = []
    for text in _strings(key, value):
        try:
            if "/" not in text:
                raise ValueError(text)
            out.append(ipaddress.ip_network(text, strict=True))
        except ValueError:
            raise ValueError("%s: %r is not a network in CIDR form (172.30.0.0/24)"
                             % (key, text[:60]))
    return out


def admitted(networks, peer):
    """Whether a TCP peer address (text, as getpeername gives it) is inside networks; an
    IPv4-mapped IPv6 peer (::ffff:a.b.c.d) is judged as its IPv4 address."""
    try:
        address = ipaddress.ip_address(peer.split("%", 1)[0])
    except (ValueError, AttributeError):
        return False
    if address.version == 6 and address.ipv4_mapped:
        address = address.ipv4_mapped
    return any(address in net for net in networks)


def _route(r):
    if not isinstance(r, dict) or set(r) - set(_ROUTE_KEYS) or "name" not in r or "upstream" not in r:
        raise ValueError("each route is {%s}, name and upstream required" % ", ".join(_ROUTE_KEYS))
    name = r["name"]
    if not isinstance(name, str) or not re.match(r"[a-z0-9-]{1,40}\Z", name):
        raise ValueError("a route's name is [a-z0-9-]+: %r" % (name,))
    up = _UPSTREAM.match(r["upstream"]) if isinstance(r["upstream"], str) else None
    key, auth, paths, budget = (r.get(k) for k in _ROUTE_KEYS[2:])
    if not up:
        raise ValueError("route %s: upstream is https://HOST[:PORT][/PATH]" % name)
    if (key is None) != (auth is None) or key is not None and (
            not isinstance(key, str) or not re.match(r"[A-Za-z0-9_]+\Z", key) or auth not in AUTH):
        raise ValueError("route %s: key (a variable name) and auth (one of %s) go together"
                         % (name, ", ".join(AUTH)))
    if up.group(1) == "http" and key is not None:
        raise ValueError("route %s: a route with a key needs an https upstream" % name)
    if paths is not None and not all(p.startswith("/") for p in _strings("paths", paths)):
        raise ValueError("route %s: paths are absolute (/api/chat)" % name)
    if budget is not None and (not isinstance(budget, dict) or not budget
                               or set(budget) - {"hour", "day"}):
        raise ValueError('route %s: budget is {"hour": N, "day": N} (either or both)' % name)
    budget = {k: _number("budget " + k, v, True) for k, v in (budget or {}).items()}
    host, port = policy.split_host_port(up.group(2))
    port = port or (443 if up.group(1) == "https" else 80)
    policy.parse_host(host)
    return Route(name, up.group(1), host.strip("[]"), port, (up.group(3) or "").rstrip("/"),
                 key, auth, paths, budget, policy.Policy(["%s:%d" % (host, port)], [port]))


def validate(data):
    """dict from JSON -> Config; ValueError with the reason."""
    if not isinstance(data, dict):
        raise ValueError("the config must be a JSON object")
    unknown = sorted(set(data) - set(DEFAULTS))
    if unknown:
        raise ValueError("unknown key %r (known: %s)" % (unknown[0], ", ".join(sorted(DEFAULTS))))
    c = dict(DEFAULTS, **data)
    listen = [parse_address(a) for a in _strings("listen", c["listen"])]
    ports = c["ports"]
    if not isinstance(ports, list) or not all(
            isinstance(p, int) and not isinstance(p, bool) and 1 <= p <= 65535 for p in ports):
        raise ValueError("ports must be a list of port numbers")
    allow = _strings("allow", c["allow"])
    ends = c["expires"]
    if not isinstance(ends, dict) or not all(k in allow and isinstance(v, str)
                                             for k, v in ends.items()):
        raise ValueError('expires must be {"ENTRY OF allow": "%s", ...}' % stamp(0))
    ends = dict((k, when(v)) for k, v in ends.items())
    rules = policy.Policy(allow, ports, ends)
    forward = []
    if not isinstance(c["forward"], list):
        raise ValueError("forward must be a list")
    for f in c["forward"]:
        if not isinstance(f, dict) or sorted(f) != ["listen", "to"]:
            raise ValueError('each forward is {"listen": ADDRESS, "to": ADDRESS}')
        forward.append((parse_address(f["listen"]), parse_address(f["to"])))
    if not isinstance(c["routes"], list):
        raise ValueError("routes must be a list")
    routes = collections.OrderedDict((r.name, r) for r in map(_route, c["routes"]))
    if len(routes) < len(c["routes"]):
        raise ValueError("two routes with one name")
    routes_listen = [parse_address(a) for a in _strings("routes_listen", c["routes_listen"])]
    if routes and not routes_listen:
        raise ValueError("routes need routes_listen")
    clients = _networks("routes_clients", c["routes_clients"])
    if any(kind == "tcp" for kind, _ in routes_listen) != bool(clients):
        raise ValueError("a TCP routes_listen needs routes_clients (the networks it serves, "
                         "the claw-cage network's subnet), and routes_clients needs one")
    if not listen and not forward and not routes_listen:
        raise ValueError("nothing to listen on: give listen, forward or routes_listen")
    if c["keys_dir"] is not None and not (isinstance(c["keys_dir"], str)
                                          and c["keys_dir"].startswith("/")):
        raise ValueError("keys_dir must be an absolute path or null")
    if not isinstance(c["log"], str) or not c["log"]:
        raise ValueError('log must be "-" or a file path')
    return Config(listen, allow, ports, forward, c["log"],
                  _number("max_conns", c["max_conns"], True),
                  _number("header_timeout", c["header_timeout"], False),
                  _number("idle_timeout", c["idle_timeout"], False),
                  _number("connect_timeout", c["connect_timeout"], False),
                  _number("max_header", c["max_header"], True), ends, rules, routes,
                  routes_listen, c["keys_dir"], _number("max_body", c["max_body"], True),
                  clients)


def load(path):
    """Read and validate the config file; ConfigError (exit 13) with one line."""
    try:
        with open(path, encoding="utf-8") as f:
            return parse(f.read())
    except OSError as err:
        raise ConfigError("proxy config %s: %s" % (path, err.strerror or err))
    except ValueError as err:   # json.JSONDecodeError is one too
        raise ConfigError("proxy config %s: %s" % (path, str(err).splitlines()[0]))
