"""The firewall's rules on the host: apply() and remove(), called by --firewall's profile
flow (profiles/), which adds the egress proxy where the profile needs it.

One transaction, few commands: ONE `iptables-save` per family reads the state (and is the
copy a failure rolls back to); the plan is one `iptables-restore -n` per family holding both
tables (mangle: the first anchor; filter: the second), each checked with --test before any is
committed; ONE save per family reads the result back. Then the boot persistence.

Failures and exit codes (errors.py):
  before the first commit      nothing changed, exit 6
  after it (a commit, the self-check finding other rules, persistence)
                               every touched family restored exactly from the saved copy,
                               the message says so, exit 6
  the read-back itself failed  the rules are applied but unchecked: exit 8
  Ctrl-C or SIGTERM            held from the first commit to the end of the persistence
                               (the commands inherit the mask: none dies halfway), then
                               treated as a failure: everything restored, exit 130
The rules themselves are data in rules.py.
"""

import contextlib
import shlex
import signal

from .. import composefile, paths, runner
from ..errors import (EXIT_INTERRUPTED, FirewallError, PrereqError, UncheckedError,
                      UsageError)
from . import allow, backend, bridge, dns, host, outcome, persist, readback, rules, script


class Step:
    """One command of the plan: argv, and the text fed to its stdin (a restore input)."""

    def __init__(self, argv, stdin=None, family=None):
        self.argv, self.stdin, self.family = list(argv), stdin, family

    def show(self):
        if self.stdin is None:
            return "$ " + shlex.join(self.argv)
        return "$ %s <<'EOF'\n%sEOF" % (shlex.join(self.argv), self.stdin)

    def run(self):
        runner.run(self.argv, input=self.stdin)


def load_config(args, ui, endpoints=()):
    """Bridge and subnet of the network Compose puts the project on (composefile, the one
    reading --verify shares), else the built-in defaults; the allow list, refused (one line,
    nothing changed) where it would undo the cage. endpoints: [(--allow spec, where it comes
    from)] the proxy opens besides (local-only's Ollama baseUrl), judged as --allow is."""
    directory = paths.install_dir(args.dir)
    net = composefile.project_network(directory)
    bridge_name, subnet = net.bridge, net.subnet
    if net.how == "built-in":
        ui.info("no docker-compose.yml in %s: using the built-in network %s %s"
                % (directory, bridge_name, subnet))
    elif net.how == "none":
        ui.info("Docker Compose puts no container of %s on a network (network_mode none): "
                "the cage goes on %s %s all the same" % (directory, bridge_name, subnet))
    bridge.check(bridge_name)
    config = rules.default_config(bridge_name, subnet)
    # api-only: the agent's namespace has no interface; the bridge keeps the internet
    # profile's rules as a second layer for anything still attached to it (local-only keeps
    # its own: no internet, only the --allow destinations)
    profile = "internet" if args.profile in (None, "api-only") else args.profile
    config = config._replace(allows=allow.parse_all(args.allow), profile=profile)
    wide = getattr(args, "unsafe_wide_allow", False)
    allow.check(config.allows, _host_networks(config), config.profile, wide)
    for spec, source in endpoints:
        try:
            allow.check(config.allows + (allow.parse(spec),), _host_networks(config),
                        config.profile, wide)
        except UsageError as err:
            raise UsageError("%s in openclaw.json, judged as --allow %s: %s"
                             % (source, spec, str(err).replace("--allow %s" % spec, "it")))
    return config


def _host_networks(config):
    return allow.host_networks(next(config.subnet.hosts()), subnet=config.subnet)


def families(tools, ui):
    """4, and 6 unless the kernel has no IPv6 (ip6tables missing is fatal only when the
    host forwards IPv6: then the container could leave over it)."""
    state = host.ipv6_state()
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


class State:
    """What one `iptables-save` per family showed before any change: the plan is made from it,
    and a failed apply puts exactly it back."""

    def __init__(self, tools, fams, texts):
        self.tools, self.fams, self.texts = tools, tuple(fams), dict(texts)
        self.tables = {f: readback.parse_tables(t) for f, t in self.texts.items()}

    @classmethod
    def read(cls, ui):
        tools, v4 = backend.detect()
        fams = families(tools, ui)
        texts = {4: v4}
        if 6 in fams:
            texts[6] = backend.read_save(tools.save(6))
        return cls(tools, fams, texts)

    def chains(self, family, table):
        return self.tables.get(family, {}).get(table, {})


def plan_apply(config, state):
    """One `iptables-restore -n` per family, holding both tables; none for a family whose
    saved state already holds exactly the rule table (a re-run then changes nothing, and the
    read it was planned from is its check)."""
    return [Step([state.tools.restore(f), "-w", "-n"],
                 rules.render_restore(config, f, state.tables.get(f, {})), f)
            for f in state.fams
            if readback.compare(config, f, state.tables.get(f, {})) is not None]


