"""Egress rows (api-only and local-only, the same design): the proxy is up with its list, and
from inside the agent's namespace nothing leaves except through it. Judges only: reads
/etc/claw-cage/proxy.json, asks `systemctl is-active`, connects to the proxy's socket, and
runs one node process in the gateway (`docker exec`; test mode: `ip netns exec`
CLAW_CAGE_PROBE_NETNS) that sends:

  tcp 127.0.0.1 3128                         the control: the proxy is reachable from there
  connect 127.0.0.1 3128 NAME:443            CONNECT through the proxy: the HTTP status
                                             (HOST:PORT for a listed entry with its own port:
                                             local-only's Ollama; and PORT+1 must be refused)
  tcp ADDRESS PORT                           a direct connection (must fail: no route)

and, where the image has it, `openclaw proxy validate --json`. Rows appear only when the
api-only or local-only profile is installed (proxy.json exists). A look that could not be taken is a skip
(marked needed: the run is then incomplete), never a pass.
"""

import ipaddress
import json
import os
import re
import socket
import time

from .. import runner, safefile
from ..egress import config as proxy_config
from ..egress import refused, temporary, unit
from ..proxy import HOST_LOOPBACK, config as proxy_format, split_host_port
from . import container, probe_plan, relay_rows
from .probes import brief, failure
from .report import Row, PASS, FAIL, WARN, SKIP

SECTION = "Egress"
PROBE_MS = 3000
EXEC_TIMEOUT = 30
VALIDATE_ARGV = ["node", "dist/index.js", "proxy", "validate", "--json", "--proxy-url",
                 "http://%s:%d" % proxy_config.AGENT_PROXY]
OFF_LIST = ("example.net", "example.org")
METADATA = "169.254.169.254"
INTERNET_ADDRESS = "1.1.1.1"
# A direct connection that found no way out, and one that got somewhere (a refusal is an answer)
NO_WAY = ("ENETUNREACH", "EHOSTUNREACH", "ETIMEDOUT", "EACCES", "EPERM", "EADDRNOTAVAIL")
REACHED = ("open", "ECONNREFUSED", "ECONNRESET")
_WORD = re.compile(r"[][A-Za-z0-9_.:*-]{1,255}")

# One node process, every probe at once; one line per probe: "<index> <result>", where result
# is "open", "HTTP <status>" or an error code. Never a header or body.
EGRESS_JS = r"""
const net = require("net");
const specs = process.argv.slice(1);
let left = specs.length;
const seen = new Set();
const out = (i, r) => { if (seen.has(i)) return; seen.add(i);
  process.stdout.write(i + " " + r + "\n"); if (--left === 0) process.exit(0); };
if (!left) process.exit(0);
specs.forEach((spec, i) => {
  const [mode, host, port, target] = spec.split(" ");
  const ms = parseInt(spec.split(" ").pop(), 10) || 3000;
  const s = net.connect({ host, port: parseInt(port, 10) });
  const t = setTimeout(() => { s.destroy(); out(i, "ETIMEDOUT"); }, ms);
  s.on("error", (e) => { clearTimeout(t); out(i, e.code || "error"); });
  s.on("connect", () => {
    if (mode === "tcp") { clearTimeout(t); s.destroy(); return out(i, "open"); }
    s.write("CONNECT " + target + " HTTP/1.1\r\nHost: " + target + "\r\n\r\n");
    let buf = "";
    s.on("data", (d) => { buf += d.toString("latin1");
      const m = /^HTTP\/1\.[01] (\d{3})/.exec(buf);
      if (m || buf.length > 4096 || buf.includes("\n")) { clearTimeout(t); s.destroy();
        out(i, m ? "HTTP " + m[1] : "EPROTO"); } });
    s.on("end", () => { clearTimeout(t); out(i, "ECONNRESET"); });
  });
});
""".strip()


def _row(check, status, detail, needed=False):
    return Row(SECTION, check, status, detail, needed)


