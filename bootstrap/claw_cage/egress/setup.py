"""--firewall --profile api-only (or local-only): install the egress proxy; --firewall --remove:
take it out. Both profiles are the same design; local-only lists only the Ollama endpoints
(domains.endpoints), each HOST:PORT, and no default port.

prepare() reads and checks everything first (the domain list, the program file, the folders)
and changes nothing, so a refusal leaves the host as it was. install() then writes
/etc/claw-cage/proxy.json, the root-owned copy of the program, the unit and its enable link,
starts the service through systemctl (where systemd runs), and sets COMPOSE_FILE in .env.
"""

import os
import stat
import time

from .. import paths, runner, safefile
from ..errors import PrereqError, TargetError
from . import config, domains, envfile, temporary, unit

LOG_FILE = "/var/log/claw-cage-proxy.log"   # without systemd (no journal): --refused reads it


class Plan:
    __slots__ = ("directory", "names", "why", "unknown", "program", "local", "expires", "ended")

    def __init__(self, directory, names, why, unknown, program, local=False, expires=None,
                 ended=()):
        self.directory, self.names, self.why = directory, names, why
        self.unknown, self.program, self.local = unknown, program, local
        self.expires, self.ended = expires or {}, ended

    def reach(self):
        return "these endpoints (Ollama)" if self.local else "these names, on port 443"


def systemd_running():
    return os.path.isdir("/run/systemd/system")


def _check_root_dir(path):
    """A folder root runs or reads config from: root's, writable only by root."""
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != 0 or \
            st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise TargetError("%s must be a directory owned by root and writable only by root; "
                          "fix or remove it, then run this again" % path)


def prepare(args):
    directory = paths.install_dir(args.dir)
    local = args.profile == "local-only"
    for_, now = args.allow_for, time.time()
    names, why, unknown = (domains.endpoints(directory, args.allow) if local else
                           domains.default_list(directory, () if for_ else args.allow_domain))
    expires, ended = {}, []
    if not local:   # temporary entries: the earlier ones still running, and this run's --for
        try:
            expires, ended = temporary.carry(temporary.read_current(), now)
        except TargetError:
            pass        # a file the proxy refuses: this run replaces it
        expires.update(dict.fromkeys(args.allow_domain if for_ else (), now + (for_ or 0)))
        expires = dict((n, t) for n, t in expires.items() if n not in why)   # listed for good
        for name in sorted(expires):
            names.append(name)
            why[name] = "--allow-domain, until %s" % temporary.until_text(expires[name])
    env_text = safefile.read_text(envfile.path_of(directory)) or ""
    own = envfile.current(env_text)
    if own not in (None, envfile.API_ONLY):
        raise TargetError("COMPOSE_FILE in %s already chooses %s: %s sets it to %s; "
                          "remove that line (or set it yourself), then run this again"
                          % (envfile.path_of(directory), own or "something", args.profile,
                             envfile.API_ONLY))
    program = paths.program_file()
    if program is None:
        raise PrereqError("--profile %s installs this program as a service: run the "
                          "claw-cage.pyz file (sudo python3 ~/claw-cage/claw-cage.pyz ...), "
                          "not a pipe" % args.profile)
    for folder in (config.ETC_DIR, unit.LIB_DIR):
        if os.path.lexists(folder):
            _check_root_dir(folder)
    return Plan(directory, names, why, unknown, program, local, expires, ended)


def _mkdir(path):
    if not os.path.lexists(path):
        os.makedirs(path, 0o755)
        os.chmod(path, 0o755)  # nosec B103: root's, readable like the rest of /etc and /usr
    _check_root_dir(path)


def _read_program(path):
    """The running program's bytes, read as root the defensive way (no symlink, no FIFO)."""
    data = safefile.read(path)
    if data is None:
        raise TargetError("%s is gone: run the claw-cage.pyz file again" % path)
    return data


def _link(target, path):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = "%s.tmp-%d" % (path, os.getpid())
    os.symlink(target, tmp)
    os.replace(tmp, path)