def plan_removal(state):
    steps = []
    for f in state.fams:
        text = rules.render_removal(state.tables.get(f, {}))
        if text:
            steps.append(Step([state.tools.restore(f), "-w", "-n"], text, f))
    return steps


# ---- the transaction ------------------------------------------------------------------------

def _rollback(state, fams):
    """Put back the saved rule sets of `fams`: one `iptables-restore` (no -n: each table whole)
    per family. Returns the failures, as text (empty: all restored)."""
    failed = []
    for f in fams:
        try:
            runner.run([state.tools.restore(f), "-w"],
                       input=rules.render_rollback(state.texts[f]))
        except runner.CommandError as err:
            failed.append(str(err))
    return failed


def _restored_note(state, fams, failed):
    if not fams:
        return "no rule had been changed"
    names = " and ".join("IPv%d" % f for f in fams)
    if failed:
        return ("restoring the previous rules FAILED too (%s): check `iptables-save` and "
                "run this again" % "; ".join(failed))
    return "the previous %s rules were restored exactly" % names


def undo(state, fams, reason):
    """A failure after the first commit: roll back, and a FirewallError that says so."""
    failed = _rollback(state, fams)
    return FirewallError("%s; %s" % (reason, _restored_note(state, fams, failed)))


def commit(steps, state):
    """All or nothing across families. Every input is first checked with --test (parsed and
    validated by the kernel, nothing committed); only then is each committed. A commit that
    fails after the first rolls every family it touched back to the saved state."""
    for step in steps:
        try:
            runner.run(step.argv + ["--test"], input=step.stdin)
        except runner.CommandError as err:
            raise FirewallError("%s; nothing was changed" % err)
    touched = []
    for step in steps:
        touched.append(step.family)   # legacy commits table by table: a failed run may
        try:                          # have committed its first table
            step.run()
        except runner.CommandError as err:
            raise undo(state, touched, str(err))
    return touched


def check_applied(config, state, fams, read=None):
    """Read back (one save per family written; the others were checked by the read the plan
    came from) and compare with the rule table. Returns the problem text, or None when the
    kernel holds exactly the expected rules. A failing read raises UncheckedError: the rules
    are applied, only the check is missing. read: a dict that gets {family: the text read}."""
    for f in fams:
        try:
            text = runner.run([state.tools.save(f)]).stdout
        except runner.CommandError as err:
            raise UncheckedError("firewall applied, but could not be checked: %s; run "
                                 "--verify to check it" % err)
        if read is not None:
            read[f] = text
        problem = readback.compare(config, f, readback.parse_tables(text))
        if problem:
            return "%s does not hold the expected rules after applying them (%s)" % (
                state.tools.iptables(f), problem)
    return None


def _show_or_run(steps, dry_run, ui):
    for step in steps:
        if dry_run:
            ui.info(step.show())
        else:
            step.run()

def _persist_steps(config, tools):
    if not persist.systemd_installed():
        raise PrereqError("no systemd on this host, so the rules cannot come back at boot: use "
                          "--no-persist and apply them at each boot yourself (for example "
                          "with iptables-rules.sh)")
    text = script.render(config, tools.names())
    return [_Action(desc, action) for desc, action in persist.plan_install(text)]


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


def _persist(later, state, fams):
    """Install the boot persistence; on failure put the files and the rules back as they were.
    Returns the files as they were before (a later interrupt puts them back too)."""
    before = persist.snapshot()
    try:
        for step in later:
            step.run()
    except (FirewallError, runner.CommandError) as err:
        persist.restore(before)
        raise undo(state, fams, "boot persistence failed (%s), its files were put back" % err)
    return before


HELD = (signal.SIGINT, signal.SIGTERM)


@contextlib.contextmanager
def held_signals():
    """Hold Ctrl-C and SIGTERM for the block; yields arrived(): the held signal that came
    meanwhile (consumed), or None. The commands run inside inherit the mask, so a Ctrl-C on
    the terminal cannot kill an iptables-restore halfway either. One that arrives while the
    block fails is dropped: the failure's own message says what state the rules are in."""
    old = signal.pthread_sigmask(signal.SIG_BLOCK, HELD)

    def arrived():
        if set(HELD) & signal.sigpending():
            info = signal.sigtimedwait(HELD, 0)
            return info.si_signo if info else None
        return None
    try:
        yield arrived
    finally:
        while arrived():
            pass
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def interrupted(state, fams, signo, files=None):
    """An interrupt held during the change: put the boot files (files: persist.snapshot()
    from before) and the rules back, like any failure after the first commit; exit 130."""
    if files is not None:
        persist.restore(files)
    name = "Ctrl-C" if signo == signal.SIGINT else "SIGTERM"
    err = undo(state, fams, "interrupted (%s, held until the change ended)%s" % (
        name, "; the boot files were put back" if files is not None else ""))
    err.exit_code = EXIT_INTERRUPTED
    return err


