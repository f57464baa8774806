"""The names the api-only proxy lets the agent reach: what .env and openclaw.json configure,
plus --allow-domain. Under local-only, the Ollama endpoints instead (endpoints()).

Providers count when their key in .env has a value; channels when openclaw.json has a
`channels.<name>` entry that is not `"enabled": false`. Both files live in the user's install
directory and are read with safefile (no symlink, no FIFO, size-capped); a value of .env is
never kept, printed or logged: only whether it is set.
"""

import ipaddress
import json
import os
import re
from urllib.parse import urlsplit

from .. import dotenv, safefile
from ..errors import TargetError

# .env key -> the API host OpenClaw calls for that provider (OpenClaw's docs/providers/*.md)
PROVIDERS = (
    ("ANTHROPIC_API_KEY", "api.anthropic.com"),
    ("OPENAI_API_KEY", "api.openai.com"),
    ("OPENROUTER_API_KEY", "openrouter.ai"),
    ("GEMINI_API_KEY", "generativelanguage.googleapis.com"),
    ("GROQ_API_KEY", "api.groq.com"),
)

# openclaw.json channel -> the hosts its client talks to
CHANNELS = {
    "telegram": ("api.telegram.org",),
    "discord": ("discord.com", "gateway.discord.gg", "cdn.discordapp.com"),
    "slack": ("slack.com", "*.slack.com"),
}

_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)")

# *.SUFFIX where anyone can register a name under SUFFIX would open strangers' hosts. Python
# ships no Public Suffix List: this is a short built-in list of the common ones (country
# second levels, and hosting platforms that give each customer a subdomain), not all of it.
PUBLIC_SUFFIXES = frozenset("""
co.uk org.uk me.uk ltd.uk plc.uk net.uk ac.uk gov.uk com.au net.au org.au edu.au gov.au
co.nz org.nz net.nz co.jp ne.jp or.jp ac.jp go.jp co.kr or.kr com.br net.br org.br com.cn
net.cn org.cn com.hk com.tw com.sg com.my co.in net.in org.in co.id co.za com.mx com.ar
com.tr co.il com.ua com.pl com.ru
github.io githubusercontent.com gitlab.io workers.dev pages.dev r2.dev vercel.app now.sh
netlify.app netlify.com herokuapp.com appspot.com web.app firebaseapp.com blogspot.com
azurewebsites.net azurestaticapps.net cloudapp.net cloudfront.net amazonaws.com
s3.amazonaws.com elasticbeanstalk.com fly.dev onrender.com glitch.me ngrok.io ngrok-free.app
trycloudflare.com deno.dev surge.sh repl.co readthedocs.io duckdns.org no-ip.org dyndns.org
""".split())


def check_name(text):
    """The name, lowercased without a final dot, when it is a DNS name with at least two labels
    or `*.` and such a name; ValueError (one line) otherwise. IP addresses are refused: the
    list is of names (an address goes through --allow)."""
    name = text.strip().lower().rstrip(".")
    wild = name.startswith("*.")
    labels = (name[2:] if wild else name).split(".")
    if (len(name) > 253 or len(labels) < 2 or not all(_LABEL.fullmatch(l) for l in labels)
            or labels[-1].isdigit()):
        raise ValueError("not a domain name (NAME or *.SUFFIX, e.g. api.example.com or "
                         "*.example.com): %r" % text[:80])
    if wild and name[2:] in PUBLIC_SUFFIXES:
        raise ValueError("%s: anyone can register a name under %s (a public suffix); list "
                         "the names you need instead" % (name, name[2:]))
    return name


def from_env(values):
    """[(host, why)] of the providers whose key has a value in {key: value}."""
    return [(host, key) for key, host in PROVIDERS if values.get(key)]


def from_openclaw(cfg):
    """[(host, why)] of the channels configured in the parsed openclaw.json; and the names of
    configured channels claw-cage knows no host for."""
    found, unknown = [], []
    channels = cfg.get("channels") if isinstance(cfg, dict) else None
    for name, entry in sorted((channels or {}).items() if isinstance(channels, dict) else []):
        if isinstance(entry, dict) and entry.get("enabled") is False:
            continue
        hosts = CHANNELS.get(name)
        if hosts is None:
            unknown.append(name)
        found += [(h, "channel " + name) for h in hosts or ()]
    return found, unknown


