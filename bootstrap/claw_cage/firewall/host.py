"""The host's firewall state, read: which iptables flavours exist and hold what, which chains
Docker owns, whether legacy tables are loaded, whether IPv6 is on, and where the second anchor
hangs. Reading only; every command goes through runner. --firewall plans from it and --verify
judges from it, each with a read of its own.

Two questions about the second anchor's parent, two names:
  parent_to_use(filter_chains)    where --firewall hangs it: DOCKER-USER when FORWARD jumps
                                  there or Docker uses iptables; FORWARD under Docker's
                                  nftables backend (it has no DOCKER-USER)
  parent_in_use(tables)           where the live rules hang it (FORWARD when our jump is there)
  parent_reached(filter_chains, parent, family)
                                  whether FORWARD's traffic reaches that parent at all: after
                                  `nft flush ruleset` nobody jumps FORWARD -> DOCKER-USER until
                                  dockerd restarts, and the second anchor then judges nothing
"""

import functools
import json
import os

from .. import runner
from . import readback, rules

DAEMON_JSON = "/etc/docker/daemon.json"
DOCKER_CHAINS = ("DOCKER", "DOCKER-FORWARD")   # filter chains only Docker creates


def docker_chains_in(filter_chains):
    return any(chain in filter_chains for chain in DOCKER_CHAINS)


def legacy_loaded(family, table=None):
    """Whether the kernel has legacy (x_tables) tables of this family (or this one table).
    Reading a legacy table that does not exist would create it (the kernel loads it on first
    access), and both modes must leave the host as they found it: /proc says, no command."""
    path = "/proc/net/ip_tables_names" if family == 4 else "/proc/net/ip6_tables_names"
    try:
        with open(path) as f:
            names = f.read().split()
    except OSError:
        return False
    return bool(names) if table is None else table in names


def ipv6_state():
    """"off" (no IPv6 in this kernel), "forwarding" or "on"."""
    if not os.path.exists("/proc/net/if_inet6"):
        return "off"
    try:
        with open("/proc/sys/net/ipv6/conf/all/forwarding") as f:
            return "forwarding" if f.read().strip() == "1" else "on"
    except OSError:
        return "on"


def path_flavour():
    """The flavour the plain `iptables` on PATH is, from its symlink (no command run)."""
    path = runner.which("iptables")
    real = os.path.basename(os.path.realpath(path)) if path else ""
    return "-nft" if "nft" in real else "-legacy" if "legacy" in real else None


@functools.lru_cache(maxsize=None)   # a tool's flavour does not change while we run
def is_legacy(tool):
    if tool.endswith("-legacy"):
        return True
    if tool.endswith("-nft"):
        return False
    version = runner.run([tool, "-V"], check=False, timeout=10)
    return "nf_tables" not in version.stdout


def flavours(family):
    """iptables tools to look in: both flavours when both exist, else whatever is on PATH."""
    base = "iptables" if family == 4 else "ip6tables"
    both = [base + "-legacy", base + "-nft"]
    if all(runner.which(t + "-save") for t in both):
        return both
    return [base] if runner.which(base + "-save") else []


def read_tables(tool, family):
    """{table: {chain: [rule]}} of every loaded table, or None when it cannot be read. A bare
    iptables-save reads only the tables that exist (legacy: those /proc lists)."""
    if is_legacy(tool) and not legacy_loaded(family):
        return {}
    result = runner.run([tool + "-save"], check=False, timeout=10)
    return readback.parse_tables(result.stdout) if result.ok else None


class Tables:
    """The tables of one family in the flavour that matters (where Docker's chains are, else
    where ours are, else the first readable), and which flavours hold which."""

    def __init__(self, family):
        self.family, self.tool, self.tables = family, None, None
        read = [(t, read_tables(t, family)) for t in flavours(family)]
        self.read = read = [(t, c) for t, c in read if c is not None]   # every flavour
        self.docker_in = [t for t, c in read if docker_chains_in(c.get("filter", {}))]
        self.ours_in = [t for t, c in read if rules.FWD_CHAIN in c.get("filter", {})
                        or rules.PRE_CHAIN in c.get("mangle", {})]
        pick = self.docker_in or self.ours_in or [t for t, _ in read]
        if pick:
            self.tool, self.tables = pick[0], dict(read)[pick[0]]

    @property
    def chains(self):
        """The filter table ({chain: rules}), or None when nothing could be read."""
        return None if self.tables is None else self.tables.get("filter", {})

    def table(self, name):
        return {} if self.tables is None else self.tables.get(name, {})


def docker_firewall_backend(path=DAEMON_JSON):
    """"iptables" or "nftables": what the running Docker says (28.1+), else its daemon.json,
    else Docker's default. Asked only when the rules do not tell (see parent_to_use)."""
    if runner.which("docker"):
        try:
            result = runner.run(["docker", "info", "--format", "{{.FirewallBackend.Driver}}"],
                                check=False, timeout=20)
        except runner.CommandError:   # timed out: a hung daemon answers nothing
            result = None
        if result is not None and result.ok and result.stdout.strip() in ("iptables",
                                                                         "nftables"):
            return result.stdout.strip()
    try:
        with open(path, encoding="utf-8") as f:
            config = json.load(f)
    except (OSError, ValueError):
        return "iptables"  # no daemon.json: Docker's default
    if isinstance(config, dict) and config.get("firewall-backend") == "nftables":
        return "nftables"
    return "iptables"


def parent_to_use(filter_chains, ask_docker=docker_firewall_backend):
    """Where --firewall hangs the second anchor: DOCKER-USER when FORWARD already jumps to it
    (Docker's iptables backend, running), else per Docker's firewall backend: its nftables
    backend has no DOCKER-USER, so FORWARD itself; its iptables backend (or none yet)
    DOCKER-USER, which dockerd jumps to when it starts."""
    if "-j DOCKER-USER" in filter_chains.get("FORWARD", []):
        return "DOCKER-USER"
    return "FORWARD" if ask_docker() == "nftables" else "DOCKER-USER"


def parent_in_use(tables):
    """Where the live rules hang the second anchor: FORWARD when our jump is there (Docker's
    nftables backend), else DOCKER-USER. tables: Tables that could be read."""
    for t in tables:
        if any(chain == "FORWARD" for chain, _ in rules.jumps_into_own(t.chains or {})):
            return "FORWARD"
    return "DOCKER-USER"


def parent_reached(filter_chains, parent, family=4):
    """Whether packets reach `parent` at all: a built-in chain (FORWARD, INPUT) always is,
    DOCKER-USER only through FORWARD's jump. IPv6 where Docker keeps no chain of its own
    (Docker before 27 routes no IPv6 of its own, and claw-net has none) counts as reached: no
    jump of Docker's is missing there, and the first anchor drops that family's packets."""
    if parent != "DOCKER-USER":
        return True
    if family == 6 and not docker_chains_in(filter_chains):
        return True
    return bool(readback.jump_position(filter_chains.get("FORWARD", []), parent))
