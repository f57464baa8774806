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

from .. import composefile, deployment, paths, runner, safefile
from ..errors import FirewallError, PrereqError, TargetError, UsageError
from . import config, domains, envfile, keys, temporary, unit

LOG_FILE = "/var/log/claw-cage-proxy.log"   # without systemd (no journal): --refused reads it


class Plan:
    __slots__ = ("directory", "names", "why", "unknown", "program", "local", "expires", "ended",
                 "namespace", "values", "keys", "routes", "openclaw", "inside", "root", "clients")

    def __init__(self, directory, names, why, unknown, program, local=False, expires=None,
                 ended=()):
        self.directory, self.names, self.why = directory, names, why
        self.unknown, self.program, self.local = unknown, program, local
        self.expires, self.ended = expires or {}, ended
        self.namespace, self.values, self.keys, self.routes = True, {}, [], []
        self.openclaw, self.inside, self.root, self.clients = None, [], None, []

    def reach(self):
        return "these endpoints (Ollama)" if self.local else "these names, on port 443"


def systemd_running():
    return os.path.isdir("/run/systemd/system")


def _check_root_dir(path):
    """A folder root runs or reads config from: root's, writable only by root."""
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != 0 or \
            st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise FirewallError("%s must be a directory owned by root and writable only by root; "
                          "fix or remove it, then run this again" % path)


def prepare(args):
    """Every check first, nothing changed. Every profile moves the keys out of the agent;
    the internet profile runs the proxy for its routes only (the agent has the internet)."""
    directory = paths.install_dir(args.dir)
    local = args.profile == "local-only"
    namespace = args.profile in ("api-only", "local-only")
    for_, now = args.allow_for, time.time()
    if not namespace:
        names, why, unknown = [], {}, []
    elif local:
        names, why, unknown = domains.endpoints(directory, args.allow)
    else:
        names, why, unknown = domains.default_list(directory, () if for_ else args.allow_domain)
    expires, ended = {}, []
    if namespace and not local:   # temporary entries: the earlier ones still running, this --for
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
    if namespace and own not in (None, envfile.API_ONLY):
        raise TargetError("COMPOSE_FILE in %s already chooses %s: %s sets it to %s; "
                          "remove that line (or set it yourself), then run this again"
                          % (envfile.path_of(directory), own or "something", args.profile,
                             envfile.API_ONLY))
    program = paths.program_file()
    if program is None:
        raise PrereqError("--firewall installs claw-cage's proxy as a service (it holds the "
                          "keys): run the claw-cage.pyz file (sudo python3 "
                          "~/claw-cage/claw-cage.pyz ...), not a pipe")
    for folder in (config.ETC_DIR, unit.LIB_DIR):
        if os.path.lexists(folder):
            _check_root_dir(folder)
    plan = Plan(directory, names, why, unknown, program, local, expires, ended)
    # local-only reaches Ollama alone: no provider or Telegram route, no key to move
    plan.namespace, plan.values = namespace, {} if local else domains.read_env(directory)
    plan.keys = keys.moved(plan.values)
    plan.inside = keys.inside(domains.read_env(directory), domains.read_openclaw(directory))
    ollama = names[0] if local and names and why[names[0]].startswith("models.") else None
    if ollama:   # the Ollama endpoint becomes a route: out of the CONNECT list
        names.remove(ollama)
        ollama = ollama.replace("host.docker.internal", "127.0.0.1").replace(
            "localhost", "127.0.0.1")
    served = set(h for k, h in domains.PROVIDERS if k in plan.keys)
    if keys.TELEGRAM in plan.keys:
        served.add("api.telegram.org")
    names[:] = [n for n in names if n not in served]   # a routed provider: never by CONNECT
    try:
        budgets = keys.parse_budgets(args.budget, [r["name"] for r in keys.routes(
            plan.values, ollama)])
    except ValueError as err:
        raise UsageError(str(err))
    plan.routes = keys.routes(plan.values, ollama, budgets)
    subnet = composefile.declared_network(directory).subnet
    gateway = next(subnet.hosts())
    # the TCP routes listener (internet) serves this network alone: a LAN neighbour routing
    # the subnet via this host reaches the bridge's address too (Linux is a weak host)
    plan.clients = [] if namespace else [str(subnet)]
    plan.root = "http://%s:%d" % ("127.0.0.1" if namespace else gateway, keys.PORT)
    plan.openclaw = keys.openclaw_config(plan.values, plan.root, bool(ollama))
    return plan


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


