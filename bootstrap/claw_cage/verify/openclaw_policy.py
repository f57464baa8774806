"""OpenClaw policy rows: OpenClaw's own `security audit --json`, run inside the running
gateway, and the hardened keys of deploy/openclaw.json checked in the configuration the
gateway actually loads (the hardening guide's OpenClaw policy layer; under --profile
local-only also the local-model settings of OpenClaw's hardened deployment).

Read-only: `docker ps`/`docker inspect` (container.find_gateway) and two `docker exec`
into the gateway container (the compose service's container, found by its compose labels):
  node dist/index.js security audit --json      the release's JSON report (see AUDIT_ARGV)
  sh -c 'node dist/index.js config file; cat'   the active config file, as the gateway reads it
Without a running gateway every row is `skip` with the reason, never `pass`.
"""

import json
import re

from .. import runner
from . import container
from .report import Row, PASS, FAIL, WARN, SKIP

SECTION = "OpenClaw policy"
EXEC_TIMEOUT = 90
AUDIT_ARGV = ["node", "dist/index.js", "security", "audit", "--json"]
# `config file` prints the active path (OPENCLAW_CONFIG_PATH, else the state dir's); the
# fallback is OpenClaw's documented default when that command is missing or fails.
CONFIG_SH = ('p=$(node dist/index.js config file 2>/dev/null | tail -n 1); '
             '[ -f "$p" ] || p="${OPENCLAW_CONFIG_PATH:-$HOME/.openclaw/openclaw.json}"; '
             'echo "$p"; cat -- "$p"')

# Tool groups of the pinned release (openclaw/docs docs/gateway/config-tools.md, v2026.7.1).
GROUPS = {"group:runtime": ("exec", "process", "code_execution"),
          "group:fs": ("read", "write", "edit", "apply_patch"),
          "group:ui": ("browser", "canvas"),
          "group:automation": ("heartbeat_respond", "cron", "gateway"),
          "group:nodes": ("nodes", "computer")}
ALIASES = {"bash": "exec"}
CHECKS = ("security audit", "config file", "gateway.mode", "gateway.bind", "gateway.auth.mode",
          "discovery.mdns.mode", "browser.ssrfPolicy", "tools.elevated", "telegram agent tools",
          "channels.telegram.dmPolicy", "logging.redactSensitive")
LOCAL_ONLY_CHECKS = ("models.mode", "models.providers.ollama", "browser.enabled",
                     "tools.allow/deny")


def _row(check, status, detail):
    return Row(SECTION, "policy " + check, status, detail)


def skipped(reason, local_only=False):
    """No gateway to ask: one row for the whole group, as the container group has."""
    count = len(CHECKS) + (len(LOCAL_ONLY_CHECKS) if local_only else 0)
    return [Row(SECTION, "policy", SKIP, "%s: none of the %d policy checks could run"
                % (reason, count))]


def get(cfg, path, default=None):
    node = cfg
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return default
        node = node[part]
    return node


def _names(value):
    """A tool list as OpenClaw matches it: case-insensitive, aliases resolved, groups expanded."""
    out = set()
    for v in value if isinstance(value, list) else ():
        name = ALIASES.get(str(v).strip().lower(), str(v).strip().lower())
        out.add(name)
        out.update(GROUPS.get(name, ()))
    return out


def denied(deny, tool):
    """True if the (expanded) deny list blocks `tool`, a tool id or a whole group."""
    return "*" in deny or tool in deny or all(m in deny for m in GROUPS.get(tool, (None,)))


def allowed_only(allow, tool):
    """True if a non-empty (expanded) allow list leaves `tool` (id or group) out entirely."""
    if not allow or "*" in allow:
        return False
    return not any(m in allow for m in GROUPS.get(tool, ()) + (tool,))


def telegram_agent(cfg):
    """(agent id, agent dict) that answers Telegram: the first route binding for channel
    telegram, else the default agent (OpenClaw's documented routing order)."""
    agents = [a for a in get(cfg, "agents.list", []) or [] if isinstance(a, dict)]
    by_id = dict((a.get("id"), a) for a in agents)
    for b in get(cfg, "bindings", []) or []:
        if not isinstance(b, dict) or b.get("type", "route") != "route":
            continue
        match = b.get("match") or {}
        if match.get("channel") == "telegram" and not match.get("peer"):
            aid = b.get("agentId")
            return aid, by_id.get(aid, {})
    default = [a for a in agents if a.get("default")] or agents[:1]
    if default:
        return default[0].get("id"), default[0]
    return "main", {}


