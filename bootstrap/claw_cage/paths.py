"""Where claw-cage lives: the install directory and the user it belongs to.

Every mode (install, --firewall, --verify) finds the install directory the same way:
--dir, else $CLAW_CAGE_DIR, else ~/claw-cage of the user who typed the command. Under sudo that
user is SUDO_USER, not root: `sudo python3 ~/claw-cage/claw-cage.pyz --firewall` must read the
same docker-compose.yml that the unprivileged install wrote.
"""

import os
import pwd

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


def install_dir(explicit=None, user=None):
    """Absolute install directory: --dir, else $CLAW_CAGE_DIR, else ~/claw-cage."""
    chosen = explicit or os.environ.get("CLAW_CAGE_DIR")
    if chosen:
        return os.path.abspath(os.path.expanduser(chosen))
    user = user or invoking_user()
    return os.path.join(user.home, DIR_NAME)
