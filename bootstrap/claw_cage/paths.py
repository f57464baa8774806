"""Where claw-cage lives: the install directory and the user it belongs to.

Every mode (install, --firewall, --verify) finds the install directory the same way:
--dir, else $CLAW_CAGE_DIR, else the folder of the claw-cage.pyz that runs, when that folder
holds claw-cage's docker-compose.yml (the copy the installer saved: `python3 DIR/claw-cage.pyz`
works on DIR), else ~/claw-cage of the user who typed the command. Under sudo that user is
SUDO_USER, not root: `sudo python3 ~/claw-cage/claw-cage.pyz --firewall` must read the same
docker-compose.yml that the unprivileged install wrote.
"""

import os
import pwd
import re
import sys

from . import safefile
from .errors import TargetError

DIR_NAME = "claw-cage"


class User:
    __slots__ = ("name", "uid", "gid", "home", "via_sudo")

    def __init__(self, name, uid, gid, home, via_sudo):
        self.name, self.uid, self.gid, self.home, self.via_sudo = name, uid, gid, home, via_sudo


def invoking_user():
    """The person behind this process: SUDO_UID's account when root runs us through sudo."""
    sudo_uid = os.environ.get("SUDO_UID", "")
    if os.geteuid() == 0 and sudo_uid.isdigit() and int(sudo_uid) != 0:
        try:
            entry = pwd.getpwuid(int(sudo_uid))
            return User(entry.pw_name, entry.pw_uid, entry.pw_gid, entry.pw_dir, True)
        except KeyError:
            pass  # an unknown uid in the environment: fall back to who we really are
    uid = os.geteuid()
    try:
        entry = pwd.getpwuid(uid)
        home = entry.pw_dir
        name = entry.pw_name
    except KeyError:
        home, name = os.path.expanduser("~"), str(uid)
    return User(name, uid, os.getegid(), home, False)


# A claw-cage docker-compose.yml names its project claw-cage (top-level `name:`).
_PROJECT_RE = re.compile(r"^name:\s*[\"']?claw-cage[\"']?\s*(#.*)?$", re.M)


def program_file(argv0=None):
    """The claw-cage.pyz file this program runs from, or None: it came through a pipe
    (`python3 -`), or runs from source (no launcher set claw_cage.SELF_SOURCE)."""
    package = sys.modules.get(__package__ or "claw_cage")
    if argv0 is None:
        if getattr(package, "SELF_SOURCE", None) is None or not sys.argv:
            return None
        argv0 = sys.argv[0]
    if not argv0 or argv0 in ("-", "-c") or not os.path.isfile(argv0):
        return None
    return os.path.abspath(argv0)


def is_claw_cage_dir(directory):
    """Whether directory holds claw-cage's docker-compose.yml (its project name in it). Read
    with safefile, as every read of a user's file by root: a FIFO, a symlink or a device by
    that name is never opened in a way that could block, and is refused (safefile.UnsafeFile:
    the program's own folder is not to be silently swapped for another); one that cannot be
    opened at all is not claw-cage's."""
    try:
        text = safefile.read_text(os.path.join(directory, "docker-compose.yml"))
    except safefile.UnsafeFile:
        raise
    except TargetError:
        return False
    return bool(text and _PROJECT_RE.search(text))


def install_dir(explicit=None, user=None, program=None):
    """Absolute install directory: --dir, else $CLAW_CAGE_DIR, else the folder of the running
    claw-cage.pyz when it holds claw-cage's docker-compose.yml, else ~/claw-cage.
    program: the running file (default: program_file())."""
    chosen = explicit or os.environ.get("CLAW_CAGE_DIR")
    if chosen:
        return os.path.abspath(os.path.expanduser(chosen))
    program = program or program_file()
    if program and is_claw_cage_dir(os.path.dirname(program)):
        return os.path.dirname(program)
    user = user or invoking_user()
    return os.path.join(user.home, DIR_NAME)
