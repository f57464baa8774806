"""Host rows about what the deployment exposes: the gateway port and the .env secrets file.

The gateway must be published on 127.0.0.1 only (reached through an SSH tunnel). Two ways it
could leak onto the LAN: a socket listening on another address (docker-proxy, or anything else
holding the port), or a DNAT rule in the nat table forwarding the port from another address
(Docker with userland-proxy off publishes with DNAT alone, no listener). Both are read here:
/proc/net/tcp{,6} (any user) and `iptables -t nat -S` (root only).
"""

import ipaddress
import os
import socket
import stat
import struct

from .. import deployment, dotenv, install, safefile
from ..errors import TargetError
from .report import Row, PASS, FAIL, SKIP

SECTION = "Host"
GATEWAY_PORT = deployment.GATEWAY_PORT
LISTEN = "0A"  # TCP state LISTEN in /proc/net/tcp


def _row(check, status, detail):
    return Row(SECTION, check, status, detail)


# ---- listeners ----------------------------------------------------------------------------

def _proc_address(hex_addr):
    """Address in /proc/net/tcp{,6} notation (32-bit words in host byte order) -> ip_address."""
    words = [int(hex_addr[i:i + 8], 16) for i in range(0, len(hex_addr), 8)]
    raw = b"".join(struct.pack("=I", w) for w in words)
    family = socket.AF_INET if len(raw) == 4 else socket.AF_INET6
    return ipaddress.ip_address(socket.inet_ntop(family, raw))


def listeners(text, port):
    """Local addresses listening on TCP `port` in /proc/net/tcp or tcp6 text."""
    found = []
    for line in text.splitlines()[1:]:
        f = line.split()
        if len(f) < 4 or f[3] != LISTEN:
            continue
        addr, _, hex_port = f[1].partition(":")
        if int(hex_port, 16) == port:
            found.append(_proc_address(addr))
    return found


def _is_loopback(addr):
    # An IPv4-mapped ::ffff:127.x listener is loopback too.
    mapped = getattr(addr, "ipv4_mapped", None)
    return addr.is_loopback or bool(mapped and mapped.is_loopback)


# ---- DNAT rules ---------------------------------------------------------------------------

def _option(words, name):
    """(value, negated) of `name` in one iptables -S rule, or (None, False)."""
    for i, w in enumerate(words[:-1]):
        if w == name:
            return words[i + 1], i > 0 and words[i - 1] == "!"
    return None, False


def exposing_dnat(save_text, port):
    """The nat-table DNAT rules that forward `port` from something else than loopback.

    A rule counts when it matches `--dport port` or forwards to `...:port`, and its destination
    match is missing, negated, or not a loopback network."""
    bad = []
    for line in save_text.splitlines():
        words = line.split()
        if not words or words[0] != "-A" or "DNAT" not in words:
            continue
        dport, _ = _option(words, "--dport")
        to, _ = _option(words, "--to-destination")
        to_port = to.rsplit(":", 1)[-1] if to and ":" in to else None
        if str(port) not in (dport, to_port):
            continue
        dest, negated = _option(words, "-d")
        try:
            loopback = dest is not None and not negated and \
                ipaddress.ip_network(dest, strict=False).subnet_of(
                    ipaddress.ip_network("127.0.0.0/8" if ":" not in dest else "::1/128"))
        except (ValueError, TypeError):
            loopback = False
        if not loopback:
            bad.append(line.strip())
    return bad


def check_gateway_port(is_root, port=GATEWAY_PORT, proc="/proc/net"):
    wide, local = [], []
    for name in ("tcp", "tcp6"):
        try:
            with open(os.path.join(proc, name)) as f:
                found = listeners(f.read(), port)
        except OSError:
            continue
        for addr in found:
            (local if _is_loopback(addr) else wide).append(addr)
    name = "gateway port %d" % port
    if wide:
        shown = ", ".join("[%s]" % a if a.version == 6 else str(a) for a in wide)
        return _row(name, FAIL, "listening on %s:%d, not only 127.0.0.1: reachable from the "
                                "network" % (shown, port))
    if not is_root:
        return _row(name, SKIP, "no listener beyond loopback; DNAT rules need root to read "
                                "(run with sudo)")
    from ..firewall import host
    bad = []
    for family in (4, 6):
        for tool in host.flavours(family):
            bad += exposing_dnat(host.read_table(tool, family, "nat") or "", port)
    if bad:
        return _row(name, FAIL, "forwarded from beyond loopback: %s" % bad[0])
    if local:
        return _row(name, PASS, "published on 127.0.0.1 only (no other listener, no DNAT "
                                "from another address)")
    return _row(name, SKIP, "nothing listens on or forwards port %d (gateway not running?)"
                % port)


# ---- .env ---------------------------------------------------------------------------------

def check_env(directory):
    """.env: a regular file, readable by its owner only, with a gateway token set.
    The token's value is never read into any message."""
    path = os.path.join(directory, install.ENV)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return _row(".env", FAIL, "%s does not exist: run the installer" % path)
    except OSError as err:
        return _row(".env", SKIP, "cannot stat %s: %s" % (path, err.strerror))
    if not stat.S_ISREG(st.st_mode):
        return _row(".env", FAIL, "%s is not a regular file" % path)
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o077:
        return _row(".env", FAIL, "mode %03o: others can read the secrets; chmod 600 %s"
                    % (mode, path))
    try:
        data = safefile.read(path)   # no symlink, no FIFO, size-capped (swapped since lstat?)
    except safefile.UnsafeFile as err:
        return _row(".env", FAIL, str(err))
    except TargetError as err:
        return _row(".env", SKIP, "mode %03o; cannot read it to check the token: %s"
                    % (mode, err))
    if data is None:
        return _row(".env", FAIL, "%s does not exist: run the installer" % path)
    is_set, why = dotenv.value_is_set(data, install.TOKEN_VAR)   # as Docker Compose reads it
    if why:
        return _row(".env", FAIL, "mode %03o, but %s: the gateway will not start"
                    % (mode, why))
    if not is_set:
        return _row(".env", FAIL, "mode %03o, but %s is empty: the gateway will not start"
                    % (mode, install.TOKEN_VAR))
    return _row(".env", PASS, "mode %03o, %s set" % (mode, install.TOKEN_VAR))
