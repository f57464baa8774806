"""Temporary entries of the proxy's list, and putting a new list in force without a restart.

`--allow-domain NAME --for 2h` (without --firewall) adds NAME to /etc/claw-cage/proxy.json
with an absolute end time ("expires", UTC), so neither a restart of the proxy nor of the host
extends it; the proxy refuses it after that time ("temporary entry expired"). --firewall keeps
the entries still running and drops the ended ones. A list change reaches the proxy by SIGHUP
(`systemctl reload`): open tunnels, the dashboard's included, stay up.
"""

import json
import os
import re
import time

from .. import paths, runner, safefile
from ..errors import PrereqError, TargetError
from . import config, unit

_DURATION = re.compile(r"([1-9][0-9]{0,4})([smhd])")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def seconds(text):
    """"30m", "2h", "1d" (or "Ns") -> seconds; ValueError (one line) otherwise."""
    m = _DURATION.fullmatch(text.strip())
    if not m:
        raise ValueError("not a duration: %r (a number and s, m, h or d: 30m, 2h, 1d)"
                         % text[:40])
    return int(m.group(1)) * _UNIT[m.group(2)]


def until_text(when):
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(when))


def read_current():
    """The installed proxy.json as a dict (None when there is none); TargetError when the
    proxy itself would refuse it (its own validation)."""
    text = safefile.read_text(config.PATH)
    if text is None:
        return None
    try:
        config.parse(text)
    except ValueError as err:
        raise TargetError("%s is refused by the proxy (%s): run --firewall --profile api-only "
                          "again" % (config.PATH, str(err).splitlines()[0]))
    return json.loads(text)


def carry(current, now):
    """({entry: unix time} of the temporary entries of current still running, [ended ones])."""
    ends = dict((n, config.owner().when(t)) for n, t in ((current or {}).get("expires") or {}).items())
    return (dict((n, t) for n, t in ends.items() if t > now),
            sorted(n for n, t in ends.items() if t <= now))


def reload_proxy():
    """Put the file in force: `systemctl reload` (SIGHUP), or SIGHUP to the foreground proxy
    started on this file. A line saying what happened."""
    if os.path.isdir("/run/systemd/system"):
        runner.run(["systemctl", "reload", unit.UNIT_NAME])
        return "%s reloaded its list (open connections stay)" % unit.UNIT_NAME
    found, ours = [], os.stat(config.PATH)
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:   # started on this file, as its own root sees it (not a container's namesake)
            with open("/proc/%s/cmdline" % pid, "rb") as f:
                argv = f.read().split(b"\0")[:-1]
            st = os.stat("/proc/%s/root%s" % (pid, config.PATH)) if argv[-3:] == [
                b"--proxy", b"--config", config.PATH.encode()] else None
        except OSError:
            continue
        if st and (st.st_dev, st.st_ino) == (ours.st_dev, ours.st_ino):
            os.kill(int(pid), 1)   # SIGHUP
            found.append(pid)
    if not found:
        return "no proxy runs on %s: start it (%s)" % (config.PATH, unit.foreground_command())
    return "the proxy (pid %s) reloaded its list (open connections stay)" % ", ".join(found)


def main(args):
    """--allow-domain NAME... --for D: add the names until now + D, then reload the proxy."""
    from ..ui import UI
    ui = UI()
    if os.geteuid() != 0:
        raise PrereqError("--allow-domain changes %s: run it as root (sudo)" % config.PATH)
    current = read_current()
    if current is None or not current.get("ports"):
        raise TargetError("no api-only proxy is installed here (%s): run --firewall --profile "
                          "api-only first" % ("%s is missing" % config.PATH if current is None
                                              else "the local-only proxy lists endpoints"))
    now = time.time()
    running, ended = carry(current, now)
    allow = [n for n in current["allow"] if n not in ended]
    end = now + args.allow_for
    for name in args.allow_domain:
        if name in allow and name not in running:
            ui.info("%s is on the list for good already (from --firewall)" % name)
            continue
        if name not in allow:
            allow.append(name)
        running[name] = end
    fmt = config.owner()
    current.update(allow=allow, expires=dict((n, fmt.stamp(t)) for n, t in running.items()))
    if not args.dry_run:
        safefile.write_atomic(config.PATH, fmt.render(**current).encode(), 0o644)
    for name in args.allow_domain:
        if running.get(name) == end:
            ui.ok("%s allowed until %s%s" % (name, until_text(end),
                                             " (dry run: nothing changed)" if args.dry_run
                                             else ""))
    if not args.dry_run:
        ui.ok(reload_proxy())
    ui.info("  it ends on its own; to keep a name, add --allow-domain NAME to your --firewall "
            "--profile api-only command (%s)" % (paths.program_file() or "claw-cage.pyz"))
    return {"allowed": dict((n, fmt.stamp(running[n])) for n in args.allow_domain
                            if running.get(n) == end)}