def config_rows(cfg, local_only):
    rows = []
    mode = get(cfg, "gateway.mode")
    rows.append(_row("gateway.mode", PASS if mode == "local" else FAIL,
                     "local" if mode == "local" else
                     "%r: the gateway refuses to start unless it is \"local\"" % (mode,)))
    bind = get(cfg, "gateway.bind")
    if bind == "lan":
        rows.append(_row("gateway.bind", PASS, "lan inside the container (the published port "
                         "needs it); the host publishes it on 127.0.0.1 only"))
    else:
        rows.append(_row("gateway.bind", WARN, "%r: claw-cage's command line forces --bind lan; "
                         "keep \"lan\" here so the file says what runs" % (bind,)))
    auth = get(cfg, "gateway.auth.mode")
    rows.append(_row("gateway.auth.mode", FAIL if auth == "none" else
                     PASS if auth in (None, "token", "password") else WARN,
                     "none: the gateway's HTTP APIs need no secret" if auth == "none" else
                     "%s" % (auth or "unset: --auth token on the command line")))
    mdns = get(cfg, "discovery.mdns.mode")
    rows.append(_row("discovery.mdns.mode", PASS if mdns == "off" else
                     FAIL if mdns == "full" else WARN,
                     "off" if mdns == "off" else
                     "%r: LAN discovery advertising is on (only OPENCLAW_DISABLE_BONJOUR=1 in "
                     "docker-compose.yml still stops it)" % (mdns or "minimal (default)",)))
    ssrf = get(cfg, "browser.ssrfPolicy", {}) or {}
    loose = [k for k in ("dangerouslyAllowPrivateNetwork", "allowPrivateNetwork")
             if isinstance(ssrf, dict) and ssrf.get(k) is True]
    rows.append(_row("browser.ssrfPolicy", FAIL if loose else PASS,
                     "%s is true: the browser may open private-network addresses" % loose[0]
                     if loose else "private-network navigation blocked"))
    elevated = get(cfg, "tools.elevated.enabled")
    rows.append(_row("tools.elevated", PASS if elevated is False else
                     FAIL if elevated else WARN,
                     "off" if elevated is False else "enabled: exec may escape the sandbox"
                     if elevated else "not set explicitly to false"))
    aid, agent = telegram_agent(cfg)
    deny = _names(get(cfg, "tools.deny")) | _names(get(agent, "tools.deny"))
    allow = _names(get(agent, "tools.allow")) or _names(get(cfg, "tools.allow"))
    open_groups = [g for g in ("group:runtime", "group:fs")
                   if not (denied(deny, g) or allowed_only(allow, g))]
    rows.append(_row("telegram agent tools", FAIL if open_groups else PASS,
                     "agent %s (answers Telegram) may use %s" % (aid, " and ".join(open_groups))
                     if open_groups else "agent %s (answers Telegram): runtime and filesystem "
                     "tools denied" % aid))
    dm = get(cfg, "channels.telegram.dmPolicy")
    rows.append(_row("channels.telegram.dmPolicy", FAIL if dm == "open" else
                     PASS if dm in (None, "pairing", "allowlist", "disabled") else WARN,
                     "open: anyone can DM the bot" if dm == "open" else
                     dm or "unset (OpenClaw's default: pairing)"))
    redact = get(cfg, "logging.redactSensitive")
    rows.append(_row("logging.redactSensitive", FAIL if redact == "off" else PASS,
                     "off: tokens and keys may reach the logs" if redact == "off" else
                     redact or "unset (OpenClaw's default: tools)"))
    if local_only:
        rows.extend(local_only_rows(cfg))
    return rows