def read_env(directory):
    """{key: value} of DIR/.env by Compose's rules, without the process environment (a key
    alone on a line counts as unset); {} when there is no .env."""
    path = os.path.join(directory, ".env")
    text = safefile.read_text(path)
    if text is None:
        return {}
    try:
        return dotenv.parse(text, environ={})
    except dotenv.DotenvError as err:
        raise TargetError("%s: %s" % (path, err))


def read_openclaw(directory):
    """The parsed DIR/openclaw.json ({} when absent). JSON with // and /* */ comments."""
    path = os.path.join(directory, "openclaw.json")
    text = safefile.read_text(path)
    if text is None:
        return {}
    plain = re.sub(r'"(?:\\.|[^"\\])*"|//[^\n]*|/\*.*?\*/',
                   lambda m: m.group(0) if m.group(0).startswith('"') else "", text, flags=re.S)
    try:
        cfg = json.loads(plain)
    except ValueError as err:
        raise TargetError("%s is not valid JSON (line %d): fix it, then run this again"
                          % (path, getattr(err, "lineno", 0)))
    return cfg if isinstance(cfg, dict) else {}


def default_list(directory, extra=()):
    """(names in order without repeats, {name: why}, [channels with no known host]).
    extra: --allow-domain names, already checked."""
    found = from_env(read_env(directory))
    channels, unknown = from_openclaw(read_openclaw(directory))
    found += channels + [(n, "--allow-domain") for n in extra]
    return _unique(found) + (unknown,)


def _unique(found):
    """[(entry, why)] -> (entries in order without repeats, {entry: the first why})."""
    names, why = [], {}
    for name, reason in found:
        if name not in why:
            names.append(name)
            why[name] = reason
    return names, why


def _entry(host, port):
    """HOST:PORT as the proxy lists it; an IP literal, or a name the proxy takes as the host's
    loopback (policy.HOST_LOOPBACK: host.docker.internal, localhost). ValueError otherwise."""
    if host not in ("host.docker.internal", "localhost"):   # proxy.policy.HOST_LOOPBACK (an
        # import would close a cycle: proxy -> firewall -> egress)
        host = ipaddress.ip_address(host)
        host = "[%s]" % host if host.version == 6 else host
    return "%s:%d" % (host, port)


def allow_spec(entry):
    """A local-only entry as --allow writes it, for the firewall's judgement of --allow."""
    host, _, port = entry.rpartition(":")
    return "host:" + port if host in ("host.docker.internal", "localhost") else entry


def endpoints(directory, allows=()):
    """local-only: (entries, {entry: why}, []). The Ollama endpoint OpenClaw is configured with
    (models.providers.ollama.baseUrl in openclaw.json: its host and port, the URL's default
    port when it names none), plus each --allow that names one address and one port
    (ADDRESS:PORT, [IPv6]:PORT; host:PORT is the host's 127.0.0.1:PORT). --allow specs of a
    network or of every port stay firewall rules only: the proxy opens single endpoints.
    A baseUrl naming a host by another name is refused: the proxy judges the address a name
    resolves to, and refuses the LAN (write the Ollama machine's address instead)."""
    url = read_openclaw(directory)
    for key in ("models", "providers", "ollama", "baseUrl"):
        url = url.get(key) if isinstance(url, dict) else None
    found = []
    if isinstance(url, str):
        try:
            u = urlsplit(url.strip())
            found.append((_entry(u.hostname, u.port or (443 if u.scheme == "https" else 80)),
                          "models.providers.ollama.baseUrl"))
        except ValueError:
            raise TargetError("models.providers.ollama.baseUrl in %s/openclaw.json is %r: "
                              "local-only needs an IP address there (http://127.0.0.1:11434, "
                              "http://192.168.1.50:11434), not a name" % (directory, url[:80]))
    for spec in allows:
        host, _, port = spec.strip().rpartition(":")
        try:
            found.append((_entry("127.0.0.1" if host == "host" else host.strip("[]"),
                                 int(port)), "--allow " + spec))
        except ValueError:
            pass
    return _unique(found) + ([],)
