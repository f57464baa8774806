"""Read the claw-cage network (bridge interface name and subnet) out of docker-compose.yml.

There is no YAML parser in the standard library, and we only need two scalars from a file we
ship ourselves, so this reads them line by line and refuses anything ambiguous rather than
guessing. The firewall must match the bridge Docker will really create: a wrong answer here
would leave the cage open, so every doubt is an error.
"""

import ipaddress
import os
import re

from . import dotenv, safefile
from .errors import ClawCageError

BRIDGE_KEY = "com.docker.network.bridge.name"
# Linux interface names: at most 15 bytes; we accept the conservative character set.
BRIDGE_RE = re.compile(r"^[A-Za-z0-9_.-]{1,15}$")


def _values(text, key):
    pattern = re.compile(r"^\s*-?\s*[\"']?%s[\"']?\s*[:=]\s*(.*?)\s*$" % re.escape(key))
    found = []
    for line in text.splitlines():
        if line.lstrip().startswith("#"):
            continue
        m = pattern.match(line)
        if m:
            value = m.group(1).split(" #", 1)[0].strip().strip("\"'")
            found.append(value)
    return found


def read_network(text, where="docker-compose.yml"):
    """Return (bridge_name, ipaddress.IPv4Network) declared in the compose text."""
    bridges = set(_values(text, BRIDGE_KEY))
    subnets = set(_values(text, "subnet"))
    if len(bridges) != 1:
        raise ClawCageError("%s: expected exactly one %s, found %d"
                            % (where, BRIDGE_KEY, len(bridges)))
    if len(subnets) != 1:
        raise ClawCageError("%s: expected exactly one IPv4 subnet, found %d"
                            % (where, len(subnets)))
    bridge, subnet = bridges.pop(), subnets.pop()
    if not BRIDGE_RE.match(bridge):
        # the value itself is never shown: read as root, an error must not leak a secret
        raise ClawCageError("%s: the value of %s is not a valid interface name (1-15 of "
                            "A-Z a-z 0-9 _ . -)" % (where, BRIDGE_KEY))
    try:
        net = ipaddress.IPv4Network(subnet, strict=True)
    except ValueError:
        raise ClawCageError("%s: the value of subnet is not an IPv4 network in CIDR form "
                            "(a.b.c.d/n, host bits zero)" % where)
    return bridge, net


# The gateway's pinned resolvers: `dns:` entries of the form ${CLAW_DNS...:-default}.
_DNS_ENTRY_RE = re.compile(r"^\s*-\s*[\"']?\$\{(CLAW_DNS\w*):-([0-9A-Fa-f.:]+)\}[\"']?\s*(?:#.*)?$")
_DNS_ASSIGN_RE = re.compile(r"^\s*(?:export\s+)?(CLAW_DNS\w*)\s*=\s*(.*?)\s*$")


def dns_settings(text):
    """[(variable, default)] of the resolvers docker-compose.yml pins for the gateway, in
    order; [] for a compose file from before the pin."""
    return [m.groups() for m in map(_DNS_ENTRY_RE.match, text.splitlines()) if m]


def dns_values(env_text):
    """{CLAW_DNS...: value} set in .env text (only those keys; the value's quotes and trailing
    comment removed). Empty values count as unset, as ${VAR:-default} treats them."""
    found = {}
    for line in (env_text or "").splitlines():
        m = _DNS_ASSIGN_RE.match(line)
        if m:
            value = m.group(2)
            if value[:1] in "'\"" and value[-1:] == value[:1] and len(value) >= 2:
                value = value[1:-1]
            else:
                value = value.split(" #", 1)[0].strip()
            found[m.group(1)] = value
    return dict((k, v) for k, v in found.items() if v)


def pinned_dns(compose_text, env):
    """The resolvers the gateway gets: each pinned entry, .env's value or the default, in
    order, without repeats (Compose drops them). [] when the compose file pins none.
    env: .env text, or {key: value} already read from it."""
    values = dict((k, v) for k, v in env.items() if v) if isinstance(env, dict) \
        else dns_values(env)
    out = []
    for var, default in dns_settings(compose_text):
        server = values.get(var) or default
        if server not in out:
            out.append(server)
    return out


def read_pinned_dns(directory):
    """pinned_dns() of the docker-compose.yml and .env in directory, both read with safefile
    (root may read them in a directory the user controls); [] when either cannot be read
    safely or the compose file pins none."""
    texts = []
    for name in ("docker-compose.yml", ".env"):
        try:
            texts.append(safefile.read_text(os.path.join(directory, name)) or "")
        except ClawCageError:
            texts.append("")
    try:
        env = dotenv.parse(texts[1], environ={})
    except ClawCageError:
        env = texts[1]
    return pinned_dns(texts[0], env)