def local_only_rows(cfg):
    rows = []
    mode = get(cfg, "models.mode")
    rows.append(_row("models.mode", PASS if mode == "replace" else FAIL,
                     "replace: only the providers listed here" if mode == "replace" else
                     "%r: OpenClaw's built-in provider catalog stays in" % (mode or "merge",)))
    providers = get(cfg, "models.providers", {}) or {}
    ollama = [(k, p) for k, p in sorted(providers.items()) if isinstance(p, dict) and
              (k == "ollama" or p.get("api") == "ollama")]
    others = sorted(k for k in providers if k not in dict(ollama))
    if not ollama or not ollama[0][1].get("baseUrl"):
        rows.append(_row("models.providers.ollama", FAIL, "no Ollama provider with a baseUrl"))
    else:
        # the proxy's list takes it from here (--firewall --profile local-only)
        detail = "%s at %s" % (ollama[0][0], ollama[0][1]["baseUrl"])
        rows.append(_row("models.providers.ollama", WARN if others else PASS,
                         detail + ("; also: %s" % ", ".join(others) if others else "")))
    browser = get(cfg, "browser.enabled")
    rows.append(_row("browser.enabled", PASS if browser is False else FAIL,
                     "off" if browser is False else "browser on"))
    deny = _names(get(cfg, "tools.deny"))
    allow = _names(get(cfg, "tools.allow"))
    missing = [t for t in ("exec", "process", "browser", "canvas", "nodes", "cron", "gateway")
               if not denied(deny, t)]
    if not allow or "*" in allow:
        missing.insert(0, "no tools.allow list")
    rows.append(_row("tools.allow/deny", FAIL if missing else PASS,
                     "missing: %s" % ", ".join(missing) if missing else
                     "allow-list set; denied: exec, process, browser, canvas, nodes, cron, "
                     "gateway"))
    return rows


_COMMENT = r"//[^\n]*|/\*.*?\*/"
_JSON5 = re.compile(r"""(?P<s>"(?:\\.|[^"\\])*")|(?P<q>'(?:\\.|[^'\\])*')|(?P<c>%s)"""
                    r"""|(?P<k>[A-Za-z_$][\w$]*)(?=\s*:)|(?P<t>,)(?=(?:\s|%s)*[}\]])"""
                    % (_COMMENT, _COMMENT), re.S)


def loads(text):
    """openclaw.json as a dict: JSON, or the JSON5 that OpenClaw also reads (comments,
    trailing commas, unquoted keys, single-quoted strings)."""
    try:
        return json.loads(text)
    except ValueError:
        pass

    def plain(m):
        kind = m.lastgroup
        if kind == "q":
            return json.dumps(re.sub(r"\\(.)", r"\1", m.group()[1:-1]))
        if kind == "k":
            return json.dumps(m.group())
        return m.group() if kind == "s" else ""
    return json.loads(_JSON5.sub(plain, text))


def parse_audit(stdout):
    """The JSON report of `openclaw security audit --json` (docs/cli/security.md: ts, summary
    {critical, warn, info}, findings [{checkId, severity, title, detail, remediation?}]),
    skipping anything printed before it. None when there is no such report."""
    start = stdout.find("{")
    while start >= 0:
        try:
            report, _ = json.JSONDecoder().raw_decode(stdout, start)
        except ValueError:
            start = stdout.find("{", start + 1)
            continue
        if isinstance(report, dict) and isinstance(report.get("findings"), list):
            return report
        start = stdout.find("{", start + 1)
    return None


def audit_rows(report):
    """critical = fail, warn = warn, one row per finding; info findings are only counted."""
    rows, counts = [], {"critical": 0, "warn": 0, "info": 0}
    for f in report.get("findings") or []:
        if not isinstance(f, dict):
            continue
        sev = f.get("severity")
        counts[sev if sev in counts else "info"] += 1
        if sev in ("critical", "warn"):
            text = " ".join(str(f.get(k) or "") for k in ("title", "detail")).strip()
            rows.append(Row(SECTION, "audit " + str(f.get("checkId") or "?"),
                            FAIL if sev == "critical" else WARN, text[:160]))
    status = FAIL if counts["critical"] else WARN if counts["warn"] else PASS
    head = _row("security audit", status, "openclaw security audit: %d critical, %d warn, "
                "%d info" % (counts["critical"], counts["warn"], counts["info"]))
    return [head] + rows


def _exec(cid, argv):
    """(Result, None) of argv run in the gateway container, or (None, why it did not run)."""
    try:
        return runner.run(["docker", "exec", cid] + argv, check=False,
                          timeout=EXEC_TIMEOUT), None
    except runner.CommandError as err:
        return None, str(err).split(": ", 1)[-1][:120]


