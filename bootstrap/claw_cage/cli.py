"""Command line: parse, pick the mode, turn expected errors into one line and an exit code.

Modes follow what the user does: install/upgrade (default), --firewall, --verify,
--harden-docker, --proxmox, --proxy, --refused, --allow-domain --for, and
--backup/--restore/--rollback (the MODES table). Each mode's package is imported only when
chosen, so `--version` and `--help` stay fast.
"""

import argparse
import sys

from . import __version__
from . import buildinfo
from .errors import (EXIT_CODES_HELP, EXIT_DAEMON, EXIT_DOCKER, EXIT_FIREWALL, EXIT_INCOMPLETE,
                     EXIT_INTERNAL, EXIT_INTERRUPTED, EXIT_PREREQ, EXIT_PROXY, EXIT_USAGE,
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


def _vmid(text):
    if not text.isdigit() or not 100 <= int(text) <= 999999999:
        raise argparse.ArgumentTypeError("not a Proxmox VM id (100-999999999): %r" % text)
    return int(text)


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


# ---- the modes, in ONE table -----------------------------------------------------------------
# Each row: the options that pick the mode (the most specific first; install, picked by none,
# last), the subpackage that runs it, the exit code an external command that fails there gets
# (runner.CommandError carries none: what such a failure means depends on the mode), and every
# other option the mode takes besides -v. Any option a mode does not take is refused with one
# line instead of being ignored. A new option: add it to the rows of the modes that take it.
MODES = (
    # picked by               package     failed command   takes
    ("--firewall --remove", "profiles", EXIT_FIREWALL, "--dir --dry-run --json"),
    ("--firewall", "profiles", EXIT_FIREWALL, "--dir --dry-run --json --allow --profile "
                                              "--no-persist --unsafe-wide-allow --allow-domain "
                                              "--for --budget"),
    ("--verify", "verify", EXIT_INCOMPLETE, "--dir --json"),
    ("--harden-docker", "harden", EXIT_DAEMON, "--dry-run --revert"),
    ("--proxmox", "proxmox", EXIT_PREREQ, "--allow --profile --unsafe-wide-allow --vmid "
                                          "--admin-source"),
    ("--proxy", "proxy", EXIT_PROXY, "--config"),
    ("--refused", "egress.refused", EXIT_PREREQ, "--json --since"),
    ("--allow-domain --for", "egress.temporary", EXIT_FIREWALL, "--dry-run --json"),
    ("--backup", "backup", EXIT_DOCKER, "--dir --json --to --encrypt --with-keys --keep --check "
                                        "--schedule --identity"),
    ("--restore", "backup", EXIT_DOCKER, "--dir --json --identity --check"),
    ("--rollback", "backup", EXIT_DOCKER, "--dir --json"),
    ("--version", None, EXIT_INTERNAL, ""),
    ("", "install", EXIT_DOCKER, "--dir --dry-run --json --source --yes --no-backup"),
)


def given_options(parser, args):
    """The long name of every option the command line set (its value is not the default)."""
    return [a.option_strings[-1] for a in parser._actions   # noqa: SLF001 (argparse's list)
            if a.option_strings and getattr(args, a.dest, a.default) != a.default]


def pick_mode(parser, args):
    """The row of MODES the command line picks, after refusing every option it does not take
    and the values that need another option."""
    given = given_options(parser, args)
    row = next(r for r in MODES if set(r[0].split()) <= set(given))
    wrong = [o for o in given if o not in row[0].split() + row[3].split() + ["--verbose"]]
    if wrong:   # name the modes the first one belongs to, when that is short
        takers = []
        for r in MODES:
            name = r[0].replace(" --remove", "") or "install"
            if wrong[0] in (r[0] + " " + r[3]).split() and name not in takers:
                takers.append(name)
        parser.error("%s cannot be used with %s%s" % (
            ", ".join(wrong), row[0] or "install",
            " (only with %s)" % " or ".join(takers) if len(takers) <= 2 else ""))
    beyond_off = [o for o in given if o not in "--backup --schedule --dir --json --verbose".split()]
    if args.schedule == "off" and beyond_off:
        parser.error("%s cannot be used with --schedule off" % ", ".join(beyond_off))
    if args.allow_for is not None and not args.allow_domain:
        parser.error("--for goes with --allow-domain NAME")
    if row[0] == "--firewall" and args.allow_domain and args.profile != "api-only":
        parser.error("--allow-domain needs --profile api-only")
    if args.profile == "api-only" and row[0] != "--firewall":
        parser.error("--profile api-only is a --firewall profile")
    if row[0] == "--proxy" and args.config is None:
        parser.error("--proxy needs --config FILE")
    return row


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

def _json_mode(row):
    """The "mode" of the JSON answer (firewall-remove, allow-domain, ...); None for the modes
    that print their own (--verify, --refused) or take no --json."""
    if "--json" not in row[3] or row[0] in ("--verify", "--refused"):
        return None
    return row[0].replace(" --for", "").lstrip("-").replace(" --", "-") or "install"


def _print_json(row, result, exit_code, error=None):
    import json

    out = {"mode": _json_mode(row), "ok": exit_code == 0, "exit_code": exit_code,
           "version": version_line()}
    out.update(result or {})
    if error is not None:
        out["error"] = error
    sys.stdout.write(json.dumps(out, sort_keys=True) + "\n")
    sys.stdout.flush()


def _run_mode(mode, args, row, json_out):
    if not json_out:
        result = mode.main(args)
        return 0 if isinstance(result, dict) else result
    import contextlib

    with contextlib.redirect_stdout(sys.stderr):
        result = mode.main(args)
    _print_json(row, result, 0)
    return 0


def main(argv=None):
    if argv is None:
        argv = sys.argv[1:]
    parser = build_parser()
    args = parser.parse_args(argv)
    row = pick_mode(parser, args)
    if args.version:
        print(version_line())
        return 0
    import importlib

    from . import runner  # not at the top: --help and usage errors stay fast without it

    runner.log.on = args.verbose
    if row[1] == "proxy":   # asyncio reports through logging: its lines as ours, indented
        import logging
        logging.basicConfig(level=logging.WARNING, format="  %(message)s", stream=sys.stderr)
    json_out = args.json and _json_mode(row) is not None  # --verify prints its own JSON
    try:
        mode = importlib.import_module("." + row[1], __package__)
        return _run_mode(mode, args, row, json_out)
    except ClawCageError as err:
        # exit_code None: a failed command (runner.CommandError), the code its mode declares
        code = row[2] if err.exit_code is None else err.exit_code
        sys.stderr.write("claw-cage: error: %s\n" % err)
        if json_out:
            _print_json(row, None, code, str(err))
        return code
    except KeyboardInterrupt:
        sys.stderr.write("\nclaw-cage: interrupted; nothing was left half-done\n")
        if json_out:
            _print_json(row, None, EXIT_INTERRUPTED, "interrupted")
        return EXIT_INTERRUPTED
    except Exception as err:  # a bug: still one clear line, and the traceback with -v
        if args.verbose:
            import traceback
            sys.stderr.write("  internal error\n" + traceback.format_exc())
        sys.stderr.write("claw-cage: internal error: %s: %s (run with -v for details)\n"
                         % (type(err).__name__, err))
        if json_out:
            _print_json(row, None, EXIT_INTERNAL, "internal error: %s" % type(err).__name__)
        return EXIT_INTERNAL