def installed():
    """The namespace design (api-only, local-only): a proxy.json with a CONNECT listener.
    Under internet the proxy serves the key routes alone (verify/keys_rows.py)."""
    if not os.path.lexists(proxy_config.PATH):
        return False
    cfg, _ = read_config()
    return cfg is None or bool(cfg.listen)


def read_config():
    """(the proxy's Config, None) or (None, why): judged by the proxy's own validation, so a
    file the proxy refuses never passes here."""
    try:
        text = safefile.read_text(proxy_config.PATH)
    except Exception as err:   # safefile's one-line reason
        return None, str(err)
    if text is None:
        return None, "%s is missing" % proxy_config.PATH
    try:
        return proxy_config.parse(text), None
    except ValueError as err:
        return None, "%s is refused by the proxy (%s)" % (proxy_config.PATH,
                                                          str(err).splitlines()[0])


def config_row(cfg, why):
    if cfg is None:
        return _row("proxy list", FAIL, why + ": run --firewall --profile api-only (or "
                    "local-only) again")
    names, now = cfg.allow, time.time()
    shown = [n if n not in cfg.expires else "%s (%s %s)" % (
        n, "until" if cfg.expires[n] > now else "ENDED, refused since",
        temporary.until_text(cfg.expires[n])) for n in names]
    return _row("proxy list", PASS if names else WARN,
                "%d name%s: %s" % (len(names), "" if len(names) == 1 else "s", ", ".join(shown))
                if names else
                "the list is empty: the agent reaches nothing (add %s)" % (
                    "--allow-domain NAME" if cfg.ports else "an Ollama baseUrl"))


def refusals_row(cfg):
    """Advice: the proxy's refusals of the last 24 hours, the three most refused."""
    try:
        found, _ = refused.refusals(cfg, time.time() - 86400)
    except Exception as err:   # the log's one-line reason: not readable here, not there yet
        return _row("refusals (24h)", SKIP, str(err))
    if not found:
        return _row("refusals (24h)", PASS, "the proxy refused nothing in the last 24 hours")
    total = sum(r["count"] for r in found)
    return _row("refusals (24h)", WARN, "%d refusal%s of %d destination%s, most: %s; see "
                "--refused (the command that opens each)" % (
                    total, "" if total == 1 else "s", len(found), "" if len(found) == 1 else "s",
                    ", ".join("%s (%d)" % (r["destination"], r["count"]) for r in found[:3])))


def service_row():
    if not os.path.isdir("/run/systemd/system"):
        return _row("proxy service", SKIP, "systemd is not running here: the proxy runs in the "
                    "foreground (%s); the next row checks that it answers"
                    % unit.foreground_command())
    try:
        res = runner.run(["systemctl", "is-active", unit.UNIT_NAME], check=False, timeout=10)
    except runner.CommandError as err:
        return _row("proxy service", SKIP, failure(err, 10), needed=True)
    state = res.stdout.strip() or "unknown"
    if state == "active":
        return _row("proxy service", PASS, "%s is active" % unit.UNIT_NAME)
    return _row("proxy service", FAIL, "%s is %s: the agent has no egress (systemctl status %s)"
                % (unit.UNIT_NAME, state, unit.UNIT_NAME))


def _connect(address, timeout=2.0):
    """None when a connection to a parsed address ("unix", PATH) or ("tcp", (HOST, PORT))
    opens, else the reason."""
    kind, target = address
    try:
        s = socket.socket(socket.AF_UNIX if kind == "unix" else
                          socket.AF_INET6 if ":" in target[0] else socket.AF_INET)
        s.settimeout(timeout)
        try:
            s.connect(target)
        finally:
            s.close()
        return None
    except (OSError, ValueError) as err:
        return getattr(err, "strerror", None) or str(err)


