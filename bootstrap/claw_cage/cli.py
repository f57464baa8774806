"""Command line: parse, pick the mode, turn expected errors into one line and an exit code.

Modes follow what the user does: install/upgrade (default), --firewall, --verify,
--harden-docker, --proxmox, --proxy, and --backup/--restore/--rollback. Each mode is its own
subpackage (install/, firewall/, verify/, harden/, proxmox/, proxy/, backup/), imported only
when chosen, so `--version` and `--help` stay fast.
"""

import argparse
import sys

from . import __version__
from . import buildinfo
from .errors import (EXIT_INTERNAL, EXIT_INTERRUPTED, EXIT_USAGE, EXIT_CODES_HELP,
                     ClawCageError)

PROG = "claw-cage.pyz"

DESCRIPTION = """\
Install or upgrade claw-cage (OpenClaw in a hardened Docker container that cannot reach
your LAN), isolate it with the host firewall, and verify the result.

  curl -fsSL <url>/claw-cage.pyz | python3 -          install or upgrade
  sudo python3 ~/claw-cage/claw-cage.pyz --firewall   isolate the container from the LAN
  python3 ~/claw-cage/claw-cage.pyz --verify          check that the cage holds"""

EPILOG = """environment:
  CLAW_CAGE_DIR     install directory when --dir is not given (default: the folder of this
                    claw-cage.pyz when it holds claw-cage's docker-compose.yml, else ~/claw-cage)
  CLAW_CAGE_SOURCE  where to fetch the deploy files when --source is not given
  CLAW_CAGE_TIMEOUT seconds allowed for each download (default 30)
  CLAW_CAGE_HEALTH_TIMEOUT
                    seconds the gateway may take to become healthy after a restore, rollback
                    or upgrade (default 120)
  CLAW_CAGE_INTERNET_PROBE
                    --verify: the internet API to probe, HOST:PORT, or off
  CLAW_CAGE_PROBE_START_TIMEOUT
                    --verify: seconds the probe container may take to start (default 30)
  NO_COLOR          plain output even on a terminal

""" + EXIT_CODES_HELP


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (not the whole usage block) and exit 2."""

    def error(self, message):
        sys.stderr.write("%s: error: %s (see --help)\n" % (self.prog, message))
        sys.exit(EXIT_USAGE)


def build_parser():
    p = _Parser(prog=PROG, description=DESCRIPTION, epilog=EPILOG,
                formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--firewall", action="store_true",
                      help="apply the LAN-isolation firewall (needs root)")
    mode.add_argument("--verify", action="store_true",
                      help="run the verification matrix and report what holds")
    mode.add_argument("--version", action="store_true", help="print the version and exit")
    add_layer_modes(p, mode)
    add_proxy_mode(p, mode)
    add_refused_mode(p, mode)
    add_backup_modes(p, mode)

    p.add_argument("--dir", metavar="DIR",
                   help="install directory (default: $CLAW_CAGE_DIR or ~/claw-cage)")
    p.add_argument("--dry-run", action="store_true",
                   help="say what would be done, change nothing")
    p.add_argument("-v", "--verbose", action="store_true",
                   help="log every external command that runs")

    g = p.add_argument_group("install / upgrade (the default mode)")
    g.add_argument("--source", metavar="URL|DIR",
                   help="where the deploy files are: https://, http:// or file:// URL, or a "
                        "directory (default: $CLAW_CAGE_SOURCE or the GitHub release this was "
                        "built from)")
    g.add_argument("--yes", action="store_true", help="never prompt")

    g = p.add_argument_group("--firewall options")
    g.add_argument("--allow", metavar="SPEC", action="append", default=[],
                   help="also allow ADDRESS[/PREFIX][:PORT] beyond the host, or host:PORT "
                        "on the host itself; repeatable")
    g.add_argument("--profile", choices=("internet", "local-only", "api-only"), default=None,
                   help="internet (default): reach the internet, not the LAN; "
                        "local-only: api-only's design, reaching only the Ollama endpoint "
                        "(openclaw.json) and --allow ADDRESS:PORT; "
                        "api-only: no network of its own, only listed domains through "
                        "claw-cage's egress proxy")
    g.add_argument("--no-persist", action="store_true",
                   help="apply now but do not restore the rules at boot")
    g.add_argument("--remove", action="store_true",
                   help="remove claw-cage's rules and their persistence")

    # an allow list that opens a whole blocked range, everything, more than a /24 (IPv4) or
    # /64 (IPv6) of blocked space, or cloud metadata with a port, is refused without it: such
    # a list undoes the cage, so it must be asked for in so many words
    g.add_argument("--unsafe-wide-allow", action="store_true",
                   help="let --allow open a whole LAN range, more than a /24 (IPv6: /64) of "
                        "blocked addresses, or cloud metadata with a port: the LAN is then NOT "
                        "fully blocked")

    add_egress_options(g)

    g = p.add_argument_group("--verify options")
    g.add_argument("--json", action="store_true",
                   help="print the results as JSON (also for install and --firewall: one "
                        "object on stdout, the human lines on stderr)")
    return p


# -- api-only: the egress proxy's domain list ---------------------------------------------------
def add_egress_options(g):
    g.add_argument("--allow-domain", metavar="NAME", action="append", default=[],
                   type=_domain,
                   help="--profile api-only: also let the agent reach NAME (or *.SUFFIX, its "
                        "subdomains) on port 443 through the egress proxy; repeatable. "
                        "Without --firewall, with --for: add it to the running proxy's list "
                        "now (needs root)")
    g.add_argument("--for", dest="allow_for", metavar="30m|2h|1d", type=_duration,
                   help="--allow-domain: the names end on their own after this long (an "
                        "absolute time: a restart does not extend it)")
    g.add_argument("--budget", metavar="[ROUTE:]HOUR/DAY", action="append", default=[],
                   help="requests a key route (anthropic, openai, telegram, ollama ...) may "
                        "carry per hour and per day, past which the proxy answers 429; "
                        "without ROUTE: every route; ROUTE:off for none (default: 600/6000 "
                        "on each provider route, none on telegram and ollama); repeatable")


def add_refused_mode(p, mode):
    mode.add_argument("--refused", action="store_true",
                      help="list what the egress proxy refused, each destination once, with "
                           "the command that opens it (reads its log; changes nothing)")
    p.add_argument("--since", metavar="1h|24h|7d", type=_duration,
                   help="--refused: how far back (default 24h)")


def _duration(text):
    from .egress.temporary import seconds
    try:
        return seconds(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err))


def _domain(text):
    from .egress.domains import check_name   # stdlib only, small: fine at parse time
    try:
        return check_name(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err))


def egress_alone(args):
    """--refused, or --allow-domain --for without --firewall: the egress modes of their own."""
    return args.refused or (bool(args.allow_domain) and not args.firewall)


def check_egress_combinations(p, args):
    if args.allow_for is not None and not args.allow_domain:
        p.error("--for goes with --allow-domain NAME")
    if args.since is not None and not args.refused:
        p.error("--since goes with --refused")
    if args.allow_domain and not args.firewall and (args.allow_for is None or any((
            args.verify, args.version, args.harden_docker, args.proxmox, args.proxy,
            args.refused, backup_mode(args)))):
        p.error("--allow-domain goes with --firewall --profile api-only, or alone with --for "
                "30m|2h|1d (open it now, for a while)")
    if args.allow_domain and args.firewall and args.profile != "api-only":
        p.error("--allow-domain needs --profile api-only")
    if args.budget and (not args.firewall or args.remove):
        p.error("--budget is a --firewall option")
    if args.profile == "api-only" and not args.firewall:
        p.error("--profile api-only is a --firewall profile")


# -- the hardening guide's other layers: --harden-docker and --proxmox --------------------------
def add_layer_modes(p, mode):
    mode.add_argument("--harden-docker", action="store_true",
                      help="merge hardened settings into /etc/docker/daemon.json, restart "
                           "Docker (needs root)")
    mode.add_argument("--proxmox", action="store_true",
                      help="print this VM's Proxmox firewall file; applies nothing")
    g = p.add_argument_group("--harden-docker / --proxmox options")
    g.add_argument("--revert", action="store_true",
                   help="--harden-docker: put the daemon.json from before back")
    g.add_argument("--vmid", type=_vmid, metavar="N", help="--proxmox: this VM's id")
    g.add_argument("--admin-source", metavar="CIDR",
                   help="--proxmox: where SSH may come from (default: this SSH client)")


# -- the egress proxy (api-only profile) -----------------------------------------------------
def add_proxy_mode(p, mode):
    mode.add_argument("--proxy", action="store_true",
                      help="run the egress proxy in the foreground (--config FILE)")
    p.add_argument("--config", metavar="FILE", help="--proxy: its JSON config file")


def check_proxy(p, args):
    """--proxy takes --config and nothing else; --config goes only with --proxy."""
    if args.proxy != (args.config is not None):
        p.error("--proxy and --config FILE go together")
    if args.proxy and (args.json or args.dry_run or args.dir is not None):
        p.error("--proxy takes only --config FILE")


def _vmid(text):
    if not text.isdigit() or not 100 <= int(text) <= 999999999:
        raise argparse.ArgumentTypeError("not a Proxmox VM id (100-999999999): %r" % text)
    return int(text)


def check_layer_combinations(p, args):
    """True for --harden-docker and --proxmox (--allow/--profile as in --firewall), after
    refusing every option they do not take; elsewhere refuses their own options."""
    others = [("--allow", bool(args.allow)), ("--profile", args.profile is not None),
              ("--unsafe-wide-allow", args.unsafe_wide_allow), ("--no-persist", args.no_persist),
              ("--remove", args.remove), ("--source", args.source is not None),
              ("--yes", args.yes), ("--json", args.json), ("--dir", args.dir is not None),
              ("--dry-run", args.dry_run)]
    given = others + [("--vmid", args.vmid is not None),
                      ("--admin-source", args.admin_source is not None), ("--revert", args.revert)]
    if args.harden_docker:
        mode, ok = "with --harden-docker", ("--dry-run", "--revert")
    elif args.proxmox:
        mode, ok = "with --proxmox", ("--allow", "--profile", "--unsafe-wide-allow", "--vmid",
                                      "--admin-source")
    else:
        mode = "without " + ("--harden-docker" if args.revert else "--proxmox")
        ok = [name for name, _ in others]   # the other modes check these themselves
    used = [name for name, value in given if value and name not in ok]
    if used:
        p.error("%s cannot be used %s" % (", ".join(used), mode))
    return args.harden_docker or args.proxmox


# -- backups: --backup [--to DIR], --restore ARCHIVE, --rollback, --no-backup ----------------
def add_backup_modes(p, mode):
    mode.add_argument("--backup", action="store_true",
                      help="write one archive of the agent's state and claw-cage's files")
    mode.add_argument("--restore", metavar="ARCHIVE",
                      help="restore a --backup archive (checked first; the current state is "
                           "kept and put back if the gateway is not healthy)")
    mode.add_argument("--rollback", action="store_true",
                      help="after an upgrade whose gateway is not healthy: the previous "
                           "compose file, image and state")
    g = p.add_argument_group("backup options")
    g.add_argument("--to", metavar="DIR", help="--backup: where (default: DIR/backups)")
    g.add_argument("--encrypt", metavar="WITH", help="--backup: gpg, age or age recipients")
    g.add_argument("--with-keys", action="store_true",
                   help="--backup: keep the provider keys and channel tokens in the archive's "
                        ".env (left out by default); use it with --encrypt")
    g.add_argument("--identity", metavar="KEY", help="--restore, --check: age identity")
    g.add_argument("--check", action="store_true",
                   help="--restore: a drill (restored into scratch volumes, nothing live "
                        "touched); --backup: then drill the new archive")
    g.add_argument("--keep", type=_keep, metavar="N",
                   help="--backup: then remove this install's oldest archives beyond N")
    g.add_argument("--schedule", choices=("daily", "weekly", "off"),
                   help="--backup: install (or remove) a systemd timer that runs it")
    g.add_argument("--no-backup", action="store_true",
                   help="install: no backup before an upgrade that changes the image")


def _keep(text):
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError("--keep takes a number of archives, 1 or more")
    return int(text)


def backup_mode(args):
    return "backup" if args.backup else "restore" if args.restore else \
        "rollback" if args.rollback else None


def check_backup_combinations(p, args):
    mode = backup_mode(args)
    allowed = ("--dir", "--json") + {
        "backup": ("--to", "--encrypt", "--with-keys", "--keep", "--check", "--schedule",
                   "--identity"),
        "restore": ("--identity", "--check")}.get(mode, ())
    if args.schedule == "off":
        allowed = ("--dir", "--json", "--schedule")
    given = [("--to", args.to is not None), ("--no-backup", args.no_backup),
             ("--encrypt", args.encrypt), ("--identity", args.identity),
             ("--check", args.check), ("--keep", args.keep is not None),
             ("--schedule", args.schedule is not None), ("--with-keys", args.with_keys),
             ("--dry-run", args.dry_run), ("--source", args.source is not None),
             ("--yes", args.yes), ("--allow", bool(args.allow)),
             ("--profile", args.profile is not None), ("--no-persist", args.no_persist),
             ("--remove", args.remove), ("--unsafe-wide-allow", args.unsafe_wide_allow),
             ("--vmid", args.vmid is not None), ("--revert", args.revert),
             ("--admin-source", args.admin_source is not None)]
    if mode:
        used = [n for n, v in given if v and n not in allowed]
    else:
        used = [n for n, v in given[:8] if v and (n != "--no-backup" or args.firewall or
                                                  args.verify)]
    if used:
        p.error("%s cannot be used %s" % (", ".join(used), "with --" + mode if mode else
                                          "without their mode (see --help)"))
    return mode
# -- end of backups --


def check_combinations(p, args):
    """Options that belong to one mode are refused in the others, instead of being ignored."""
    check_egress_combinations(p, args)
    if check_backup_combinations(p, args):
        return
    if check_layer_combinations(p, args):
        return
    firewall_only = [("--allow", bool(args.allow)), ("--profile", args.profile is not None),
                     ("--no-persist", args.no_persist), ("--remove", args.remove)]
    firewall_only.append(("--unsafe-wide-allow", args.unsafe_wide_allow))
    install_only = [("--source", args.source is not None), ("--yes", args.yes)]
    if args.firewall:
        wrong = install_only
        if args.remove:
            wrong += [(n, v) for n, v in firewall_only if n != "--remove"]
            wrong.append(("--allow-domain", bool(args.allow_domain)))
    elif args.verify or egress_alone(args):
        wrong = install_only + firewall_only + [("--dry-run", args.dry_run and not
                                                 args.allow_domain)]
    else:
        wrong = firewall_only
    used = [name for name, given in wrong if given]
    if used:
        mode = ("--firewall --remove" if args.firewall and args.remove else
                "--firewall" if args.firewall else "--verify" if args.verify else
                "--refused" if args.refused else "--allow-domain --for" if args.allow_domain
                else "install")
        p.error("%s cannot be used with %s" % (", ".join(used), mode))


def version_line(version=__version__, repo=buildinfo.REPO, ref=buildinfo.GIT_REF,
                 suffix=buildinfo.VERSION_SUFFIX, release=getattr(buildinfo, "RELEASE", "")):
    """The --version answer. build.py also hands it to the launcher, which answers a bare
    --version without unpacking the program. A release build names its tag and commit; a
    build from a tree with changes carries "+dirty" and never names a release."""
    name = "release %s, " % release if release else ""
    return "claw-cage %s%s (%s%s@%s)" % (version, suffix, name, repo, ref)


# ---- --json for install and --firewall: one object a script can read ------------------------
# The mode returns a dict (install: each file created/updated/unchanged; --firewall: rules and
# persistence changed or not); cli prints it as one JSON object on stdout, adding what every
# answer has. While the mode runs, its human lines go to stderr. A failure is an object too.

def _json_mode(args):
    if backup_mode(args):
        return backup_mode(args)
    if args.firewall:
        return "firewall-remove" if args.remove else "firewall"
    if args.allow_domain:
        return "allow-domain"
    return None if args.verify or args.refused else "install"


def _print_json(args, result, exit_code, error=None):
    import json

    out = {"mode": _json_mode(args), "ok": exit_code == 0, "exit_code": exit_code,
           "version": version_line()}
    out.update(result or {})
    if error is not None:
        out["error"] = error
    sys.stdout.write(json.dumps(out, sort_keys=True) + "\n")
    sys.stdout.flush()


def _run_mode(mode, args, json_out):
    if not json_out:
        result = mode.main(args)
        return 0 if isinstance(result, dict) else result
    import contextlib

    with contextlib.redirect_stdout(sys.stderr):
        result = mode.main(args)
    _print_json(args, result, 0)
    return 0


def main(argv=None):
    if argv is None:
        argv = sys.argv[1:]
    parser = build_parser()
    args = parser.parse_args(argv)
    check_combinations(parser, args)
    check_proxy(parser, args)
    if args.version:
        print(version_line())
        return 0
    import logging  # not at the top: --help and usage errors stay fast without it

    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="  %(message)s", stream=sys.stderr)
    json_out = args.json and _json_mode(args) is not None  # --verify prints its own JSON
    try:
        if args.firewall:
            from . import profiles as mode
        elif args.verify:
            from . import verify as mode
        elif args.harden_docker:
            from . import harden as mode
        elif args.proxmox:
            from . import proxmox as mode
        elif args.proxy:
            from . import proxy as mode
        elif backup_mode(args):
            from . import backup as mode
        elif args.refused:
            from .egress import refused as mode
        elif args.allow_domain:
            from .egress import temporary as mode
        else:
            from . import install as mode
        return _run_mode(mode, args, json_out)
    except ClawCageError as err:
        sys.stderr.write("claw-cage: error: %s\n" % err)
        if json_out:
            _print_json(args, None, err.exit_code, str(err))
        return err.exit_code
    except KeyboardInterrupt:
        sys.stderr.write("\nclaw-cage: interrupted; nothing was left half-done\n")
        if json_out:
            _print_json(args, None, EXIT_INTERRUPTED, "interrupted")
        return EXIT_INTERRUPTED
    except Exception as err:  # a bug: still one clear line, and the traceback with -v
        logging.getLogger("claw_cage").debug("internal error", exc_info=True)
        sys.stderr.write("claw-cage: internal error: %s: %s (run with -v for details)\n"
                         % (type(err).__name__, err))
        if json_out:
            _print_json(args, None, EXIT_INTERNAL, "internal error: %s" % type(err).__name__)
        return EXIT_INTERNAL
