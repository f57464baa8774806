"""Which iptables to drive, and installing it. Every command goes through runner; what the host
holds is read by host.py.

Docker writes its chains with whichever `iptables` is first on PATH: legacy (x_tables) or
nf_tables. Rules written with the other flavour are invisible to it and never jumped to, so we
write where Docker's chains are; when there are none yet (Docker not started, or its nftables
backend), or in both, we use the `iptables` on PATH, as dockerd will.

State is read with ONE `iptables-save` per family (every table at once): what to change is
planned from it, and it is also the exact copy a failed apply rolls back to.
"""

from .. import runner
from ..errors import FirewallError, PrereqError
from . import host, readback

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


def detect():
    """(Tools for the flavour Docker's chains are in, that flavour's IPv4 iptables-save)."""
    saves = {}
    if runner.which("iptables-nft-save"):
        saves["-nft"] = read_save("iptables-nft-save")
    if runner.which("iptables-legacy-save") and host.legacy_loaded(4):
        saves["-legacy"] = read_save("iptables-legacy-save")
    found = [f for f, text in sorted(saves.items())
             if host.docker_chains_in(readback.parse_tables(text).get("filter", {}))]
    tools = Tools(found[0] if len(found) == 1 else "")
    for name in (tools.iptables(4), tools.restore(4), tools.save(4)):
        if not runner.which(name):
            raise PrereqError("%s not found: install the package %r" % (name, PACKAGE))
    flavour = tools.flavour or host.path_flavour()
    text = saves[flavour] if flavour in saves else read_save(tools.save(4))
    return tools, text


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
    try:
        if not runner.run(install, check=False, timeout=900, env=env).ok:
            runner.run(["apt-get", "update", "-q"], timeout=900, env=env)  # stale package lists
            runner.run(install, timeout=900, env=env)
    except runner.CommandError as err:   # a prerequisite still missing: exit 3, not 6
        raise PrereqError("could not install %r: %s" % (PACKAGE, err))
    if not iptables_present():
        raise PrereqError("apt-get installed %r but no iptables command appeared" % PACKAGE)
    return True
