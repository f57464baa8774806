"""Audit rows: host settings around the cage (the hardening guide's other layers). They only ever `warn`, never `fail`:
they are advice about layers claw-cage does not manage, not broken promises of its own.

Everything here reads files (sshd_config, daemon.json, /proc/net/if_inet6, ufw.conf), so it
works without root and changes nothing.
"""

import glob
import json
import os

from .report import Row, PASS, WARN, SKIP

SECTION = "Audit (advice)"

SSHD_CONFIG = "/etc/ssh/sshd_config"
DAEMON_JSON = "/etc/docker/daemon.json"
IF_INET6 = "/proc/net/if_inet6"
UFW_CONF = "/etc/ufw/ufw.conf"
UFW_DEFAULTS = "/etc/default/ufw"


def _row(check, status, detail):
    return Row(SECTION, check, status, detail)


# ---- sshd ---------------------------------------------------------------------------------

def sshd_settings(path, _depth=0):
    """Keyword -> value as sshd applies them: the first value obtained wins, `Include` is read
    in place, and `Match` blocks (conditional) are not global settings, so reading stops there."""
    found = {}
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()
    except OSError:
        return found
    for line in lines:
        words = line.split("#", 1)[0].split()
        if len(words) < 2:
            continue
        key, value = words[0].lower(), words[1]
        if key == "match":
            break
        if key == "include" and _depth < 8:
            for pattern in words[1:]:
                if not os.path.isabs(pattern):
                    pattern = os.path.join("/etc/ssh", pattern)
                for inc in sorted(glob.glob(pattern)):
                    for k, v in sshd_settings(inc, _depth + 1).items():
                        found.setdefault(k, v)
            continue
        found.setdefault(key, value)
    return found


def check_sshd(path=SSHD_CONFIG):
    if not os.path.exists(path):
        return [_row("sshd password login", SKIP, "no %s: sshd not installed" % path)]
    if not os.access(path, os.R_OK):
        return [_row("sshd password login", SKIP, "%s not readable" % path)]
    conf = sshd_settings(path)
    rows = []
    pw = conf.get("passwordauthentication", "yes").lower()  # sshd's default is yes
    rows.append(_row("sshd password login",
                     PASS if pw == "no" else WARN,
                     "PasswordAuthentication %s%s" % (
                         pw, "" if pw == "no" else ": use keys only (PasswordAuthentication no)")))
    root = conf.get("permitrootlogin", "prohibit-password").lower()  # default since 7.0
    rows.append(_row("sshd root login",
                     PASS if root == "no" else WARN,
                     "PermitRootLogin %s%s" % (root, "" if root == "no" else
                                               ": no root login over SSH (PermitRootLogin no)")))
    return rows


# ---- Docker daemon ------------------------------------------------------------------------

# daemon.json key -> (hardened value, Docker's default when the key is absent): what
# --harden-docker sets. Not userland-proxy: false would set route_localnet=1 on every bridge
# (moby#45629; measured, README "Layers").
DAEMON_WANTED = (("icc", False, True), ("no-new-privileges", True, False),
                 ("live-restore", True, False))


def daemon_findings(conf):
    """Names of the daemon settings that are not hardened, given daemon.json as a dict."""
    return ["%s=%s" % (key, json.dumps(conf.get(key, default)))
            for key, wanted, default in DAEMON_WANTED if conf.get(key, default) != wanted]


def check_daemon(path=DAEMON_JSON):
    try:
        with open(path, encoding="utf-8") as f:
            conf = json.load(f)
    except FileNotFoundError:
        conf = {}
    except (OSError, ValueError) as err:
        return [_row("docker daemon settings", SKIP, "cannot read %s: %s" % (path, err))]
    if not isinstance(conf, dict):
        return [_row("docker daemon settings", SKIP, "%s is not a JSON object" % path)]
    bad = daemon_findings(conf)
    if not bad:
        return [_row("docker daemon settings", PASS,
                     "icc off; no-new-privileges, live-restore on")]
    return [_row("docker daemon settings", WARN,
                 "%s in %s (sudo ... --harden-docker sets them)" % (", ".join(bad), path))]


# ---- IPv6 ---------------------------------------------------------------------------------

def global_ipv6(text):
    """(interface, address) of every global-scope address in /proc/net/if_inet6 text."""
    import ipaddress
    found = []
    for line in text.splitlines():
        f = line.split()
        if len(f) != 6 or f[3] != "00":  # field 4: scope, 00 = global
            continue
        found.append((f[5], str(ipaddress.IPv6Address(int(f[0], 16)))))
    return found


def check_ipv6(path=IF_INET6):
    try:
        with open(path) as f:
            text = f.read()
    except OSError:
        return [_row("host IPv6 addresses", PASS, "IPv6 is disabled on this host")]
    found = global_ipv6(text)
    if not found:
        return [_row("host IPv6 addresses", PASS, "no global IPv6 address")]
    shown = ", ".join("%s %s" % pair for pair in found[:3])
    more = " and %d more" % (len(found) - 3) if len(found) > 3 else ""
    return [_row("host IPv6 addresses", WARN,
                 "global IPv6 on the host: %s%s (the hardening guide keeps the host IPv4-only)" % (shown, more))]


# ---- UFW ----------------------------------------------------------------------------------

def _keyvals(path):
    vals = {}
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            if "=" in line and not line.lstrip().startswith("#"):
                k, v = line.split("=", 1)
                vals[k.strip()] = v.strip().strip("\"'")
    return vals


def check_ufw(conf=UFW_CONF, defaults=UFW_DEFAULTS):
    try:
        enabled = _keyvals(conf).get("ENABLED", "no").lower() == "yes"
    except OSError:
        return [_row("ufw", WARN, "ufw is not installed (the host firewall layer: it guards "
                                   "the host's own ports)")]
    if not enabled:
        return [_row("ufw", WARN, "ufw is installed but not enabled")]
    try:
        policy = _keyvals(defaults).get("DEFAULT_INPUT_POLICY", "?")
    except OSError:
        policy = "?"
    if policy.upper() in ("DROP", "REJECT"):
        return [_row("ufw", PASS, "enabled, incoming policy %s" % policy)]
    return [_row("ufw", WARN, "enabled, but incoming policy is %s" % policy)]


def run_all():
    return check_sshd() + check_daemon() + check_ipv6() + check_ufw()