def listening_row(cfg):
    if cfg is None:
        return _row("proxy answers", SKIP, "no proxy configuration to read", needed=True)
    describe = proxy_format.describe
    dead = [(describe(a), why) for a, why in ((a, _connect(a)) for a in cfg.listen) if why]
    if dead:
        return _row("proxy answers", FAIL, "nothing answers on %s (%s): the proxy is down, the "
                    "agent has no egress" % dead[0])
    return _row("proxy answers", PASS, "listening on %s" % ", ".join(map(describe, cfg.listen)))


# ---- from inside the agent's namespace ------------------------------------------------------

def targets(cfg, view):
    """[(check, spec, expect, why)]: expect "open" (must get through) or "refused"."""
    px = "%s %d" % proxy_config.AGENT_PROXY
    allow = cfg.allow
    off = next(n for n in OFF_LIST if n not in allow)
    gw = view.lan_gateway
    lan = gw if gw and ipaddress.ip_address(gw).is_private else "192.168.1.1"
    out = [("proxy reachable", "tcp %s %d" % (px, PROBE_MS), "open",
            "the agent's proxy address, 127.0.0.1:%d" % proxy_config.AGENT_PROXY[1]),
           ("off-list name refused", "connect %s %s:443 %d" % (px, off, PROBE_MS), "refused",
            "CONNECT %s:443, a name off the list" % off),
           ("LAN address refused", "connect %s %s:443 %d" % (px, lan, PROBE_MS), "refused",
            "CONNECT %s:443 through the proxy" % lan),
           ("metadata refused", "connect %s %s:443 %d" % (px, METADATA, PROBE_MS), "refused",
            "CONNECT %s:443 (cloud metadata) through the proxy" % METADATA),
           ("direct LAN fails", "tcp %s 80 %d" % (lan, PROBE_MS), "closed",
            "a direct connection to %s:80" % lan),
           ("direct host fails", "tcp %s 22 %d" % (view.lan_address or "172.17.0.1", PROBE_MS),
            "closed", "a direct connection to this host, %s:22"
            % (view.lan_address or "172.17.0.1")),
           ("direct internet fails", "tcp %s 443 %d" % (INTERNET_ADDRESS, PROBE_MS), "closed",
            "a direct connection to %s:443" % INTERNET_ADDRESS)]
    exact = [n for n in allow if not n.startswith("*.")]
    if exact:   # a listed HOST:PORT (local-only's Ollama) on its port; its neighbour port is
        host, port = split_host_port(exact[0])   # refused: the hole is that one port
        port = port or 443
        if port != 443 or cfg.ports != [443]:
            out.append(("other port refused", "connect %s %s:%d %d" % (
                px, host, port % 65535 + 1, PROBE_MS), "refused", "CONNECT %s:%d, a port off "
                "the list" % (host, port % 65535 + 1)))
        out.append(("allowed name reached", "connect %s %s:%d %d" % (px, host, port, PROBE_MS),
                    "open", "CONNECT %s:%d through the proxy" % (host, port)))
    return out


def run_probes(argv_prefix, specs):
    """{index: result} of EGRESS_JS run with argv_prefix (docker exec ... / ip netns exec ...),
    or (None, why) when it could not run."""
    for spec in specs:
        if not all(_WORD.fullmatch(w) for w in spec.split()):
            raise ValueError("probe word refused: %r" % spec)
    try:
        res = runner.run(argv_prefix + ["node", "-e", EGRESS_JS] + specs, check=False,
                         timeout=EXEC_TIMEOUT)
    except runner.CommandError as err:
        return None, failure(err, EXEC_TIMEOUT)
    got = {}
    for line in res.stdout.splitlines():
        index, _, result = line.partition(" ")
        if index.isdigit():
            got[int(index)] = result.strip()
    if not got:
        return None, brief(res.stderr, "node gave no answer (exit %d)" % res.returncode)
    return got, None


