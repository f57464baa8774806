"""--firewall: keep the claw-cage container off the LAN and the host, with iptables.

    sudo python3 claw-cage.pyz --firewall [--allow SPEC]... [--profile P] [--no-persist]
    sudo python3 claw-cage.pyz --firewall --remove

Reads the current state, plans every change (one `iptables-restore -n` per address family,
declaring only claw-cage's own chains), then either prints the plan (--dry-run) or runs it,
checks that the kernel holds exactly the expected rules, and installs the boot persistence.
The rules themselves are data in rules.py.
"""

import ipaddress
import os
import shlex

from .. import buildinfo, paths, runner
from ..composefile import read_network
from ..errors import ClawCageError, FirewallError, PrereqError, TargetError
from ..ui import UI
from . import allow, backend, outcome, persist, rules

NOT_ROOT = "--firewall changes the host firewall: run it with sudo"


class Step:
    """One command of the plan: argv, and the text fed to its stdin (a restore input)."""

    def __init__(self, argv, stdin=None):
        self.argv, self.stdin = list(argv), stdin

    def show(self):
        if self.stdin is None:
            return "$ " + shlex.join(self.argv)
        return "$ %s <<'EOF'\n%sEOF" % (shlex.join(self.argv), self.stdin)

    def run(self):
        runner.run(self.argv, input=self.stdin)


def load_config(args, ui):
    """Bridge and subnet from the installed docker-compose.yml, else the built-in defaults."""
    directory = paths.install_dir(args.dir)
    compose = os.path.join(directory, "docker-compose.yml")
    if os.path.isfile(compose):
        try:
            with open(compose, encoding="utf-8") as f:
                bridge, subnet = read_network(f.read(), compose)
        except (OSError, UnicodeDecodeError) as err:
            raise TargetError("cannot read %s: %s" % (compose, err))
        except ClawCageError as err:  # composefile's reason, as a target error
            raise TargetError(str(err))
    else:
        bridge, subnet = buildinfo.BRIDGE, buildinfo.SUBNET
        ui.info("no docker-compose.yml in %s: using the built-in network %s %s"
                % (directory, bridge, subnet))
    config = rules.default_config(bridge, subnet)
    return config._replace(allows=allow.parse_all(args.allow),
                           profile=args.profile or "internet")


def families(tools, ui):
    """4, and 6 unless the kernel has no IPv6 (ip6tables missing is fatal only when the
    host forwards IPv6: then the container could leave over it)."""
    state = backend.ipv6_state()
    if state == "off":
        ui.warn("IPv6 is off in this kernel: IPv4 rules only")
        return (4,)
    if not runner.which(tools.iptables(6)):
        if state == "forwarding":
            raise PrereqError("this host forwards IPv6 but %s is missing: install the package "
                              "%r" % (tools.iptables(6), backend.PACKAGE))
        ui.warn("%s is missing and IPv6 forwarding is off: IPv4 rules only" % tools.iptables(6))
        return (4,)
    return rules.FAMILIES


def plan_apply(config, tools, fams):
    steps = []
    for family in fams:
        ipt = tools.iptables(family)
        current = {}
        for parent in ("DOCKER-USER", "INPUT"):
            current[parent] = backend.rules_of(ipt, parent) if runner.which(ipt) else None
        if current["DOCKER-USER"] is None:
            # Docker has not started yet (seed 000 applies the firewall first). dockerd keeps an
            # existing DOCKER-USER and inserts FORWARD's jump to it itself when it starts; no
            # packet crosses the bridge before that, so we do not touch FORWARD.
            steps.append(Step([ipt, "-w", "-N", "DOCKER-USER"]))
        edits = []
        for parent, spec in rules.jumps(config):
            edits += rules.jump_edits(parent, spec, current[parent] or [])
        steps.append(Step([tools.restore(family), "-w", "-n"],
                          rules.render_restore(config, family, edits)))
    return steps


def plan_removal(tools, fams):
    steps = []
    for family in fams:
        ipt = tools.iptables(family)
        if not runner.which(ipt):
            continue
        lines = backend.all_rules(ipt)
        present = [c for c in rules.OWN_CHAINS if "-N " + c in lines]
        # every jump into an own chain, wherever it is (also one made for another bridge name)
        edits = ["-D" + l[2:] for l in lines if l.startswith("-A ") and
                 any(l.endswith(" -j " + c) for c in rules.OWN_CHAINS)
                 and not l.split()[1].startswith(rules.PREFIX)]
        if present or edits:
            steps.append(Step([tools.restore(family), "-w", "-n"],
                              rules.render_removal(present, edits)))
    return steps


def check_applied(config, tools, fams):
    """The kernel's view must be exactly the rule table: own chains and each jump, first."""
    for family in fams:
        ipt = tools.iptables(family)
        got = []
        for chain in rules.OWN_CHAINS:
            got += [l for l in backend.rules_of(ipt, chain) or [] if not l.startswith("-P ")]
        for parent, spec in rules.jumps(config):
            line = "-A %s %s" % (parent, spec)
            present = [l for l in backend.rules_of(ipt, parent) or [] if l.startswith("-A ")]
            if present[:1] == [line] and present.count(line) == 1:
                got.append(line)
        expected = rules.expected_lines(config, family)
        if got != expected:
            missing = [l for l in expected if l not in got]
            raise FirewallError("%s does not hold the expected rules after applying them "
                                "(first difference: %s)" % (ipt, (missing or got)[0]))


RESOLV_CONFS = ("/etc/resolv.conf", "/run/systemd/resolve/resolv.conf")