def copy_program(path):
    """The root-owned copy every claw-cage unit runs (the proxy's, the backup's)."""
    _mkdir(unit.LIB_DIR)
    safefile.write_atomic(unit.PROGRAM, _read_program(path), 0o644)


def _link(target, path):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = "%s.tmp-%d" % (path, os.getpid())
    os.symlink(target, tmp)
    os.replace(tmp, path)


def _run_dirs():
    for sub, owner in (("egress", 0), ("gateway", deployment.RELAY_UID)):
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


def _write_openclaw(plan):
    """The generated config the gateway reads, owned and mode 600 like openclaw.json, which
    it includes (the installer, as root, gives both to the gateway's uid), else the folder."""
    own = os.path.join(plan.directory, "openclaw.json")
    st = os.stat(own if os.path.isfile(own) else plan.directory)
    path = os.path.join(plan.directory, keys.CONFIG)
    tmp = safefile.stage(plan.directory, keys.CONFIG, plan.openclaw.encode(), 0o600,
                         (st.st_uid, st.st_gid))
    os.replace(tmp, path)


def _same_keys(plan):
    """Whether the store already holds exactly this run's keys: LoadCredential= copies them
    at the service's start only, so a changed key needs a restart, not a reload."""
    try:
        return sorted(os.listdir(keys.STORE)) == sorted(plan.keys) and all(
            safefile.read(os.path.join(keys.STORE, k)) == plan.values[k].encode("utf-8")
            for k in plan.keys)
    except (OSError, TargetError):
        return False


def only_the_list_changes(plan, text):
    """Whether the running service takes this run by a reload (open tunnels stay): the same
    unit, program copy and keys, and a proxy.json that differs in what a reload changes alone."""
    try:
        old, new = config.parse(safefile.read_text(config.PATH) or ""), config.parse(text)
    except ValueError:
        return False
    return (all(getattr(old, f) == getattr(new, f) for f in old._fields
                if f not in config.owner().RELOADED)
            and safefile.read_text(unit.UNIT) == unit.text(plan.keys, keys.STORE)
            and safefile.read(unit.PROGRAM) == _read_program(plan.program)
            and _same_keys(plan)
            and runner.run(["systemctl", "is-active", unit.UNIT_NAME],
                           check=False).stdout.strip() == "active")