def _host_reaches(target, timeout=3.0):
    """Whether this host itself opens a TCP connection to target, HOST:PORT (the honest-skip
    test); host.docker.internal is the host's loopback, as for the proxy."""
    host, port = split_host_port(target)
    try:
        socket.create_connection((str(HOST_LOOPBACK.get(host, host.strip("[]"))), port),
                                 timeout=timeout).close()
        return True
    except OSError:
        return False


def judge(plan, got):
    """Rows from the plan and the probe results. The direct-connection rows count only when the
    control (the proxy reachable from the same place) opened."""
    rows = []
    control = got.get(0) == "open"
    for i, (check, _spec, expect, what) in enumerate(plan):
        result = got.get(i)
        if result is None:
            rows.append(_row(check, SKIP, "%s: the probe gave no answer" % what, needed=True))
        elif expect == "open" and check == "proxy reachable":
            rows.append(_row(check, PASS if control else FAIL, "%s: %s" % (
                what, "opens (the control: the probe sees an open path)" if control else
                result + ": the agent cannot reach its proxy, so it has no egress")))
        elif expect == "open":
            if result == "HTTP 200":
                rows.append(_row(check, PASS, "%s: 200, the tunnel opened" % what))
            elif not _host_reaches(what.split()[1]):
                rows.append(_row(check, SKIP, "%s: %s, and this host cannot reach it either "
                                 "(no internet here, or Ollama not running?)" % (what, result)))
            else:
                rows.append(_row(check, FAIL, "%s: %s, though this host reaches it" % (what,
                                                                                      result)))
        elif expect == "refused":
            if not control:
                rows.append(_row(check, SKIP, "%s: not judged, the proxy is unreachable" % what,
                                 needed=True))
            elif result.startswith("HTTP ") and result != "HTTP 200":
                rows.append(_row(check, PASS, "%s: refused (%s)" % (what, result)))
            else:
                rows.append(_row(check, FAIL, "%s: %s" % (what, "the tunnel OPENED" if
                                                          result == "HTTP 200" else result)))
        else:   # closed: a direct connection must find no way out
            if result in REACHED:
                rows.append(_row(check, FAIL, "%s: %s, a packet got there: the agent has a "
                                 "network of its own" % (what, result)))
            elif result not in NO_WAY or not control:
                rows.append(_row(check, SKIP, "%s: %s, which tells nothing%s" % (
                    what, result, "" if control else " (and the control did not open)"),
                                 needed=True))
            else:
                rows.append(_row(check, PASS, "%s: %s" % (what, result)))
    return rows


def validate_argv(cfg):
    """`openclaw proxy validate`, told what must pass: its default allowed check is
    https://example.com/, which a correct cage refuses unless it is on the list. The first
    exact entry replaces it (`--allowed-url` overrides the default); the loopback canary, the
    denied check, stays."""
    argv = VALIDATE_ARGV[:]
    exact = [n for n in cfg.allow if not n.startswith("*.")]
    if exact:
        host, port = split_host_port(exact[0])
        argv += ["--allowed-url", "https://%s/" % host if not port else
                 "http://%s:%d/" % (host, port)]   # an IPv6 host comes bracketed
    return argv


