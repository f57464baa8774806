"""--backup --schedule daily|weekly|off: a systemd timer and a oneshot service that run
`--backup --check` (and --keep N) as the install's owner, from the root-owned copy of the
program the proxy's unit runs too (egress.unit.PROGRAM: the user's own file is theirs to
rewrite, a unit's program is root's). Without systemd: the cron line to use instead.

Encryption on a schedule is an age recipients file: nobody is at a terminal to type a
passphrase. The drill of an age archive needs --identity (the key file, the owner's to read).
No PrivateTmp: a --to or an install under /tmp would vanish into a private /tmp; the pieces a
run keeps there are in its own 0700 folders.
"""

import os
import pwd
import re

from .. import paths, runner, safefile
from ..errors import PrereqError, RefusedError, TargetError
from ..egress import copy_program, systemd_running, unit

NAME = "claw-cage-backup"
SERVICE = unit.PROGRAM_USERS[1]
TIMER = unit.UNIT_DIR + "/" + NAME + ".timer"
WANTS = unit.UNIT_DIR + "/timers.target.wants/" + NAME + ".timer"
CRON = {"daily": "17 3 * * *", "weekly": "17 3 * * 0"}
SAFE = re.compile(r"[A-Za-z0-9_@+=:,./-]+\Z")   # what a unit line and a crontab carry as is

SERVICE_TEXT = """\
# Installed by `sudo python3 claw-cage.pyz --backup --schedule %(when)s`;
# `--backup --schedule off` removes it.
[Unit]
Description=claw-cage backup of %(dir)s, then its restore drill
After=docker.service

[Service]
Type=oneshot
User=%(user)s
ExecStart=%(exec)s
UMask=0077
NoNewPrivileges=yes
Nice=10
IOSchedulingClass=idle
TimeoutStartSec=6h
"""

TIMER_TEXT = """\
# Installed by `sudo python3 claw-cage.pyz --backup --schedule %(when)s`.
[Unit]
Description=claw-cage backup of %(dir)s, %(when)s

[Timer]
OnCalendar=%(when)s
Persistent=yes
RandomizedDelaySec=30min

[Install]
WantedBy=timers.target
"""


def command(program, target, args):
    """The --backup the schedule runs, each word checked to need no quoting."""
    argv = ["/usr/bin/python3", program, "--backup", "--check", "--dir", target]
    for opt, value in (("--to", args.to), ("--keep", args.keep), ("--encrypt", args.encrypt),
                       ("--identity", args.identity)):
        if value is not None:
            argv += [opt, os.path.abspath(os.path.expanduser(value)) if opt != "--keep"
                     else str(value)]
    if args.with_keys:   # the keys stay in each scheduled archive too
        argv.append("--with-keys")
    for word in argv:
        if not SAFE.match(word):
            raise RefusedError("%r: a scheduled command takes paths of letters, digits and "
                               "._-/ only (no spaces, quotes, %% or $): refused, nothing "
                               "changed" % word)
    return argv


def check(args):
    if args.encrypt in ("gpg", "age"):
        raise RefusedError("--encrypt %s asks for a passphrase, and a scheduled backup has "
                           "nobody to type it: use an age recipients file (age-keygen -o "
                           "key.txt; age-keygen -y key.txt > recipients.txt; --encrypt "
                           "recipients.txt --identity key.txt)" % args.encrypt)
    if args.encrypt and not os.path.isfile(args.encrypt):
        raise RefusedError("--encrypt %s: no such recipients file" % args.encrypt)


def apply(args, target, ui):
    if args.schedule == "off":
        return remove(ui)
    check(args)
    owner = os.stat(target).st_uid
    try:
        user = pwd.getpwuid(owner).pw_name
    except KeyError:
        raise TargetError("%s belongs to uid %d, which has no account here" % (target, owner))
    if owner == 0:
        ui.warn("%s belongs to root: the scheduled backups run as root (chown the install to "
                "the account that runs OpenClaw, then --schedule again, to drop that)" % target)
    if not systemd_running():
        argv = command(paths.program_file() or os.path.join(target, "claw-cage.pyz"), target,
                       args)
        ui.warn("systemd is not running here: nothing installed; add this line to %s's "
                "crontab (crontab -e) instead:" % user)
        ui.info("%s %s" % (CRON[args.schedule], " ".join(argv)))
        return {"schedule": args.schedule, "installed": None}
    if os.geteuid() != 0:
        raise PrereqError("--backup --schedule installs a systemd timer: run it with sudo")
    program = paths.program_file()
    if program is None:
        raise PrereqError("--schedule runs a copy of this program: run the claw-cage.pyz file "
                          "(sudo python3 ~/claw-cage/claw-cage.pyz ...), not a pipe")
    facts = {"when": args.schedule, "dir": target, "user": user,
             "exec": " ".join(command(unit.PROGRAM, target, args))}
    copy_program(program)
    safefile.write_atomic(SERVICE, (SERVICE_TEXT % facts).encode(), 0o644)
    safefile.write_atomic(TIMER, (TIMER_TEXT % facts).encode(), 0o644)
    runner.run(["systemctl", "daemon-reload"])
    runner.run(["systemctl", "enable", "--now", NAME + ".timer"])
    ui.ok("backups %s as %s, from the root-owned copy %s: %s" % (
        args.schedule, user, unit.PROGRAM, facts["exec"]))
    ui.info("  each run drills the archive it wrote (--restore ARCHIVE --check)%s; --verify "
            "shows the last run and the next" % (
                "" if args.keep is None else " and then keeps the newest %d" % args.keep))
    return {"schedule": args.schedule, "installed": [SERVICE, TIMER]}


def remove(ui):
    if systemd_running() and os.path.lexists(TIMER):
        runner.run(["systemctl", "disable", "--now", NAME + ".timer"], check=False)
        runner.run(["systemctl", "reset-failed", NAME + ".service", NAME + ".timer"],
                   check=False)
    gone = [p for p in (WANTS, TIMER, SERVICE) if os.path.lexists(p)]
    if not unit.program_used_by(SERVICE) and os.path.lexists(unit.PROGRAM):
        gone.append(unit.PROGRAM)
    if gone and os.geteuid() != 0:
        raise PrereqError("--backup --schedule off removes a systemd timer: run it with sudo")
    for path in gone:
        os.unlink(path)
    if os.path.isdir(unit.LIB_DIR) and not os.listdir(unit.LIB_DIR):
        os.rmdir(unit.LIB_DIR)
    if gone and systemd_running():
        runner.run(["systemctl", "daemon-reload"])
    ui.ok("backup schedule removed%s" % (": " + ", ".join(gone) if gone else
                                         " (there was none)"))
    return {"schedule": "off", "removed": gone}