def install(plan, ui, dry_run=False):
    if not plan.namespace and not plan.routes:
        return _no_routes(plan, ui, dry_run)
    listen = ["unix:" + keys.SOCKET] if plan.namespace else [plan.root.split("//", 1)[1]]
    running = systemd_running()
    rendered = config.render(plan.names, () if plan.local or not plan.namespace else (443,),
                             plan.expires, "-" if running else LOG_FILE, plan.routes, listen,
                             None if running or not plan.keys else keys.STORE, plan.namespace,
                             plan.clients)
    how = "reload" if running and only_the_list_changes(plan, rendered) else "restart"
    actions = [
        ("write %s (the keys: %s)" % (keys.STORE, ", ".join(plan.keys) or "none"),
         lambda: (_mkdir(config.ETC_DIR), keys.write_store(plan.values, plan.keys))),
        ("write %s (%s)" % (config.PATH, "the domain list and the routes" if plan.namespace
                            else "the routes"),
         lambda: safefile.write_atomic(config.PATH, rendered.encode(), 0o644)),
        ("copy %s to %s (root-owned)" % (plan.program, unit.PROGRAM),
         lambda: copy_program(plan.program)),
    ]
    have_units = os.path.isdir(unit.UNIT_DIR)
    unit_text = unit.text(plan.keys, keys.STORE)
    if have_units:
        actions.append(("write %s" % unit.UNIT,
                        lambda: safefile.write_atomic(unit.UNIT, unit_text.encode(), 0o644)))
    if have_units and not running:   # systemd reads the link at its next start
        actions.append(("ln -sf %s %s (what `systemctl enable` does)" % (unit.UNIT, unit.WANTS),
                        lambda: _link(unit.UNIT, unit.WANTS)))
    if running:   # restart, not start: a re-run's new program and keys take effect; a new
        # list alone is a reload, which keeps open tunnels (the dashboard's) up
        for argv in (["systemctl", "daemon-reload"], ["systemctl", "enable", unit.UNIT_NAME],
                     ["systemctl", how, unit.UNIT_NAME]):
            actions.append(("$ " + " ".join(argv), lambda argv=argv: runner.run(argv)))
    else:   # what RuntimeDirectory and ExecStartPre do, for the foreground command
        actions.append(("mkdir %s/egress; %s/gateway owned by uid %d"
                        % (config.RUN_DIR, config.RUN_DIR, deployment.RELAY_UID), _run_dirs))
    actions.append(("write %s (the agent's providers at the routes, placeholder keys)"
                    % os.path.join(plan.directory, keys.CONFIG), lambda: _write_openclaw(plan)))
    if plan.namespace:
        actions.append(("set %s=%s in %s" % (envfile.KEY, envfile.API_ONLY,
                                             envfile.path_of(plan.directory)),
                        lambda: envfile.edit(plan.directory, envfile.with_compose_file)))
    else:
        actions.append(("remove %s=%s from %s" % (envfile.KEY, envfile.API_ONLY,
                                                  envfile.path_of(plan.directory)),
                        lambda: envfile.edit(plan.directory, envfile.without_compose_file)))
    if dry_run:
        if plan.namespace:
            ui.info("the egress proxy would let the agent reach %s:" % plan.reach())
            for line in describe(plan) or ["  nothing"]:
                ui.info(line)
        for text, _ in actions:
            ui.info(text)
        return {"allow": plan.names, "keys": plan.keys, "service": "dry run"}
    for text, action in actions:
        try:
            action()
        except OSError as err:
            raise TargetError("%s: %s" % (text, err.strerror or err))
    if plan.namespace:
        ui.ok("egress proxy: the agent reaches only %s:" % plan.reach())
        for line in describe(plan):
            ui.info(line)
    report_keys(plan, ui)
    for name in plan.unknown:
        ui.warn("channel %s in openclaw.json: claw-cage knows no host for it; add it with "
                "--allow-domain NAME" % name)
    if plan.namespace and not plan.names and not plan.routes:
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
        ui.warn("SYSTEMD IS NOT RUNNING HERE (PID 1 is not systemd): the proxy is not started, "
                "and until it runs the agent reaches no model. Start it yourself as root and "
                "keep it running (it reads the keys from %s itself, keys_dir in %s): %s"
                % (keys.STORE, config.PATH, unit.foreground_command()))
    compose = envfile.API_ONLY if plan.namespace else "docker-compose.yml"
    if not os.path.isfile(os.path.join(plan.directory, compose)):
        ui.warn("%s is not in %s: re-run the installer to get it" % (compose, plan.directory))
    ui.info("  then: cd %s && docker compose up -d   (the gateway gets the new config; %s)"
            % (plan.directory, "%s=%s in .env picks the api-only stack" % (
                envfile.KEY, envfile.API_ONLY) if plan.namespace else "docker-compose.yml"))
    return {"allow": plan.names, "keys": plan.keys, "inside": plan.inside,
            "routes": [r["name"] for r in plan.routes], "service": service,
            "unit": unit.UNIT if have_units else None}


def _no_routes(plan, ui, dry_run):
    """The internet profile with no key in .env: no proxy to run; the gateway's config
    without routes."""
    steps = [("write %s without routes" % os.path.join(plan.directory, keys.CONFIG),
              lambda: _write_openclaw(plan))]
    if os.path.lexists(keys.STORE):
        steps.append(("rm -r %s" % keys.STORE, keys.remove_store))
    for text, action in steps:
        if dry_run:
            ui.info(text)
            continue
        try:
            action()
        except OSError as err:
            raise TargetError("%s: %s" % (text, err.strerror or err))
    report_keys(plan, ui)
    if installed() and not dry_run:
        ui.warn("claw-cage's proxy from an earlier run is still installed (and COMPOSE_FILE in "
                ".env may still choose the api-only stack): --firewall --remove takes it out")
    return {"allow": [], "keys": [], "inside": plan.inside, "routes": [], "service": None}