def _run_dirs():
    for sub, owner in (("egress", 0), ("gateway", unit.CONTAINER_UID)):
        path = os.path.join(config.RUN_DIR, sub)
        os.makedirs(path, 0o755, exist_ok=True)
        st = os.lstat(path)
        if not stat.S_ISDIR(st.st_mode):
            raise TargetError("%s is not a directory: remove it, then run this again" % path)
        os.chown(path, owner, owner)
        os.chmod(path, 0o755)  # nosec B103: a folder others must enter to reach the sockets


def describe(plan):
    """The lines the summary prints: the list, each name with why it is there."""
    return ["  %s  (%s)" % (n, plan.why[n]) for n in plan.names]


def only_the_list_changes(plan, text):
    """Whether the running service takes this run by a reload (open tunnels stay): the same
    unit and program copy, and a proxy.json that differs in what a reload changes alone."""
    try:
        old, new = config.parse(safefile.read_text(config.PATH) or ""), config.parse(text)
    except ValueError:
        return False
    return (all(getattr(old, f) == getattr(new, f) for f in old._fields
                if f not in config.owner().RELOADED)
            and safefile.read_text(unit.UNIT) == unit.TEXT
            and safefile.read(unit.PROGRAM) == _read_program(plan.program)
            and runner.run(["systemctl", "is-active", unit.UNIT_NAME],
                           check=False).stdout.strip() == "active")


def install(plan, ui, dry_run=False):
    running = systemd_running()
    rendered = config.render(plan.names, () if plan.local else (443,), plan.expires,
                             "-" if running else LOG_FILE)
    how = "reload" if running and only_the_list_changes(plan, rendered) else "restart"
    actions = [
        ("write %s (the domain list)" % config.PATH,
         lambda: (_mkdir(config.ETC_DIR),
                  safefile.write_atomic(config.PATH, rendered.encode(), 0o644))),
        ("copy %s to %s (root-owned)" % (plan.program, unit.PROGRAM),
         lambda: (_mkdir(unit.LIB_DIR),
                  safefile.write_atomic(unit.PROGRAM, _read_program(plan.program), 0o644))),
    ]
    have_units = os.path.isdir(unit.UNIT_DIR)
    if have_units:
        actions.append(("write %s" % unit.UNIT,
                        lambda: safefile.write_atomic(unit.UNIT, unit.TEXT.encode(), 0o644)))
    if have_units and not running:   # systemd reads the link at its next start
        actions.append(("ln -sf %s %s (what `systemctl enable` does)" % (unit.UNIT, unit.WANTS),
                        lambda: _link(unit.UNIT, unit.WANTS)))
    if running:   # restart, not start: a re-run's new program takes effect; a new list alone
        # is a reload, which keeps open tunnels (the dashboard's) up
        for argv in (["systemctl", "daemon-reload"], ["systemctl", "enable", unit.UNIT_NAME],
                     ["systemctl", how, unit.UNIT_NAME]):
            actions.append(("$ " + " ".join(argv), lambda argv=argv: runner.run(argv)))
    else:   # what RuntimeDirectory and ExecStartPre do, for the foreground command
        actions.append(("mkdir %s/egress; %s/gateway owned by uid %d"
                        % (config.RUN_DIR, config.RUN_DIR, unit.CONTAINER_UID), _run_dirs))
    actions.append(("set %s=%s in %s" % (envfile.KEY, envfile.API_ONLY,
                                         envfile.path_of(plan.directory)),
                    lambda: envfile.edit(plan.directory, envfile.with_compose_file)))
    if dry_run:
        ui.info("the egress proxy would let the agent reach %s:" % plan.reach())
        for line in describe(plan) or ["  nothing"]:
            ui.info(line)
        for text, _ in actions:
            ui.info(text)
        return {"allow": plan.names, "service": "dry run"}
    for text, action in actions:
        try:
            action()
        except OSError as err:
            raise TargetError("%s: %s" % (text, err.strerror or err))
    ui.ok("egress proxy: the agent reaches only %s:" % plan.reach())
    for line in describe(plan):
        ui.info(line)
    for name in plan.unknown:
        ui.warn("channel %s in openclaw.json: claw-cage knows no host for it; add it with "
                "--allow-domain NAME" % name)
    if not plan.names:
        ui.warn("the list is empty: %s; the agent reaches nothing until you add %s" % (
            ("no models.providers.ollama.baseUrl in openclaw.json", "--allow ADDRESS:PORT")
            if plan.local else ("no provider key in .env, no channel in openclaw.json",
                                "--allow-domain NAME")))
    for name in plan.ended:
        ui.info("  %s: its temporary entry ended, removed from the list" % name)
    if running:
        service = "reloaded" if how == "reload" else "started"
        ui.ok("%s %s, from the root-owned copy %s%s" % (
            unit.UNIT_NAME, service, unit.PROGRAM, " (only the list changed: open connections "
            "stay)" if how == "reload" else ""))
    else:
        service = "not started: no systemd"
        ui.warn("systemd is not running here (PID 1 is not systemd): start the proxy yourself "
                "as root, and keep it running: %s" % unit.foreground_command())
    if not os.path.isfile(os.path.join(plan.directory, envfile.API_ONLY)):
        ui.warn("%s is not in %s: re-run the installer to get it"
                % (envfile.API_ONLY, plan.directory))
    ui.info("  then: cd %s && docker compose up -d   (%s=%s in .env picks the api-only stack)"
            % (plan.directory, envfile.KEY, envfile.API_ONLY))
    return {"allow": plan.names, "service": service, "unit": unit.UNIT if have_units else None}


