"""Bring the rules back at boot: a systemd unit that runs a root-owned script under /etc.

Why this mechanism (README, "Design notes / Firewall"):
- `netfilter-persistent save` snapshots ALL of iptables, Docker's dynamic rules included, and
  owns /etc/iptables/rules.v4, which the user may already use. We touch neither.
- The boot script is script.render() for this host's configuration: the same rule table,
  the same "declare only our own chains, fix the jumps" logic as --firewall, in bash. It needs
  no Python and never runs the copy of claw-cage in the user's home (which the user can write).
- Ordered Before=docker.service, and correct after it too: it creates DOCKER-USER when Docker has
  not, and dockerd keeps an existing DOCKER-USER and only (re)inserts FORWARD's jump to it.
  Ordered After=nftables.service: its `flush ruleset` would wipe rules loaded before it (the
  iptables-nft tables, mangle PREROUTING's first anchor included).

Files are written to a temporary name in the same folder, fsynced and renamed over, so a crash
never leaves half a unit. Paths are fixed: tests isolate them with a private mount namespace,
never with a variable a root program would read.
"""

import os
import stat

from .. import runner, safefile
from ..errors import FirewallError

ETC_DIR = "/etc/claw-cage"
SCRIPT = ETC_DIR + "/firewall.sh"
UNIT_NAME = "claw-cage-firewall.service"
UNIT_DIR = "/etc/systemd/system"
UNIT = UNIT_DIR + "/" + UNIT_NAME
WANTS = UNIT_DIR + "/multi-user.target.wants/" + UNIT_NAME
EXEC_START = "/bin/bash " + SCRIPT

UNIT_TEXT = """\
# Installed by `sudo python3 claw-cage.pyz --firewall`; `--firewall --remove` removes it.
# Restores claw-cage's own firewall chains at boot. Runs only the root-owned script below,
# which declares only claw-cage's chains: Docker's rules and /etc/iptables are left alone.
[Unit]
Description=claw-cage firewall (keeps the claw-cage container off the LAN and the host)
DefaultDependencies=no
Wants=network-pre.target systemd-modules-load.service local-fs.target
After=systemd-modules-load.service local-fs.target nftables.service
Before=network-pre.target docker.service shutdown.target
Conflicts=shutdown.target

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=%s

[Install]
WantedBy=multi-user.target
""" % EXEC_START


def systemd_installed():
    return os.path.isdir(UNIT_DIR)


def systemd_running():
    return os.path.isdir("/run/systemd/system")


def installed():
    return any(os.path.lexists(p) for p in (SCRIPT, UNIT, WANTS))


def _check_root_dir(path):
    """Boot runs as root what is in here: it must be a real directory only root can write."""
    st = os.lstat(path)
    if (not stat.S_ISDIR(st.st_mode) or st.st_uid != 0
            or st.st_mode & (stat.S_IWGRP | stat.S_IWOTH)):
        raise FirewallError("%s must be a directory owned by root and writable only by root; "
                            "fix or remove it, then run this again" % path)


def _link_atomic(target, path):
    tmp = "%s.tmp-%d" % (path, os.getpid())
    os.symlink(target, tmp)
    os.replace(tmp, path)
    safefile.fsync_dir(os.path.dirname(path))


def plan_install(script_text):
    """[(description, action)] for installing; actions are run only when not a dry run.
    Refuses up front (before any rule is applied) an /etc/claw-cage that is not root's."""
    if os.path.lexists(ETC_DIR):
        _check_root_dir(ETC_DIR)
    def make_dir():
        if not os.path.lexists(ETC_DIR):
            os.mkdir(ETC_DIR, 0o755)
            # root-only writable; readable by all like the rest of /etc (umask may be stricter)
            os.chmod(ETC_DIR, 0o755)  # nosec B103
        _check_root_dir(ETC_DIR)

    def make_wants():
        os.makedirs(os.path.dirname(WANTS), exist_ok=True)
        _link_atomic(UNIT, WANTS)

    steps = [
        ("mkdir -p %s (root-owned)" % ETC_DIR, make_dir),
        ("write %s (the rules, restored at boot)" % SCRIPT,
         lambda: safefile.write_atomic(SCRIPT, script_text, 0o644)),
        ("write %s" % UNIT, lambda: safefile.write_atomic(UNIT, UNIT_TEXT, 0o644)),
        ("ln -sf %s %s (what `systemctl enable` does)" % (UNIT, WANTS), make_wants),
    ]
    return steps + _reload_steps()


def plan_remove():
    def unlink(path):
        def action():
            if os.path.lexists(path):
                os.unlink(path)
        return action

    def rmdir():
        if os.path.isdir(ETC_DIR) and not os.path.islink(ETC_DIR) and not os.listdir(ETC_DIR):
            os.rmdir(ETC_DIR)

    steps = [("rm -f %s" % path, unlink(path)) for path in (WANTS, UNIT, SCRIPT)
             if os.path.lexists(path)]
    if not steps:
        return []
    steps.append(("rmdir %s (if empty)" % ETC_DIR, rmdir))
    return steps + _reload_steps()


def _reload_steps():
    if not systemd_running():
        return []   # systemd reads the unit files at its next start (the next boot)
    argv = ["systemctl", "daemon-reload"]
    return [("$ " + " ".join(argv), lambda: runner.run(argv))]


def snapshot():
    """What the persistence files are now, to put back if installing fails half-way:
    {path: None (absent) | ("link", target) | ("file", text, mode)}."""
    snap = {}
    for path in (SCRIPT, UNIT, WANTS):
        if os.path.islink(path):
            snap[path] = ("link", os.readlink(path))
        elif os.path.isfile(path):
            with open(path, encoding="utf-8", errors="surrogateescape") as f:
                snap[path] = ("file", f.read(), stat.S_IMODE(os.lstat(path).st_mode))
        else:
            snap[path] = None
    return snap


def restore(snap):
    """Put the files of a snapshot() back; best effort, each file atomically."""
    for path, was in snap.items():
        try:
            if was is None:
                if os.path.lexists(path):
                    os.unlink(path)
            elif was[0] == "link":
                _link_atomic(was[1], path)
            else:
                safefile.write_atomic(path, was[1], was[2])
        except OSError:
            pass