def blocked_resolvers(config, paths=RESOLV_CONFS):
    """This host's DNS servers that the cage blocks. Before Docker 28, the embedded DNS server
    sends a container's queries from inside the container (through FORWARD), so a resolver on
    the LAN - a home router, most often - is then out of the container's reach."""
    found = []
    for path in paths:
        try:
            with open(path) as f:
                text = f.read()
        except OSError:
            continue
        for line in text.splitlines():
            fields = line.split()
            if len(fields) < 2 or fields[0] != "nameserver":
                continue
            try:
                addr = ipaddress.ip_address(fields[1].split("%")[0])
            except ValueError:
                continue
            # IPv6 servers are left out: Docker drops them for a network without IPv6
            if (addr.version == config.subnet.version and not addr.is_loopback
                    and addr not in found
                    and rules.forward_verdict(config, addr, 53) == "DROP"):
                found.append(addr)
    return found


def _show_or_run(steps, dry_run, ui):
    for step in steps:
        if dry_run:
            ui.info(step.show())
        else:
            step.run()


def _run_all_or_nothing(steps):
    """Each family is one transaction; so that a failure in the second does not leave the
    first applied alone, every restore input is first checked with --test (parsed and
    validated by the kernel, nothing committed), and only then are they all committed."""
    creates = [s for s in steps if s.stdin is None]   # `-N DOCKER-USER`: harmless on its own
    restores = [s for s in steps if s.stdin is not None]
    for step in creates:
        step.run()
    for step in restores:
        runner.run(step.argv + ["--test"], input=step.stdin)
    for step in restores:
        step.run()


def _persist_steps(config, tools):
    if not persist.systemd_installed():
        raise PrereqError("no systemd on this host, so the rules cannot come back at boot: use "
                          "--no-persist and apply them at each boot yourself (for example "
                          "with iptables-rules.sh)")
    script = rules.render_script(config, tools.names())
    return [_Action(desc, action) for desc, action in persist.plan_install(script)]


class _Action(Step):
    """A file operation of the plan (persistence), shown like a command."""

    def __init__(self, description, action):
        super().__init__([])
        self.description, self.action = description, action

    def show(self):
        return self.description

    def run(self):
        try:
            self.action()
        except OSError as err:
            raise FirewallError("%s: %s" % (self.description, err.strerror or err))


def apply(args, ui):
    config = load_config(args, ui)
    have_iptables = backend.ensure_installed(ui, args.dry_run)
    tools = backend.detect() if have_iptables else backend.Tools()
    fams = families(tools, ui) if have_iptables else rules.FAMILIES
    steps = plan_apply(config, tools, fams)
    later = [] if args.no_persist else _persist_steps(config, tools)
    if args.dry_run:
        ui.info("dry run: nothing is changed. --firewall would run:")
        _show_or_run(steps + later, True, ui)
        return {"changed": False, "dry_run": True}
    before = outcome.snapshot(tools, fams)  # --json: what this run changed
    _run_all_or_nothing(steps)
    check_applied(config, tools, fams)
    reaches = "the internet" if config.profile == "internet" else "only allowed destinations"
    ui.ok("firewall applied (%s): %s (%s) reaches %s, not the LAN or this host"
          % (tools.iptables(4), config.bridge, config.subnet, reaches))
    for entry in config.allows:
        ui.info("  allowed: %s" % allow.describe(entry))
    for addr in blocked_resolvers(config):
        spec = "%s:53" % addr
        ui.warn("this host's DNS server %s is in a blocked range: with Docker before 28 the "
                "container sends its DNS queries there itself, and they are dropped; if names "
                "stop resolving in the container, run again with --allow %s" % (addr, spec))
    if later:
        _show_or_run(later, False, ui)
        ui.ok("rules restored at boot by %s (%s)" % (persist.UNIT_NAME, persist.SCRIPT))
    elif persist.installed():
        ui.warn("not persisted (--no-persist), but %s from an earlier run still restores its "
                "own rules at boot; --firewall --remove removes it" % persist.UNIT_NAME)
    return outcome.result(before, outcome.snapshot(tools, fams), iptables=tools.iptables(4),
                          families=list(fams), bridge=config.bridge, subnet=str(config.subnet),
                          profile=config.profile, allow=list(args.allow),
                          persisted=bool(later))


def remove(args, ui):
    tools = backend.detect() if backend.iptables_present() else backend.Tools()
    fams = rules.FAMILIES if backend.ipv6_state() != "off" else (4,)
    steps = plan_removal(tools, fams)
    steps += [_Action(desc, action) for desc, action in persist.plan_remove()]
    if args.dry_run:
        ui.info("dry run: nothing is changed. --firewall --remove would run:")
        _show_or_run(steps, True, ui)
        return {"changed": False, "dry_run": True, "removed": False}
    if not steps:
        ui.ok("nothing to remove: no claw-cage rules or boot persistence on this host")
        return {"changed": False, "rules_changed": False, "persistence_changed": False,
                "removed": True}
    before = outcome.snapshot(tools, fams)  # --json: what this run changed
    _run_all_or_nothing([s for s in steps if not isinstance(s, _Action)])
    _show_or_run([s for s in steps if isinstance(s, _Action)], False, ui)
    ui.ok("claw-cage firewall rules and their boot persistence removed")
    return outcome.result(before, outcome.snapshot(tools, fams), removed=True)


def main(args):
    ui = UI()
    if os.geteuid() != 0:
        raise PrereqError(NOT_ROOT)
    backend.refuse_nftables_backend()
    if args.remove:
        return remove(args, ui)
    return apply(args, ui)