def _why(res):
    return ((res.stderr.strip().splitlines() or ["exit %d" % res.returncode])[-1])[:120]


def mount_row(info, path):
    """Is the config the gateway reads a read-only bind of the install dir's openclaw.json?"""
    for m in info.get("Mounts") or []:
        if m.get("Destination") == path and m.get("Type") == "bind":
            if m.get("RW"):
                return _row("config file", WARN, "%s is a writable bind mount of %s"
                            % (path, m.get("Source")))
            return _row("config file", PASS, "%s read-only from %s: OpenClaw and its agent "
                        "cannot rewrite the policy" % (path, m.get("Source")))
    return _row("config file", WARN, "%s is OpenClaw's own writable copy, not the install "
                "directory's openclaw.json (docker-compose.yml mounts it read-only)" % path)


def rows(local_only=False, netns=None, info=None):
    """Every OpenClaw policy row. info: `docker inspect` of the gateway, or None to look."""
    if netns:
        return skipped("test mode: network namespace %s, no container" % netns, local_only)
    if info is None:
        info, why = container.find_gateway()
        if info is None:
            return skipped(why, local_only)
    cid = info.get("Id") or ""
    res, why = _exec(cid, AUDIT_ARGV)
    report = parse_audit(res.stdout) if res is not None else None
    if report is None:
        result = [_row("security audit", WARN, "openclaw security audit --json gave no report: "
                       "%s" % (why or (_why(res) if not res.ok else "not the documented JSON")))]
    else:
        result = audit_rows(report)
    names = CHECKS[2:] + (LOCAL_ONLY_CHECKS if local_only else ())
    res, why = _exec(cid, ["sh", "-c", CONFIG_SH])
    path, _, text = (res.stdout if res is not None else "").partition("\n")
    if res is None or not res.ok:
        status = SKIP if res is None or not path.strip() else FAIL
        reason = why or _why(res)
        return result + [_row("config file", status, "cannot read %s in the gateway: %s"
                              % (path.strip() or "it", reason))] + \
            [_row(n, SKIP, "the config file could not be read") for n in names]
    try:
        cfg = loads(text)
        if not isinstance(cfg, dict):
            raise ValueError("not an object")
    except ValueError as err:
        return result + [_row("config file", FAIL, "%s is not valid JSON/JSON5 (%s): the "
                              "gateway cannot load it" % (path.strip(), str(err)[:60]))] + \
            [_row(n, SKIP, "the config file could not be parsed") for n in names]
    cfg, why = _with_root_include(cid, path.strip(), cfg)
    if cfg is None:
        return result + [_row("config file", FAIL, why)] + \
            [_row(n, SKIP, "the included config file could not be read") for n in names]
    return result + [mount_row(info, path.strip())] + config_rows(cfg, local_only)


def _merge(base, over):
    """OpenClaw's $include rule: sibling keys merge over the included ones, objects deeply."""
    out = dict(base)
    for key, value in over.items():
        both = isinstance(value, dict) and isinstance(out.get(key), dict)
        out[key] = _merge(out[key], value) if both else value
    return out


def _with_root_include(cid, path, cfg, depth=3):
    """(the config as the gateway loads it, None), or (None, why). openclaw.routes.json is a
    root `$include` of openclaw.json (or of openclaw.api-only.json, which includes it) plus
    the routes: judged alone, the hardening that openclaw.json holds would look missing.
    A few levels, each a file beside the config (as ours)."""
    name = cfg.get("$include")
    if name is None:
        return cfg, None
    if depth == 0 or not isinstance(name, str) or not re.fullmatch(r"(\./)?[\w.-]+", name) \
            or ".." in name:
        return None, "%s includes %r: not a file beside it, which --verify does not follow" \
            % (path, name)
    res, why = _exec(cid, ["cat", "--", path.rsplit("/", 1)[0] + "/" + name])
    try:
        base = loads(res.stdout) if res is not None and res.ok else None
    except ValueError:
        base = None
    if not isinstance(base, dict):
        return None, "%s includes %s, which cannot be read or parsed in the gateway (%s)" % (
            path, name, why or _why(res) if res is None or not res.ok else "not an object")
    base, why = _with_root_include(cid, path, base, depth - 1)
    if base is None:
        return None, why
    return _merge(base, {k: v for k, v in cfg.items() if k != "$include"}), None
