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
     "expires": {"pypi.org": "2026-12-07T09:00:00Z"}}
                                 temporary entries of allow: each stops at its time (UTC);
                                 the time is absolute, so a restart never extends it

An address is "unix:/absolute/path", "HOST:PORT" or "[IPv6]:PORT".
"""

import calendar
import collections
import json
import time

from ..errors import ClawCageError, EXIT_PROXY
from . import policy

Config = collections.namedtuple(
    "Config", "listen allow ports forward log max_conns header_timeout idle_timeout "
              "connect_timeout max_header expires policy")

DEFAULTS = {"listen": [], "allow": [], "ports": [443], "forward": [], "log": "-",
            "max_conns": 256, "header_timeout": 10, "idle_timeout": 300, "connect_timeout": 10,
            "max_header": 16384, "expires": {}}
STAMP = "%Y-%m-%dT%H:%M:%SZ"
RELOADED = ("allow", "ports", "expires", "policy")   # what SIGHUP changes; the rest: a restart


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
    if not listen and not forward:
        raise ValueError("nothing to listen on: give listen or forward")
    if not isinstance(c["log"], str) or not c["log"]:
        raise ValueError('log must be "-" or a file path')
    return Config(listen, allow, ports, forward, c["log"],
                  _number("max_conns", c["max_conns"], True),
                  _number("header_timeout", c["header_timeout"], False),
                  _number("idle_timeout", c["idle_timeout"], False),
                  _number("connect_timeout", c["connect_timeout"], False),
                  _number("max_header", c["max_header"], True), ends, rules)


def load(path):
    """Read and validate the config file; ConfigError (exit 13) with one line."""
    try:
        with open(path, encoding="utf-8") as f:
            return parse(f.read())
    except OSError as err:
        raise ConfigError("proxy config %s: %s" % (path, err.strerror or err))
    except ValueError as err:   # json.JSONDecodeError is one too
        raise ConfigError("proxy config %s: %s" % (path, str(err).splitlines()[0]))
