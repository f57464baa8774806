"""Keys outside the agent: which .env variables are keys, the root-only store the proxy
reads them from, the proxy's routes and the OpenClaw config that points the agent at them.

The agent gets a placeholder; the proxy (a host service) adds the real key on each request
of a route and opens verified TLS to the provider itself. The user keeps editing keys in
.env; `--firewall` copies each set one to /etc/claw-cage/keys/<VAR> (root 0700, files 0600,
the value and no newline), where systemd's LoadCredential= hands it to the proxy. A value
is never kept beyond the write, printed or logged: only its variable's name.
"""

import json
import os
import re

from .. import dotenv
from . import config, domains

STORE = config.ETC_DIR + "/keys"
PORT = 18790                                   # the routes, as the agent sees them
SOCKET = config.RUN_DIR + "/egress/routes.sock"  # the namespace relay carries 18790 here
PLACEHOLDER = "claw-cage-placeholder"
CONFIG = "openclaw.routes.json"   # the generated config the gateway reads (compose files)
OFF = None

# .env key -> route name, how the provider takes its key, OpenClaw's provider id, API path
# (the hosts: domains.PROVIDERS)
PROVIDER_ROUTES = {
    "ANTHROPIC_API_KEY": ("anthropic", "x-api-key", "anthropic", ""),
    "OPENAI_API_KEY": ("openai", "bearer", "openai", "/v1"),
    "OPENROUTER_API_KEY": ("openrouter", "bearer", "openrouter", "/api/v1"),
    "GEMINI_API_KEY": ("gemini", "x-goog-api-key", "google", "/v1beta"),
    "GROQ_API_KEY": ("groq", "bearer", "groq", "/openai/v1"),
}
TELEGRAM = "TELEGRAM_BOT_TOKEN"
NAMES = tuple(k for k, _ in domains.PROVIDERS) + (TELEGRAM,)
# tokens that travel inside a WebSocket: no route can add them without intercepting TLS
INSIDE = ("DISCORD_BOT_TOKEN", "SLACK_BOT_TOKEN", "SLACK_APP_TOKEN")
OLLAMA_PATHS = ["/api/chat", "/api/generate", "/api/embed", "/api/embeddings", "/api/tags",
                "/api/show", "/api/ps", "/api/version", "/v1/chat/completions",
                "/v1/completions", "/v1/embeddings", "/v1/models"]
# Per provider route unless --budget says otherwise: 600 requests an hour (10 a minute,
# beyond a busy interactive day) and 6,000 a day stop a hijacked agent's overnight loop
# long before a typical account limit. Telegram (long polling) and a local Ollama cost
# nothing per request: no default there.
DEFAULT_BUDGET = {"hour": 600, "day": 6000}


def moved(values):
    """The key variables set in {var: value} (.env), in table order."""
    return [name for name in NAMES if values.get(name)]


def inside(values, cfg):
    """Tokens that stay in the container: WebSocket channels set in .env or openclaw.json."""
    channels = cfg.get("channels") if isinstance(cfg.get("channels"), dict) else {}
    found = [n for n in INSIDE if values.get(n)]
    return found + ["channels.%s in openclaw.json" % c for c in ("discord", "slack")
                    if isinstance(channels.get(c), dict) and channels[c].get("enabled") is not False
                    and not any(n.startswith(c.upper()) for n in found)]


_BUDGET = re.compile(r"(?:([a-z0-9-]+):)?(?:(\d+)/(\d+)|(off))")


def parse_budgets(specs, names):
    """--budget [ROUTE:]HOUR/DAY or [ROUTE:]off -> {route or None: budget or OFF}.
    ValueError (one line) for a bad spec or an unknown route."""
    out = {}
    for spec in specs:
        m = _BUDGET.fullmatch(spec.strip())
        if not m or (m.group(2) and (int(m.group(2)) < 1 or int(m.group(3)) < int(m.group(2)))):
            raise ValueError("--budget %r: give [ROUTE:]PER_HOUR/PER_DAY (e.g. 600/6000 or "
                             "anthropic:100/1000, per day at least per hour) or [ROUTE:]off"
                             % spec[:40])
        if m.group(1) and m.group(1) not in names:
            raise ValueError("--budget %s: no route %r here (routes: %s)"
                             % (spec, m.group(1), ", ".join(names) or "none"))
        out[m.group(1)] = OFF if m.group(4) else {"hour": int(m.group(2)),
                                                   "day": int(m.group(3))}
    return out


