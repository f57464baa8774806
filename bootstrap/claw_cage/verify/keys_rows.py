"""Keys rows (issue 29): no key where the agent can read it, and the proxy's routes at work.

The values searched for are those of .env (the user's; the root-only store holds the same):
each is looked for in `docker inspect` of every container of the stack, in the install
directory's OpenClaw configs, and, by one node process in the gateway (`docker exec -i`, the
values on its stdin, never in argv), in its /proc/1/environ and its state folders. OpenClaw's
own auth profiles (agents/<id>/agent/openclaw-agent.sqlite, table auth_profile_store) are
counted: "a key inside the agent". The same process asks each route what the agent would
(the placeholder key), and under api-only CONNECTs to each routed provider's host, which the
proxy must refuse. Only names ever reach a row or the output, never a value.
"""

import json
import os

from .. import composefile, runner, safefile
from ..egress import config as proxy_config
from ..egress import domains, keys
from ..errors import ClawCageError
from . import container
from .probes import brief, failure
from .report import Row, PASS, FAIL, WARN, SKIP

SECTION = "Keys"
CONFIGS = ("openclaw.json", keys.CONFIG, "openclaw.api-only.json", "openclaw.local-only.json")
TIMEOUT = 60

# stdin: {"values": [...], "asks": [[method, host, port, path, connect target or ""]]}.
# stdout, one line each: "environ I", "state I FILE", "profiles AGENT N", "ask J RESULT"
# (I: index of the value found, -1 none; RESULT: "HTTP nnn" or an error code).
SCAN_JS = r"""
const fs = require("fs"), path = require("path"), net = require("net");
let input = ""; const out = [];
process.stdin.on("data", (d) => { input += d; }).on("end", () => {
  const job = JSON.parse(input), vals = job.values.map((v) => Buffer.from(v));
  const hit = (b) => vals.findIndex((v) => b.indexOf(v) >= 0);
  try { out.push("environ " + hit(fs.readFileSync("/proc/1/environ"))); } catch (e) {}
  let files = 0;
  const walk = (d, top) => { let es = []; try { es = fs.readdirSync(d, { withFileTypes: true }); } catch (e) {}
    for (const e of es) { const p = path.join(d, e.name);
      if (e.isDirectory()) walk(p, top);
      else if (e.isFile() && files++ < 50000) { try { if (fs.statSync(p).size < (64 << 20)) {
        const i = hit(fs.readFileSync(p)); if (i >= 0) out.push("state " + i + " " + JSON.stringify(path.relative(top, p))); } } catch (e) {} } } };
  const home = process.env.HOME || "/home/node", state = process.env.OPENCLAW_STATE_DIR || home + "/.openclaw";
  for (const top of [state, home + "/.config/openclaw"]) walk(top, top);
  let sqlite = null; try { sqlite = require("node:sqlite"); } catch (e) {}
  let agents = []; try { agents = fs.readdirSync(state + "/agents"); } catch (e) {}
  for (const a of agents) { const db = state + "/agents/" + a + "/agent/openclaw-agent.sqlite";
    if (!fs.existsSync(db)) continue;
    try { const c = new sqlite.DatabaseSync(db, { readOnly: true });
      out.push("profiles " + JSON.stringify(a) + " " + c.prepare("SELECT count(*) AS n FROM auth_profile_store").get().n); c.close();
    } catch (e) { out.push("profiles " + JSON.stringify(a) + " ?"); } }
  let left = job.asks.length; const done = () => { if (--left <= 0) finish(); };
  const finish = () => { process.stdout.write(out.join("\n") + "\n"); process.exit(0); };
  if (!left) return finish();
  job.asks.forEach(([method, host, port, p, target], j) => {
    const s = net.connect({ host, port }); let buf = "", said = false;
    const say = (r) => { if (said) return; said = true; out.push("ask " + j + " " + r); s.destroy(); done(); };
    s.setTimeout(8000, () => say("ETIMEDOUT"));
    s.on("error", (e) => say(e.code || "error"));
    s.on("connect", () => s.write(target ? "CONNECT " + target + " HTTP/1.1\r\nHost: " + target + "\r\n\r\n"
      : method + " " + p + " HTTP/1.1\r\nHost: " + host + "\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}"));
    s.on("data", (d) => { buf += d.toString("latin1"); const m = /^HTTP\/1\.[01] (\d{3})/.exec(buf);
      if (m || buf.length > 4096) say(m ? "HTTP " + m[1] : "EPROTO"); });
    s.on("end", () => say("ECONNRESET"));
  });
});
""".strip()


def _row(check, status, detail, needed=False):
    return Row(SECTION, check, status, detail, needed)