def report_keys(plan, ui):
    """Name each key moved and each token left inside; never a value."""
    if plan.keys:
        ui.ok("keys outside the agent: %s moved to %s; the agent holds placeholders and "
              "reaches %s through the proxy's routes (%s)"
              % (", ".join(plan.keys), keys.STORE, ", ".join(r["name"] for r in plan.routes),
                 plan.root))
        ui.info("  rotate a key: edit it in .env, run this again (the values stay in .env "
                "too: keep it mode 600)")
    elif plan.local:
        ui.info("  local-only: the agent reaches Ollama alone (its route); no key to move")
    else:
        ui.info("  no provider key or TELEGRAM_BOT_TOKEN in .env: no key to move")
    for name in plan.inside:
        ui.warn("%s stays inside the container: its token travels inside a WebSocket, which "
                "no route can serve without intercepting TLS" % name)
    budgets = ["%s %s" % (r["name"], "%(hour)d/hour, %(day)d/day" % r["budget"])
               for r in plan.routes if r["budget"]]
    if budgets:
        ui.info("  budget (--budget): " + "; ".join(budgets))


# The folders claw-cage makes, deepest first; in the run folders only the sockets are ours.
OUR_DIRS = (unit.LIB_DIR, config.ETC_DIR, os.path.dirname(config.EGRESS_SOCKET),
            os.path.dirname(config.GATEWAY_SOCKET), config.RUN_DIR)
OUR_SOCKETS = (config.EGRESS_SOCKET, config.GATEWAY_SOCKET, keys.SOCKET)


def _rmdir_ours(folder):
    """Remove folder when it holds nothing but a socket of ours; anything else keeps it."""
    if os.path.islink(folder):   # systemd's link to a runtime folder it has cleaned
        if not os.path.exists(folder):
            os.unlink(folder)
        return
    if not os.path.isdir(folder):
        return
    for name in os.listdir(folder):
        path = os.path.join(folder, name)
        if path not in OUR_SOCKETS or not stat.S_ISSOCK(os.lstat(path).st_mode):
            return
    for name in os.listdir(folder):
        os.unlink(os.path.join(folder, name))
    os.rmdir(folder)


def installed():
    lib = () if unit.program_used_by(unit.UNIT) else (unit.LIB_DIR,)   # the backup's, too
    return any(os.path.lexists(p) for p in (config.PATH, unit.UNIT, unit.WANTS, keys.STORE)
               + lib)


def plan_remove(directory):
    """[(description, action)] that take the proxy out; [] when nothing of it is there (the
    .env line alone still goes)."""
    steps = []
    if os.path.lexists(unit.UNIT) and systemd_running():
        # clean: the kept RuntimeDirectory (DynamicUser: a link into /run/private) goes too
        for argv in (["systemctl", "disable", "--now", unit.UNIT_NAME],
                     ["systemctl", "clean", "--what=runtime", unit.UNIT_NAME]):
            steps.append(("$ " + " ".join(argv),
                          lambda argv=argv: runner.run(argv, check=False)))

    def unlink(path):
        return lambda: os.unlink(path) if os.path.lexists(path) else None

    # the program copy stays while the backup's unit runs it
    mine = (unit.WANTS, unit.UNIT, config.PATH) + (() if unit.program_used_by(unit.UNIT)
                                                   else (unit.PROGRAM,))
    for path in mine:
        if os.path.lexists(path):
            steps.append(("rm -f %s" % path, unlink(path)))

    if os.path.lexists(keys.STORE):
        steps.append(("rm -r %s (the keys; they stay in your .env)" % keys.STORE,
                      keys.remove_store))
    generated = os.path.join(directory, keys.CONFIG)
    if os.path.lexists(generated):   # the compose files mount it: a plain include, no route
        steps.append(("write %s without routes" % generated,
                      lambda: safefile.write_atomic(generated, keys.openclaw_config({}, None))))
    for folder in OUR_DIRS:
        if os.path.lexists(folder):
            steps.append(("rmdir %s (when nothing but ours is left in it)" % folder,
                          lambda folder=folder: _rmdir_ours(folder)))
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
