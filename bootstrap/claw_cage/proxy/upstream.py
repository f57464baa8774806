"""Reaching an upstream by the policy's rules, for the egress side and the routes alike: a
listed literal as it is, a name resolved by the host's resolver (its /etc/hosts first) and
refused when any address it gets is blocked, then the addresses in the resolver's order within
one connect timeout. The names a test maps to lab addresses go through the same code: they
are the lab namespace's /etc/hosts, which only root writes on a real host."""

import asyncio
import ipaddress
import socket
import time

from .http import Refused
from .policy import blocked


async def resolve(loop, name, address, port, timeout, note):
    """The addresses to try for a checked (name, address); Refused 502 or 403 (note(target)
    hears the blocked address)."""
    if address is not None:
        return [address]
    try:
        infos = await asyncio.wait_for(loop.getaddrinfo(name, port, type=socket.SOCK_STREAM),
                                       timeout)
    except (OSError, UnicodeError, asyncio.TimeoutError):
        raise Refused(502, "cannot resolve %s" % name)
    addrs = []
    for info in infos:
        a = ipaddress.ip_address(info[4][0].split("%")[0])
        if a not in addrs:
            addrs.append(a)
    for a in addrs:
        why = blocked(a)
        if why:
            note(("tcp", (str(a), port)))
            raise Refused(403, "the name resolves to a blocked address: " + why)
    return addrs


async def connect_any(name, addrs, port, timeout, opener, note):
    """opener(address, port) for each address until one connects; the connect timeout bounds
    them all together. note(target) hears each address tried. Refused 502."""
    deadline = time.monotonic() + timeout
    for a in addrs:
        note(("tcp", (str(a), port)))
        left = deadline - time.monotonic()
        if left <= 0:
            break
        try:
            return await asyncio.wait_for(opener(str(a), port), left)
        except (OSError, asyncio.TimeoutError):
            continue
    raise Refused(502, "cannot connect to %s:%d" % (name, port))