def routes(values, ollama=None, budgets=None):
    """proxy.json's "routes" (the keys-contract): one per key set, and local-only's Ollama
    (ollama: "HOST:PORT" of its endpoint) with its path allow-list."""
    found = []
    for var, host in domains.PROVIDERS:
        if values.get(var):
            name, auth, _, _ = PROVIDER_ROUTES[var]
            found.append({"name": name, "upstream": "https://" + host, "key": var,
                          "auth": auth, "paths": None, "budget": DEFAULT_BUDGET})
    if values.get(TELEGRAM):
        found.append({"name": "telegram", "upstream": "https://api.telegram.org",
                      "key": TELEGRAM, "auth": "telegram-path", "paths": None, "budget": None})
    if ollama:
        found.append({"name": "ollama", "upstream": "http://" + ollama, "key": None,
                      "auth": None, "paths": OLLAMA_PATHS, "budget": None})
    budgets = budgets or {}
    for route in found:
        for which in (None, route["name"]):   # every route's, then its own
            if which in budgets:
                route["budget"] = budgets[which]
    return found


def openclaw_config(values, root, ollama=False):
    """The generated config (CONFIG): openclaw.json ($include) plus each routed provider's
    baseUrl at root ("http://ADDRESS:PORT") with a placeholder key, and Telegram's apiRoot
    with a placeholder token that keeps the bot's public numeric id. The internet stack reads
    it; openclaw.api-only.json includes it under the proxy settings."""
    out = {"$include": "./openclaw.json"}
    providers = {}
    for var, _ in domains.PROVIDERS:
        if values.get(var):
            name, _, pid, path = PROVIDER_ROUTES[var]
            providers[pid] = {"baseUrl": "%s/%s%s" % (root, name, path), "apiKey": PLACEHOLDER}
    if ollama:
        providers["ollama"] = {"baseUrl": root + "/ollama"}
    if providers:
        out["models"] = {"providers": providers}
    token = values.get(TELEGRAM)
    if token:
        bot = token.split(":", 1)[0]
        out["channels"] = {"telegram": {"apiRoot": root + "/telegram", "botToken": "%s:%s" % (
            bot if bot.isdigit() else "0", PLACEHOLDER)}}
    return json.dumps(out, indent=2) + "\n"


def write_store(values, names, directory=STORE):
    """Fill directory (root 0700) with one 0600 file per name; remove the files of key
    names no longer set, so a key taken out of .env leaves the proxy too."""
    if not os.path.isdir(directory):
        os.makedirs(directory, 0o700)
    os.chmod(directory, 0o700)
    from .. import safefile
    for name in NAMES:
        path = os.path.join(directory, name)
        if name in names:
            safefile.write_atomic(path, values[name].encode("utf-8"), 0o600)
        elif os.path.lexists(path):
            os.unlink(path)


def remove_store(directory=STORE):
    """Take the store out (--firewall --remove); True when it was there."""
    if not os.path.isdir(directory):
        return False
    for name in os.listdir(directory):
        os.unlink(os.path.join(directory, name))
    os.rmdir(directory)
    return True


_LINE = re.compile(r"^([ \t]*(?:export[ \t]+)?(%s)[ \t]*[=:]).*$" % "|".join(NAMES + INSIDE),
                   re.M)


def blank(text):
    """.env text with every key's and token's value blanked (backups). ValueError when a value
    survives (a quoted value over several lines, say): never an archive that still holds one."""
    out = _LINE.sub(r"\1", text)
    try:
        values = dotenv.parse(out, environ={})
    except dotenv.DotenvError:
        values = None
    if values is None or any(values.get(n) for n in NAMES + INSIDE):
        raise ValueError("a key in .env spans several lines: cannot blank it")
    return out