def validate_row(cid, cfg):
    """Judged check by check, never by the exit status alone: a denied check that got
    through fails; an allowed check fails only when the listed entry got no answer at all
    though this host itself reaches it (an unlisted default, an answer that is not a 2xx, or
    no internet here, is said, not failed)."""
    argv = validate_argv(cfg)
    try:
        res = runner.run(["docker", "exec", cid] + argv, check=False, timeout=90)
    except runner.CommandError as err:
        return _row("openclaw proxy validate", SKIP, failure(err, 90), needed=True)
    try:
        report = json.loads(res.stdout)
        checks = [c for c in report["checks"] if isinstance(c, dict)]
        errors = report["config"].get("errors") or []
    except (ValueError, TypeError, KeyError, AttributeError):
        return _row("openclaw proxy validate", SKIP, "this OpenClaw image has no `openclaw "
                    "proxy validate --json` (%s)" % brief(res.stderr, "exit %d" % res.returncode))
    bad = ["config: %s" % e for e in errors][:1]
    bad += ["%s got through" % c.get("url") for c in checks
            if c.get("kind") == "denied" and c.get("ok") is not True]
    listed = argv[-1] if argv != VALIDATE_ARGV else None
    entry = next((n for n in cfg.allow if not n.startswith("*.")), "")
    entry = entry if split_host_port(entry)[1] else entry + ":443"
    said, unjudged = [], None
    for c in checks:
        if c.get("kind") != "allowed" or c.get("ok") is True:
            continue
        if c.get("url") != listed:
            said.append("%s is off the list, so refused" % c.get("url"))
        elif c.get("status") not in (None, "", "unreachable"):
            # an answer came back (an API's root is rarely a 2xx): an origin's, or the proxy's
            # refusal; the Egress probes above judge the proxy, so said, not failed
            said.append("%s answered %s" % (listed, c.get("status")))
        elif not _host_reaches(entry):
            unjudged = "%s not reached, nor by this host (no internet here?)" % listed
            said.append(unjudged)
        else:
            bad.append("%s not reached through the proxy" % listed)
    if bad:
        return _row("openclaw proxy validate", FAIL, "OpenClaw's own proxy check: %s "
                    "(docker exec <gateway> %s)" % ("; ".join(bad), " ".join(argv)))
    if not any(c.get("kind") == "denied" for c in checks):
        return _row("openclaw proxy validate", SKIP, "OpenClaw's own proxy check ran no "
                    "denied check")
    return _row("openclaw proxy validate", SKIP if unjudged else PASS, "OpenClaw's own proxy "
                "check: the denied destination refused%s" % ("; " + "; ".join(said) if said
                                                             else ""))


def instead_of_probes(netns, gateway=None):
    """The container and probe groups under api-only: the agent has no network of its own, so
    no probe runs from the claw-cage network (these rows probe its namespace instead). The
    gateway's hardening is read as usual; its DNS row does not apply (nothing resolves inside)."""
    why = "api-only profile: the agent has no network; the Egress rows probe its namespace"
    if netns:
        return [Row(container.SECTION, "container", SKIP, "test mode: network namespace %s, no "
                    "container" % netns), Row(probe_plan.SECTION, "probes", SKIP, why)]
    info, reason = gateway or container.find_gateway()   # the run's one look, when given
    if info is None:
        return [Row(container.SECTION, "container", SKIP, reason, needed=True)]
    return container.inspect_rows(info) + [Row(probe_plan.SECTION, "probes", SKIP, why)]


def rows(bridge, subnet, netns=None, gateway=None):
    """Every egress row; [] when the api-only profile is not installed."""
    if not installed():
        return []
    cfg, why = read_config()
    out = [config_row(cfg, why), service_row(), listening_row(cfg)]
    if cfg is None:
        return out
    out.append(refusals_row(cfg))
    if netns:
        prefix, cid = ["ip", "netns", "exec", netns], None
    else:
        info, why = gateway or container.find_gateway()
        if info is None:
            return out + [_row("agent namespace", SKIP, why, needed=True)]
        cid = info.get("Id") or ""
        prefix = ["docker", "exec", cid]
        out += [relay_rows.socket_row(cfg), relay_rows.namespace_row(info)]
    plan = targets(cfg, probe_plan.look_at_host(bridge, subnet))
    got, why = run_probes(prefix, [spec for _, spec, _, _ in plan])
    if got is None:
        return out + [_row("agent namespace", SKIP, "the probes could not run: %s" % why,
                           needed=True)]
    out += judge(plan, got)
    if cid:
        out.append(validate_row(cid, cfg))
    else:
        out.append(_row("openclaw proxy validate", SKIP, "test mode: namespace %s, no OpenClaw"
                        % netns))
    return out
