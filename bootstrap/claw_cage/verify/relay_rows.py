"""Egress rows on the relay (api-only, local-only): no host account can replace the gateway's
socket, and the gateway shares the namespace the relay's holder has now. Read-only: lstat,
/proc/PID/ns/net and one `docker inspect`.
"""

import os
import pwd
import stat

from .. import deployment, runner
from ..egress import unit
from .probes import brief, failure
from .report import Row, PASS, FAIL, SKIP

SECTION = "Egress"
RECREATE = "docker compose up -d --force-recreate openclaw"


def _owner(uid):
    try:
        return "account %s" % pwd.getpwuid(uid).pw_name
    except KeyError:
        return None


def socket_problems(path):
    """Why someone other than root and the relay could replace the socket at path (or the
    folder it is in): [] when no one can."""
    folder = os.path.dirname(path)
    st = os.lstat(folder)
    out = []
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != deployment.RELAY_UID or \
            st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        out.append("%s is uid %d, mode %o (want a folder of uid %d, mode 755)"
                   % (folder, st.st_uid, stat.S_IMODE(st.st_mode), deployment.RELAY_UID))
    if _owner(deployment.RELAY_UID):
        out.append("the relay's uid %d is this host's %s" % (deployment.RELAY_UID,
                                                            _owner(deployment.RELAY_UID)))
    parent = os.path.dirname(folder)
    while True:   # each folder above: root's, or a sticky one like /tmp (no one renames ours)
        st = os.lstat(parent)
        if st.st_uid != 0 or st.st_mode & (stat.S_IWGRP | stat.S_IWOTH) and \
                not st.st_mode & stat.S_ISVTX:
            out.append("%s is writable by uid %d or others" % (parent, st.st_uid))
        if parent == os.path.dirname(parent):
            break
        parent = os.path.dirname(parent)
    if os.path.lexists(path):
        st = os.lstat(path)
        if not stat.S_ISSOCK(st.st_mode) or st.st_uid != deployment.RELAY_UID:
            out.append("%s is not the relay's socket (uid %d)" % (path, st.st_uid))
    return out


def socket_row(cfg):
    """cfg: the proxy's Config (egress_rows.read_config); its forward's Unix socket."""
    to = [where for kind, where in (t for _, t in cfg.forward) if kind == "unix"]
    if not to:
        return Row(SECTION, "gateway socket", SKIP, "proxy.json forwards to no Unix socket")
    path = to[0]
    if not os.path.isdir(path.rpartition("/")[0]):
        return Row(SECTION, "gateway socket", FAIL, "%s is missing: the proxy service makes it "
                   "(systemctl restart %s), else --firewall --profile api-only"
                   % (os.path.dirname(path), unit.UNIT_NAME))
    bad = socket_problems(path)
    if bad:
        return Row(SECTION, "gateway socket", FAIL, "%s: whoever owns it can replace the "
                   "socket and read the dashboard's traffic, token included (re-run the "
                   "installer and --firewall --profile api-only, then docker compose up -d)"
                   % "; ".join(bad))
    return Row(SECTION, "gateway socket", PASS, "%s: only root and the relay (uid %d, no host "
               "account) can replace it" % (path, deployment.RELAY_UID))


def _netns(pid):
    return os.readlink("/proc/%d/ns/net" % pid)


def namespace_row(info):
    """The gateway (its `docker inspect`) in the namespace of the container it joined."""
    mode = str((info.get("HostConfig") or {}).get("NetworkMode") or "")
    if not mode.startswith("container:"):
        return Row(SECTION, "relay namespace", FAIL, "the gateway runs with network %r, not in "
                   "the relay's namespace: cd to the install folder, then %s" % (mode, RECREATE))
    try:
        res = runner.run(["docker", "inspect", "-f", "{{.State.Pid}}", mode[10:]], check=False,
                         timeout=10)
    except runner.CommandError as err:
        return Row(SECTION, "relay namespace", SKIP, failure(err, 10), True)
    try:
        pids = int(res.stdout.strip()), int(info["State"]["Pid"])
        if 0 in pids:
            raise ValueError
        same = _netns(pids[0]) == _netns(pids[1])
    except (ValueError, KeyError, TypeError):
        return Row(SECTION, "relay namespace", SKIP, "the relay's holder is not running: %s"
                   % brief(res.stderr, "docker inspect exit %d" % res.returncode), True)
    except OSError as err:
        return Row(SECTION, "relay namespace", SKIP, "cannot compare the namespaces (%s): run "
                   "--verify as root" % err.strerror, True)
    if same:
        return Row(SECTION, "relay namespace", PASS, "the gateway shares its relay's namespace")
    return Row(SECTION, "relay namespace", FAIL, "the gateway is in a namespace its relay no "
               "longer holds (the holder restarted): no egress, no dashboard; cd to the install "
               "folder, then %s" % RECREATE)
