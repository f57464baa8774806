"""Which iptables to drive, which chain Docker routes forwarded traffic through, and reading
what is loaded. Every command goes through runner.

Docker writes its chains with whichever `iptables` is first on PATH: legacy (x_tables) or
nf_tables. Rules written with the other flavour are invisible to it and never jumped to, so we
write where Docker's chains are; when there are none yet (Docker not started, or its nftables
backend), or in both, we use the `iptables` on PATH, as dockerd will.

State is read with ONE `iptables-save` per family (every table at once): what to change is
planned from it, and it is also the exact copy a failed apply rolls back to.
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

    def save(self, family):
        return self.iptables(family) + "-save"

    def names(self):
        return (self.iptables(4), self.iptables(6))

    def __repr__(self):
        return "Tools(%r)" % self.flavour


def read_save(command):
    """All tables of one `*-save` (counters left out). A failure is a FirewallError: nothing
    has been changed yet, and planning from a partial view could duplicate a jump."""
    try:
        return runner.run([command]).stdout
    except runner.CommandError as err:
        raise FirewallError("cannot read the current rules (%s); nothing was changed" % err)


def _has_docker_chains(save_text):
    return any(line.startswith(":DOCKER") for line in save_text.splitlines())


def _legacy_tables_loaded():
    # iptables-legacy-save reads only the tables the kernel already has; when there are none
    # (the usual nf_tables host) skip the command altogether.
    try:
        with open("/proc/net/ip_tables_names") as f:
            return bool(f.read().split())
    except OSError:
        return False


def _path_flavour():
    """The flavour the plain `iptables` on PATH is, from its symlink (no command run)."""
    path = runner.which("iptables")
    real = os.path.basename(os.path.realpath(path)) if path else ""
    return "-nft" if "nft" in real else "-legacy" if "legacy" in real else None


def detect():
    """(Tools for the flavour Docker's chains are in, that flavour's IPv4 iptables-save)."""
    saves = {}
    if runner.which("iptables-nft-save"):
        saves["-nft"] = read_save("iptables-nft-save")
    if runner.which("iptables-legacy-save") and _legacy_tables_loaded():
        saves["-legacy"] = read_save("iptables-legacy-save")
    found = [f for f, text in sorted(saves.items()) if _has_docker_chains(text)]
    tools = Tools(found[0] if len(found) == 1 else "")
    for name in (tools.iptables(4), tools.restore(4), tools.save(4)):
        if not runner.which(name):
            raise PrereqError("%s not found: install the package %r" % (name, PACKAGE))
    flavour = tools.flavour or _path_flavour()
    text = saves[flavour] if flavour in saves else read_save(tools.save(4))
    return tools, text


def docker_firewall_backend(path=DAEMON_JSON):
    """"iptables" or "nftables": what the running Docker says (28.1+), else its daemon.json,
    else Docker's default. Asked only when the rules do not tell (see filter_parent)."""
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


def filter_parent(filter_chains, ask_docker=docker_firewall_backend):
    """Where the second anchor hangs: DOCKER-USER when FORWARD already jumps to it (Docker's
    iptables backend, running), else per Docker's firewall backend: its nftables backend has no
    DOCKER-USER, so FORWARD itself; its iptables backend (or none yet) DOCKER-USER, which
    dockerd jumps to when it starts."""
    if "-j DOCKER-USER" in filter_chains.get("FORWARD", []):
        return "DOCKER-USER"
    return "FORWARD" if ask_docker() == "nftables" else "DOCKER-USER"


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