def _names(found, moved):
    return ", ".join(moved[i] for i in sorted(set(found)))


def inspect_row(values, moved):
    """No key value in `docker inspect` of any container of the stack (running or not)."""
    try:
        ids = runner.run(["docker", "ps", "-aq", "--no-trunc", "--filter",
                          "label=com.docker.compose.project=" + container.PROJECT],
                         check=False, timeout=10).stdout.split()
        infos = json.loads(runner.run(["docker", "inspect"] + ids, check=False,
                                      timeout=20).stdout or "[]") if ids else []
    except (runner.CommandError, ValueError) as err:
        return _row("no key in docker inspect", SKIP, "docker inspect: %s" % failure(err, 20))
    bad = ["%s (%s)" % ((i.get("Name") or "?").lstrip("/"), _names(
        [n for n, v in enumerate(values) if v in json.dumps(i)], moved))
        for i in infos if any(v in json.dumps(i) for v in values)]
    if bad:
        return _row("no key in docker inspect", FAIL, "a key is in the container's settings: %s;"
                    " recreate it (docker compose up -d --force-recreate)" % "; ".join(bad))
    return _row("no key in docker inspect", PASS, "none of %s in %d container(s) of the stack"
                % (", ".join(moved), len(infos)))


def configs_row(directory, values, moved):
    bad = []
    for name in CONFIGS:
        try:
            text = safefile.read_text(os.path.join(directory, name)) or ""
        except ClawCageError:
            continue
        found = [n for n, v in enumerate(values) if v in text]
        if found:
            bad.append("%s (%s)" % (name, _names(found, moved)))
    if bad:
        return _row("no key in the OpenClaw configs", FAIL, "%s: put the key in .env only, a "
                    "placeholder in the config, and run --firewall again" % "; ".join(bad))
    return _row("no key in the OpenClaw configs", PASS, "%s hold placeholders only"
                % ", ".join(CONFIGS[:2]))


def asks(cfg, host, port):
    """[(check, [method, host, port, path, connect target])] of what the gateway asks."""
    out = []
    for r in cfg.get("routes") or []:
        name = r.get("name")
        path = {"telegram": "/telegram/bot0:%s/getMe" % keys.PLACEHOLDER,
                "ollama": "/ollama/api/version"}.get(name, "/%s/" % name)
        out.append(("route " + name, ["GET", host, port, path, ""]))
        if name == "ollama":
            out.append(("ollama refuses /api/pull", ["POST", host, port, "/ollama/api/pull", ""]))
        elif cfg.get("listen"):   # api-only: the CONNECT list must not hold it
            target = r.get("upstream", "").split("//", 1)[-1] + ":443"
            out.append(("CONNECT %s refused" % target, ["", "127.0.0.1", 3128, "", target]))
    return out


def judge(check, result):
    status = result.split()[-1] if result.startswith("HTTP ") else None
    if check.startswith("ollama"):
        return _row(check, PASS if status == "403" else FAIL,
                    "HTTP 403: Ollama's model-changing paths are refused" if status == "403"
                    else "the route answered %s, not 403: /api/pull reaches the host's Ollama"
                    % result)
    if check.startswith("CONNECT"):
        return _row(check, PASS if status == "403" else FAIL,
                    "refused (HTTP 403): every call to it goes through its route and its log"
                    if status == "403" else "answered %s: the agent reaches it without the "
                    "route" % result)
    if status is None:
        return _row(check, FAIL, "no answer from the route (%s): is the proxy running?" % result)
    if status in ("502", "503", "504"):
        return _row(check, SKIP, "the route answers, but HTTP %s: this host cannot reach the "
                    "provider (no internet here?)" % status)
    return _row(check, PASS, "answers, and the provider answered through it (HTTP %s)" % status)


