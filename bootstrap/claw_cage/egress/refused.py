"""--refused [--since 24h] [--json]: what the egress proxy refused, each destination once, with
the command that opens it, or why none can. Reads the proxy's log (its unit's journal, or the
file proxy.json names); changes nothing, needs no root where the log is readable.

A log line counts only when the whole of it has the shape the proxy writes (proxy/log.py): a
name of DNS characters or an address, a fixed verdict, a printable reason. Anything else, a
planted escape or newline included, is skipped, so no output line comes from the log's text.
"""

import grp
import json
import os
import re
import shlex
import sys
import time

from .. import paths, runner, safefile
from ..errors import PrereqError, TargetError
from . import config, domains, temporary, unit

LINE = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ) proxy ([a-z0-9._-]{1,253}|\[[0-9a-f:.]{2,45}\])"
                  r":(\d{1,5}) \S+ refused-403 up=\d+ down=\d+ ms=\d+ ([ -~]{1,300})\Z")
OPEN_FOR = "1h"
# suffixes under which anyone registers names (co.uk, com.au): a heuristic without the public
# suffix list; opening one would open strangers' sites
def read_lines(cfg, since):
    """(log lines since the unix time `since`, where they came from)."""
    if cfg.log != "-":
        data = safefile.read(cfg.log, limit=1 << 28)
        if data is None:
            raise TargetError("the proxy's log %s does not exist yet" % cfg.log)
        return data.decode("utf-8", "replace").split("\n"), cfg.log
    if not os.path.isdir("/run/systemd/system"):
        raise TargetError("the proxy logs to its standard error (\"log\": \"-\" in %s) and "
                          "there is no journal here: read it where you started the proxy, or "
                          "run --firewall --profile api-only again (it sets a log file)"
                          % config.PATH)
    if os.geteuid() != 0 and not _journal_groups():   # journalctl would show nothing, silently
        raise PrereqError("the journal of %s is readable by root and the systemd-journal and adm "
                          "groups: run it with sudo" % unit.UNIT_NAME)
    res = runner.run(["journalctl", "-u", unit.UNIT_NAME, "--since", "@%d" % since, "-o", "json",
                      "--output-fields=MESSAGE", "--no-pager", "-q"], check=False, timeout=120)
    if res.returncode != 0 or "insufficient permissions" in res.stderr:
        raise PrereqError("cannot read the journal of %s (%s): run it with sudo, or as a member "
                          "of the systemd-journal or adm group" % (
                              unit.UNIT_NAME, (res.stderr.strip().splitlines() or ["no output"])[-1]))
    return messages(res.stdout), "the journal of " + unit.UNIT_NAME


def _journal_groups():
    names = set()
    for gid in os.getgroups():
        try:
            names.add(grp.getgrgid(gid).gr_name)
        except KeyError:
            pass
    return names & {"systemd-journal", "adm", "wheel"}


def messages(text):
    """The one-line MESSAGE of each entry of `journalctl -o json` text. A message of several
    lines, or of bytes journald could not show as text, is not one the proxy wrote: skipped."""
    lines = []
    for entry in text.splitlines():
        try:
            message = json.loads(entry).get("MESSAGE")
        except (ValueError, AttributeError):
            continue
        if isinstance(message, str) and "\n" not in message:
            lines.append(message)
    return lines


def summarize(lines, since):
    """{(name, port): [count, first, last, reason]} of the well-formed refusals since then."""
    cut = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(since))
    found = {}
    match = LINE.match
    for line in lines:
        m = match(line)
        if m is None or m.group(1) < cut:
            continue
        stamp, name, port, why = m.groups()
        seen = found.get((name, port))
        if seen is None:
            found[(name, port)] = [1, stamp, stamp, why]
        else:
            seen[0] += 1
            seen[2:] = [stamp, why]
    return found


def advice(name, port, why, ports):
    """(the command that opens name:port, None) or (None, why no command can)."""
    if why.startswith("the name resolves to a blocked address"):
        return None, "it resolves to a blocked address: the proxy refuses it whatever the list says"
    if name.startswith("[") or re.match(r"^[0-9.]+\Z", name):
        return None, ("a bare address: the list holds names (the agent should use the name); "
                      "under local-only, --firewall --profile local-only --allow ADDRESS:PORT")
    if int(port) not in ports:
        return None, "port %s: the proxy opens names on port %s only" % (
            port, ", ".join(map(str, sorted(ports))) or "(none: local-only)")
    try:
        domains.check_name(name)
    except ValueError:
        return None, "not a DNS name on the internet (a single label)"
    if name in domains.PUBLIC_SUFFIXES:   # the one list --allow-domain judges wildcards by
        return None, "a public suffix (anyone registers names under it)"
    if why not in ("name not on the allow list", "temporary entry expired"):
        return None, why
    program = paths.program_file() or os.path.expanduser("~/claw-cage/claw-cage.pyz")
    return "sudo python3 %s --allow-domain %s --for %s" % (shlex.quote(program), name,
                                                          OPEN_FOR), None


def refusals(cfg, since):
    """(rows, source) for the proxy's Config: rows as dicts, most refused first."""
    lines, source = read_lines(cfg, since)
    rows = []
    for (name, port), (count, first, last, why) in summarize(lines, since).items():
        command, why_not = advice(name, port, why, cfg.ports)
        rows.append({"destination": "%s:%s" % (name, port), "count": count, "first": first,
                     "last": last, "reason": why, "command": command, "no_command": why_not})
    rows.sort(key=lambda r: (-r["count"], r["destination"]))
    return rows, source


def main(args):
    text = safefile.read_text(config.PATH)
    if text is None:
        raise TargetError("%s is missing: the egress proxy is not installed (--firewall "
                          "--profile api-only)" % config.PATH)
    try:
        cfg = config.parse(text)
    except ValueError as err:
        raise TargetError("%s is refused by the proxy (%s)" % (config.PATH, err))
    since = time.time() - (args.since or 86400)
    rows, source = refusals(cfg, since)
    if args.json:
        sys.stdout.write(json.dumps({"since": config.owner().stamp(since), "source": source,
                                     "refused": rows}, indent=2) + "\n")
        return 0
    print("refused by the egress proxy since %s (from %s): %s" % (
        temporary.until_text(since), source, "%d destination%s" % (
            len(rows), "" if len(rows) == 1 else "s") if rows else "nothing"))
    for r in rows:
        print("  %s  %d time%s, %s to %s: %s" % (r["destination"], r["count"], "" if
                                                  r["count"] == 1 else "s", r["first"],
                                                  r["last"], r["reason"]))
        print("    " + ("open it for %s: %s" % (OPEN_FOR, r["command"]) if r["command"] else
                        "no command opens it: " + r["no_command"]))
    return 0