def installed():
    return any(os.path.lexists(p) for p in (config.PATH, unit.UNIT, unit.WANTS, unit.LIB_DIR))


def plan_remove(directory):
    """[(description, action)] that take the proxy out; [] when nothing of it is there (the
    .env line alone still goes)."""
    steps = []
    if os.path.lexists(unit.UNIT) and systemd_running():
        argv = ["systemctl", "disable", "--now", unit.UNIT_NAME]
        steps.append(("$ " + " ".join(argv), lambda: runner.run(argv, check=False)))

    def unlink(path):
        return lambda: os.unlink(path) if os.path.lexists(path) else None

    for path in (unit.WANTS, unit.UNIT, config.PATH, unit.PROGRAM):
        if os.path.lexists(path):
            steps.append(("rm -f %s" % path, unlink(path)))

    def rmdir():
        if os.path.isdir(unit.LIB_DIR) and not os.listdir(unit.LIB_DIR):
            os.rmdir(unit.LIB_DIR)
    if os.path.lexists(unit.LIB_DIR):
        steps.append(("rmdir %s" % unit.LIB_DIR, rmdir))
    if steps and systemd_running():
        steps.append(("$ systemctl daemon-reload",
                      lambda: runner.run(["systemctl", "daemon-reload"])))
    steps.append(("remove %s=%s from %s" % (envfile.KEY, envfile.API_ONLY,
                                            envfile.path_of(directory)),
                  lambda: envfile.edit(directory, envfile.without_compose_file)))
    return steps


def remove(args, ui, dry_run=False):
    """Take the proxy out. Returns whether anything changed."""
    directory = paths.install_dir(args.dir)
    had = installed()
    steps = plan_remove(directory)
    if dry_run:
        for text, _ in steps:
            ui.info(text)
        return False
    changed = False
    for text, action in steps:
        try:
            changed = bool(action()) or changed
        except OSError as err:
            raise TargetError("%s: %s" % (text, err.strerror or err))
    if had:
        ui.ok("egress proxy removed (%s, %s, %s)" % (unit.UNIT_NAME, config.PATH, unit.LIB_DIR))
    if changed:
        ui.ok("%s removed from .env: docker compose up -d runs docker-compose.yml again"
              % envfile.KEY)
    return had or changed