def apply(args, ui, endpoints=()):
    config = load_config(args, ui, endpoints)
    have_iptables = backend.ensure_installed(ui, args.dry_run)
    if have_iptables:
        state = State.read(ui)
    else:   # dry run on a host without iptables: plan against an empty firewall
        state = State(backend.Tools(), rules.FAMILIES, {f: "" for f in rules.FAMILIES})
    parent = host.parent_to_use(state.chains(4, "filter"))
    config = config._replace(parent=parent)
    steps = plan_apply(config, state)
    later = [] if args.no_persist else _persist_steps(config, state.tools)
    if args.dry_run:
        ui.info("dry run: nothing is changed. --firewall would run:")
        _show_or_run(steps + later, True, ui)
        return {"changed": False, "dry_run": True}
    before = outcome.snapshot(state.tools, state.fams, state.texts)  # --json: what changed
    with held_signals() as arrived:   # an interrupt from here on rolls back, like a failure
        fams = commit(steps, state)
        unchecked = problem = files = None
        # the rules as they are now, for --json's "what changed": a family no step touched is
        # as the first read found it, a written one as its read-back found it (no third read)
        now = dict(state.texts)
        try:
            if steps:
                problem = check_applied(config, state, fams, now)
        except UncheckedError as err:
            unchecked = err
        if problem:
            raise undo(state, fams, problem)
        if later:   # before the summary: a failure here still takes the rules back
            files = _persist(later, state, fams)
        signo = arrived()
        if signo:
            raise interrupted(state, fams, signo, files)
    # what is open, exactly: never "not the LAN" while an --allow reaches it, or the user
    # believes the cage is closed where they opened it
    opened = allow.summary(config.allows, _host_networks(config), config.profile)
    reaches = "the internet" if config.profile == "internet" else "only allowed destinations"
    closed = "" if any(warning for warning, _, _ in opened) else ", not the LAN or this host"
    say = ui.warn if unchecked else ui.ok   # exit 8 below: never an "ok" it could not check
    say("firewall applied%s (%s): %s (%s) reaches %s%s"
        % (" (not read back)" if unchecked else "", state.tools.iptables(4), config.bridge,
           config.subnet, reaches, closed))
    unreached = ["IPv%d" % f for f in state.fams
                 if not host.parent_reached(state.chains(f, "filter"), parent, f)]
    if unreached:   # our restore never edits FORWARD: the read before it still holds
        ui.warn("judged once, by mangle PREROUTING: FORWARD does not jump to %s (%s), so the "
                "second anchor sees no forwarded packet until Docker puts that jump back: "
                "start or restart Docker (sudo systemctl restart docker)"
                % (parent, ", ".join(unreached)))
    else:
        ui.info("  judged twice: mangle PREROUTING (before routing) and %s + INPUT" % parent)
    for warning, _, text in opened:
        if warning:
            ui.warn(text)
        else:
            ui.info("  " + text)
    dns.warn(ui, config, paths.install_dir(args.dir))
    if later:
        ui.ok("rules restored at boot by %s (%s)" % (persist.UNIT_NAME, persist.SCRIPT))
    elif persist.installed():
        ui.warn("not persisted (--no-persist), but %s from an earlier run still restores its "
                "own rules at boot; --firewall --remove removes it" % persist.UNIT_NAME)
    if unchecked:
        raise unchecked
    return outcome.result(before, outcome.snapshot(state.tools, state.fams, now),
                          iptables=state.tools.iptables(4), families=list(state.fams),
                          bridge=config.bridge, subnet=str(config.subnet),
                          profile=config.profile, allow=list(args.allow), persisted=bool(later))


def remove(args, ui):
    if backend.iptables_present():
        state = State.read(ui)
        steps = plan_removal(state)
    else:
        state, steps = None, []
    later = [_Action(desc, action) for desc, action in persist.plan_remove()]
    if args.dry_run:
        ui.info("dry run: nothing is changed. --firewall --remove would run:")
        _show_or_run(steps + later, True, ui)
        return {"changed": False, "dry_run": True, "removed": False}
    if not steps and not later:
        ui.ok("nothing to remove: no claw-cage rules or boot persistence on this host")
        return {"changed": False, "rules_changed": False, "persistence_changed": False,
                "removed": True}
    tools, all_fams = (state.tools, state.fams) if state else (None, ())
    before = outcome.snapshot(tools, all_fams, state.texts if state else None)  # --json
    with held_signals() as arrived:
        fams = commit(steps, state) if steps else []
        files = _persist(later, state, fams) if later else None
        signo = arrived()
        if signo:
            raise interrupted(state, fams, signo, files)
    ui.ok("claw-cage firewall rules and their boot persistence removed")
    return outcome.result(before, outcome.snapshot(tools, all_fams), removed=True)