def gateway_rows(info, values, moved, cfg, host, port):
    questions = asks(cfg, host, port)
    job = json.dumps({"values": values, "asks": [q for _, q in questions]})
    try:
        res = runner.run(["docker", "exec", "-i", info.get("Id") or "", "node", "-e", SCAN_JS],
                         input=job, check=False, timeout=TIMEOUT)
    except runner.CommandError as err:
        return [_row("no key in the gateway", SKIP, failure(err, TIMEOUT), needed=True)]
    if not res.ok:
        return [_row("no key in the gateway", SKIP, "node in the gateway: %s" % brief(
            res.stderr, "exit %d" % res.returncode), needed=True)]
    lines = [l.split(" ", 2) for l in res.stdout.splitlines() if l.strip()]
    env = [int(l[1]) for l in lines if l[0] == "environ"]
    state = [(int(l[1]), json.loads(l[2])) for l in lines if l[0] == "state"]
    out = [_row("no key in the gateway's environment", SKIP if not env else
                PASS if env[0] < 0 else FAIL,
                "/proc/1/environ not readable" if not env else
                "none of %s in /proc/1/environ" % ", ".join(moved) if env[0] < 0 else
                "/proc/1/environ holds %s: recreate the gateway (docker compose up -d)"
                % moved[env[0]])]
    out.append(_row("no key readable in the state volume", FAIL if state else PASS,
                    "%s: remove it there (the proxy holds it)" % "; ".join(
                        "%s in %s" % (moved[i], f) for i, f in state[:5]) if state else
                    "no value of .env's keys in the state folders"))
    for _, agent, n in [l for l in lines if l[0] == "profiles"]:
        agent = json.loads(agent)
        if n != "0":
            out.append(_row("a key inside the agent", WARN, "agent %s: %s auth profile(s) in "
                            "agents/%s/agent/openclaw-agent.sqlite (OpenClaw's onboarding keeps "
                            "keys there, readable by the agent): remove them (openclaw models "
                            "auth) and keep the keys in .env" % (agent, n, agent)))
    answers = dict((int(l[1]), l[2]) for l in lines if l[0] == "ask")
    out += [judge(check, answers.get(j, "no answer")) for j, (check, _) in enumerate(questions)]
    return out


def budget_row(cfg):
    routes = [r for r in cfg.get("routes") or [] if r.get("key")]
    none = [r["name"] for r in routes if not r.get("budget") and r.get("auth") != "telegram-path"]
    text = "; ".join("%s %d/hour, %d/day" % (r["name"], r["budget"]["hour"], r["budget"]["day"])
                     for r in routes if r.get("budget"))
    if none:
        return _row("budget", WARN, "no budget on %s: a hijacked agent can spend without a "
                    "limit (--firewall --budget ROUTE:HOUR/DAY)%s" % (", ".join(none),
                                                                       "; " + text if text else ""))
    return _row("budget", PASS, text or "no key route")


def listener_row(proxy, directory):
    """The TCP routes listener (internet) serves the claw-cage network's subnet alone
    (routes_clients): a LAN neighbour that routes that subnet via this host is refused."""
    listen = [a for a in proxy.get("routes_listen") or [] if not a.startswith("unix:")]
    if not listen:
        return None
    clients = proxy.get("routes_clients") or []
    try:
        subnet = str(composefile.declared_network(directory).subnet)
    except ClawCageError as err:
        return _row("routes listener", SKIP, str(err))
    if clients == [subnet]:
        return _row("routes listener", PASS, "%s serves %s alone (the claw-cage network); the "
                    "firewall drops that port from any other interface"
                    % (", ".join(listen), subnet))
    return _row("routes listener", FAIL, "%s serves %s, not the claw-cage network %s alone: "
                "run sudo python3 claw-cage.pyz --firewall" % (", ".join(listen), ", ".join(
                    clients) or "no network (the proxy refuses to start)", subnet))


def rows(directory, gateway, netns=None):
    try:
        values = domains.read_env(directory)
        cfg = domains.read_openclaw(directory)
    except ClawCageError as err:
        return [_row("keys", SKIP, str(err))]
    moved = keys.moved(values)
    secrets = [values[n] for n in moved]
    out = [_row("%s stays inside" % name, WARN, "its token travels inside a WebSocket, which no "
                "route can serve without intercepting TLS: the agent holds it")
           for name in keys.inside(values, cfg)]
    try:
        with open(proxy_config.PATH, encoding="utf-8") as f:
            proxy = json.load(f)
    except (OSError, ValueError):
        proxy = {}
    if not moved and not proxy.get("routes"):
        return out + [_row("keys", PASS, "no provider key or TELEGRAM_BOT_TOKEN in .env")]
    if moved and not proxy.get("routes"):
        out.append(_row("keys outside the agent", FAIL, "%s in .env, but no route carries them: "
                        "run sudo python3 claw-cage.pyz --firewall" % ", ".join(moved)))
    if proxy.get("routes"):
        out.append(budget_row(proxy))
        out += [r for r in [listener_row(proxy, directory)] if r]
    if secrets:
        out += [inspect_row(secrets, moved), configs_row(directory, secrets, moved)]
    info, why = gateway
    if netns or info is None:
        return out + [_row("no key in the gateway", SKIP, why or "test mode: no container")]
    listen = [a for a in proxy.get("routes_listen") or [] if not a.startswith("unix:")]
    host, _, port = (listen[0] if listen else "127.0.0.1:%d" % keys.PORT).rpartition(":")
    return out + gateway_rows(info, secrets, moved, proxy, host, int(port))
