"""Which iptables to drive, and reading what is loaded. Every command goes through runner.

Docker writes its chains with whichever `iptables` is first on PATH: legacy (x_tables) or
nf_tables. Rules written with the other flavour are invisible to it and never jumped to, so we
write where Docker's chains are; when there are none yet (Docker not started), or in both, we use
the `iptables` on PATH, as dockerd will.
"""

import json
import os

from .. import runner
from ..errors import FirewallError, PrereqError

DAEMON_JSON = "/etc/docker/daemon.json"
PACKAGE = "iptables"   # Debian/Ubuntu/Fedora/Arch: also ships ip6tables and the -restore tools


class Tools:
    """Command names for one flavour: "" (PATH's choice), "-nft" or "-legacy"."""

    def __init__(self, flavour=""):
        self.flavour = flavour

    def iptables(self, family):
        return ("iptables" if family == 4 else "ip6tables") + self.flavour

    def restore(self, family):
        return self.iptables(family) + "-restore"

    def names(self):
        return (self.iptables(4), self.iptables(6))

    def __repr__(self):
        return "Tools(%r)" % self.flavour


def refuse_nftables_backend(path=DAEMON_JSON):
    """Docker 29's opt-in nftables backend has no DOCKER-USER chain: our jump would have no
    parent that Docker routes through. Stop and say so rather than pretend."""
    try:
        with open(path, encoding="utf-8") as f:
            config = json.load(f)
    except (OSError, ValueError):
        return  # no daemon.json (Docker's defaults: iptables) or unreadable: dockerd refuses it too
    if isinstance(config, dict) and config.get("firewall-backend") == "nftables":
        raise FirewallError(
            "%s sets \"firewall-backend\": \"nftables\": Docker then has no DOCKER-USER chain "
            "and claw-cage's iptables rules would never see the container's traffic; remove "
            "that setting (Docker's default is iptables) and restart Docker, then run this again"
            % path)


def _has_docker_chains(command):
    result = runner.run([command, "-w", "-S"], check=False)
    return result.ok and any(line.startswith("-N DOCKER") for line in result.stdout.splitlines())


def _legacy_tables_loaded():
    # Listing with iptables-legacy would load the x_tables filter table as a side effect;
    # the kernel already tells which legacy tables exist in this network namespace.
    try:
        with open("/proc/net/ip_tables_names") as f:
            return "filter" in f.read().split()
    except OSError:
        return False


def detect():
    """Tools for the flavour Docker's chains are in (see module doc)."""
    found = []
    if runner.which("iptables-nft") and _has_docker_chains("iptables-nft"):
        found.append("-nft")
    if (runner.which("iptables-legacy") and _legacy_tables_loaded()
            and _has_docker_chains("iptables-legacy")):
        found.append("-legacy")
    tools = Tools(found[0] if len(found) == 1 else "")
    for name in (tools.iptables(4), tools.restore(4)):
        if not runner.which(name):
            raise PrereqError("%s not found: install the package %r" % (name, PACKAGE))
    return tools


def iptables_present():
    return any(runner.which(n) for n in ("iptables", "iptables-nft", "iptables-legacy"))


def ensure_installed(ui, dry_run):
    """iptables missing: install it with apt-get, non-interactively; no apt-get: name it."""
    if iptables_present():
        return True
    if not runner.which("apt-get"):
        raise PrereqError("iptables is not installed and this system has no apt-get: install "
                          "the package %r with your package manager, then run this again"
                          % PACKAGE)
    install = ["apt-get", "install", "-y", "-q", "--no-install-recommends", PACKAGE]
    if dry_run:
        ui.info("$ " + " ".join(install) + "   (iptables is not installed)")
        return False
    ui.info("iptables is not installed: installing it with apt-get")
    env = {"DEBIAN_FRONTEND": "noninteractive"}
    if not runner.run(install, check=False, timeout=900, env=env).ok:
        runner.run(["apt-get", "update", "-q"], timeout=900, env=env)  # stale package lists
        runner.run(install, timeout=900, env=env)
    if not iptables_present():
        raise PrereqError("apt-get installed %r but no iptables command appeared" % PACKAGE)
    return True


def ipv6_state():
    """"off" (no IPv6 in this kernel), "forwarding" or "on"."""
    if not os.path.exists("/proc/net/if_inet6"):
        return "off"
    try:
        with open("/proc/sys/net/ipv6/conf/all/forwarding") as f:
            return "forwarding" if f.read().strip() == "1" else "on"
    except OSError:
        return "on"


def rules_of(command, chain):
    """`-S chain` lines, or None when the chain does not exist."""
    result = runner.run([command, "-w", "-S", chain], check=False)
    if not result.ok:
        return None
    return result.stdout.splitlines()


def all_rules(command):
    return runner.run([command, "-w", "-S"]).stdout.splitlines()
