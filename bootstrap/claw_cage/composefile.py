"""The claw-cage network (bridge interface name and subnet) the install directory's project
puts its containers on: the one reading --firewall and --verify share (project_network()).

The firewall must match the bridge Docker will really create: a wrong answer here would leave
the cage open, so every doubt is an error. Compose merges more than docker-compose.yml (an
override file beside it, the files COMPOSE_FILE in .env names, compose.yaml first of all), so
Compose itself is asked: `docker compose config` on private copies of exactly those files, each
read with safefile (root may run this in a directory the user controls), as dotenv.compose()
does for .env. Where Compose does not answer, docker-compose.yml is read line by line
(read_network: no YAML parser in the standard library; two scalars of a file we ship) and any
file Compose would merge is refused rather than ignored.
"""

import collections
import hashlib
import ipaddress
import json
import os
import re
import shutil
import stat
import tempfile

from . import buildinfo, dotenv, runner, safefile
from .errors import ClawCageError, TargetError

BRIDGE_KEY = "com.docker.network.bridge.name"
# Linux interface names: at most 15 bytes; we accept the conservative character set.
BRIDGE_RE = re.compile(r"[A-Za-z0-9_.-]{1,15}")


def _values(text, key):
    pattern = re.compile(r"\s*-?\s*[\"']?%s[\"']?\s*[:=]\s*(.*?)\s*" % re.escape(key))
    found = []
    for line in text.splitlines():
        if line.lstrip().startswith("#"):
            continue
        m = pattern.fullmatch(line)
        if m:
            value = m.group(1).split(" #", 1)[0].strip().strip("\"'")
            found.append(value)
    return found


def read_network(text, where="docker-compose.yml"):
    """Return (bridge_name, ipaddress.IPv4Network) declared in the compose text."""
    bridges = set(_values(text, BRIDGE_KEY))
    subnets = set(_values(text, "subnet"))
    if len(bridges) != 1:
        raise ClawCageError("%s: expected exactly one %s, found %d"
                            % (where, BRIDGE_KEY, len(bridges)))
    if len(subnets) != 1:
        raise ClawCageError("%s: expected exactly one IPv4 subnet, found %d"
                            % (where, len(subnets)))
    bridge, subnet = bridges.pop(), subnets.pop()
    if not BRIDGE_RE.fullmatch(bridge):
        # the value itself is never shown: read as root, an error must not leak a secret
        raise ClawCageError("%s: the value of %s is not a valid interface name (1-15 of "
                            "A-Z a-z 0-9 _ . -)" % (where, BRIDGE_KEY))
    try:
        net = ipaddress.IPv4Network(subnet, strict=True)
    except ValueError:
        raise ClawCageError("%s: the value of subnet is not an IPv4 network in CIDR form "
                            "(a.b.c.d/n, host bits zero)" % where)
    return bridge, net


# The gateway's pinned resolvers: `dns:` entries of the form ${CLAW_DNS...:-default}.
_DNS_ENTRY_RE = re.compile(r"\s*-\s*[\"']?\$\{(CLAW_DNS\w*):-([0-9A-Fa-f.:]+)\}[\"']?\s*(?:#.*)?")
_DNS_ASSIGN_RE = re.compile(r"\s*(?:export\s+)?(CLAW_DNS\w*)\s*=\s*(.*?)\s*")


def dns_settings(text):
    """[(variable, default)] of the resolvers docker-compose.yml pins for the gateway, in
    order; [] for a compose file from before the pin."""
    return [m.groups() for m in map(_DNS_ENTRY_RE.fullmatch, text.splitlines()) if m]


def dns_values(env_text):
    """{CLAW_DNS...: value} set in .env text (only those keys; the value's quotes and trailing
    comment removed). Empty values count as unset, as ${VAR:-default} treats them."""
    found = {}
    for line in (env_text or "").splitlines():
        m = _DNS_ASSIGN_RE.fullmatch(line)
        if m:
            value = m.group(2)
            if value[:1] in "'\"" and value[-1:] == value[:1] and len(value) >= 2:
                value = value[1:-1]
            else:
                value = value.split(" #", 1)[0].strip()
            found[m.group(1)] = value
    return dict((k, v) for k, v in found.items() if v)


def pinned_dns(compose_text, env):
    """The resolvers the gateway gets: each pinned entry, .env's value or the default, in
    order, without repeats (Compose drops them). [] when the compose file pins none.
    env: .env text, or {key: value} already read from it."""
    values = dict((k, v) for k, v in env.items() if v) if isinstance(env, dict) \
        else dns_values(env)
    out = []
    for var, default in dns_settings(compose_text):
        server = values.get(var) or default
        if server not in out:
            out.append(server)
    return out


def read_pinned_dns(directory):
    """pinned_dns() of the docker-compose.yml and .env in directory, both read with safefile
    (root may read them in a directory the user controls); [] when either cannot be read
    safely or the compose file pins none."""
    texts = []
    for name in ("docker-compose.yml", ".env"):
        try:
            texts.append(safefile.read_text(os.path.join(directory, name)) or "")
        except ClawCageError:
            texts.append("")
    try:
        env = dotenv.parse(texts[1], environ={})
    except ClawCageError:
        env = texts[1]
    return pinned_dns(texts[0], env)


# ---- the network Compose really creates ----------------------------------------------------

COMPOSE_NAMES = ("compose.yaml", "compose.yml", "docker-compose.yaml", "docker-compose.yml")
OVERRIDE_NAMES = ("compose.override.yaml", "compose.override.yml",
                  "docker-compose.override.yaml", "docker-compose.override.yml")
INSTALLED = "docker-compose.yml"

# bridge, subnet: where the cage goes; name: the Docker network Compose creates
# ("claw-cage_claw-net"), None when Compose was not asked; how: "compose", "file" (read
# without Compose), "built-in" (no compose file), "none" (no service on any network).
Network = collections.namedtuple("Network", "bridge subnet name how")


class Unreadable(TargetError):
    """A file of the project is there but cannot be opened (permissions): not a verdict on it."""


def _read(path):
    """safefile.read(path); Unreadable where it could not be opened or read at all."""
    try:
        return safefile.read(path)
    except safefile.UnsafeFile:
        raise
    except TargetError as err:
        raise Unreadable(str(err))


def _refuse(directory, why):
    return TargetError("%s: %s; nothing was changed" % (directory, why))


def _compose_files(directory, env):
    """[relative path] of the files Compose may read: COMPOSE_FILE's (the environment's, else
    .env's), else every compose and override file present (Compose picks among them)."""
    listed = os.environ.get("COMPOSE_FILE") or env.get("COMPOSE_FILE")
    if listed:
        sep = os.environ.get("COMPOSE_PATH_SEPARATOR") or env.get("COMPOSE_PATH_SEPARATOR") \
            or os.pathsep
        files = [f for f in listed.split(sep) if f]
        for f in files:
            if os.path.isabs(f) or ".." in f.split("/"):
                raise _refuse(directory, "COMPOSE_FILE names a file outside the install "
                                         "directory: claw-cage reads only files inside it")
        return files
    present = [n for n in COMPOSE_NAMES + OVERRIDE_NAMES
               if os.path.lexists(os.path.join(directory, n))]
    return present


# what the docker CLI says when it has no Compose v2 plugin (or no `config --format`)
_NO_COMPOSE = re.compile(r"is not a docker command|unknown (?:flag|command|shorthand flag)")


def _ask_compose(directory, copies, command):
    """The JSON `docker compose config` prints for the project, run on private copies
    ([(relative path, bytes or None when absent)], .env included) in a directory of the same
    name, never on the user's paths; None when there is no Compose v2 to ask (one command: no
    separate `docker compose version`)."""
    tmp = tempfile.mkdtemp(prefix="claw-cage-net-")
    project = os.path.join(tmp, os.path.basename(directory.rstrip("/")) or "claw-cage")
    try:
        os.mkdir(project, 0o700)
        for rel, data in copies:
            if data is None:
                continue   # absent: Compose says so itself
            path = os.path.join(project, rel)
            os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
        # --no-interpolate: no variable needs a value (the token may be unset); a ${...} left
        # in the network's fields then fails the checks below. --profile '*': every service.
        result = runner.run(command + ["--project-directory", project, "--profile", "*",
                                       "config", "--no-interpolate", "--format", "json"],
                            check=False, timeout=60, cwd=project)
    except runner.CommandError as err:   # timed out, or could not start
        if str(err).endswith("command not found"):
            return None
        raise _refuse(directory, "Docker Compose did not read the project (%s)"
                      % str(err).rsplit(": ", 1)[-1])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if not result.ok and _NO_COMPOSE.search(result.stderr):
        return None
    if not result.ok:
        lines = [l for l in result.stderr.strip().splitlines() if l.strip()]
        why = lines[-1].replace(project, directory) if lines else "exit %d" % result.returncode
        if ".env" in why:   # its reader may quote a value: name the file only
            why = "it cannot read .env"
        raise _refuse(directory, "Docker Compose cannot read the project (%s)" % why[:200])
    try:
        config = json.loads(result.stdout)
        if not isinstance(config, dict):
            raise ValueError
        return config
    except ValueError:
        raise _refuse(directory, "`docker compose config` gave no JSON: Compose v2 too old?")


def network_of_config(config, where):
    """Network(...) of `docker compose config --format json` output: the one network every
    service is on (network_mode none and service:NAME share a namespace, never a bridge).
    ClawCageError for anything else: another network, network_mode host/bridge/container."""
    services = config.get("services") or {}
    used = set()
    for name in sorted(services):
        svc = services[name] or {}
        mode = svc.get("network_mode")
        if mode:
            if mode == "none" or (isinstance(mode, str) and mode.startswith("service:")
                                  and mode[len("service:"):] in services):
                continue
            raise ClawCageError("%s: service %s has network_mode %s: its container would not "
                                "be on the caged network" % (where, name, mode))
        used |= set(svc.get("networks") or {"default": None})
    if not used:
        return Network(None, None, None, "none")
    if len(used) > 1:
        raise ClawCageError("%s: the services are on %d networks (%s): the cage holds one"
                            % (where, len(used), ", ".join(sorted(used))))
    key = used.pop()
    net = (config.get("networks") or {}).get(key) or {}
    if net.get("external"):
        raise ClawCageError("%s: network %s is external: Compose does not create it, so its "
                            "bridge is not known here" % (where, key))
    if (net.get("driver") or "bridge") != "bridge":
        raise ClawCageError("%s: network %s does not use the bridge driver" % (where, key))
    bridge = (net.get("driver_opts") or {}).get(BRIDGE_KEY)
    subnets = [c.get("subnet") for c in ((net.get("ipam") or {}).get("config") or [])
               if isinstance(c, dict) and c.get("subnet")]
    if not isinstance(bridge, str) or not BRIDGE_RE.fullmatch(bridge):
        raise ClawCageError("%s: network %s has no %s that is an interface name (1-15 of "
                            "A-Z a-z 0-9 _ . -)" % (where, key, BRIDGE_KEY))
    if len(subnets) != 1:
        raise ClawCageError("%s: network %s: expected exactly one IPv4 subnet, found %d"
                            % (where, key, len(subnets)))
    try:
        subnet = ipaddress.IPv4Network(str(subnets[0]), strict=True)
    except ValueError:
        raise ClawCageError("%s: network %s: the subnet is not an IPv4 network in CIDR form "
                            "(a.b.c.d/n, host bits zero)" % (where, key))
    return Network(bridge, subnet, net.get("name") or key, "compose")


def declared_network(directory):
    """Network(how="file") docker-compose.yml declares, read line by line (read_network), or
    the built-in one (how="built-in") when there is none. TargetError when it is unreadable."""
    installed = os.path.join(directory, INSTALLED)
    text = safefile.read_text(installed)
    if text is None:
        return Network(buildinfo.BRIDGE, ipaddress.IPv4Network(buildinfo.SUBNET), None,
                       "built-in")
    try:
        bridge, subnet = read_network(text, installed)
    except ClawCageError as err:
        raise TargetError(str(err))
    return Network(bridge, subnet, None, "file")


def project_network(directory, command=None):
    """The network the project in directory puts its containers on, as Compose reads it
    (module doc). TargetError (one line, nothing changed) when it cannot be read, when
    Compose's bridge or subnet differs from the one docker-compose.yml declares (an override
    or COMPOSE_FILE moved the network), or, without Compose, when a file Compose would merge is
    there. No compose file at all: the built-in network.
    command: the Compose command (default: docker compose; [] = no Compose)."""
    env_bytes = _read(os.path.join(directory, ".env"))
    try:
        env = dotenv.parse(env_bytes.decode("utf-8"), environ={}) if env_bytes else {}
    except (UnicodeDecodeError, ClawCageError):
        env = None   # Compose judges it below; without Compose it is refused
    files = _compose_files(directory, env or {})
    declared = declared_network(directory)
    if not files:
        return declared
    if command is None:
        command = ["docker", "compose"] if runner.which("docker") else []
    copies = [(f, _read(os.path.join(directory, f))) for f in files] + [(".env", env_bytes)]
    key = _memory_key(directory, copies, command) if command else None
    found = _recall(key)
    if found is NO_COMPOSE:   # this very docker had no Compose: its refusals, without asking
        return _compose_network(directory, copies, [], env, files, declared)
    fresh = found is None
    if fresh:
        found = _compose_network(directory, copies, command, env, files, declared)
        if found is declared:   # no Compose: read line by line, and that passed
            _remember(key, NO_COMPOSE)
            return declared
    if found.how != "none" and (found.bridge, found.subnet) != (declared.bridge,
                                                                declared.subnet):
        raise _refuse(directory, "Docker Compose puts the containers on bridge %s (%s), not on "
                                 "%s (%s) that %s declares: an override file or COMPOSE_FILE "
                                 "in .env moves the network; remove that change"
                      % (found.bridge, found.subnet, declared[0], declared[1],
                         INSTALLED if declared.how == "file" else "claw-cage"))
    if fresh:
        _remember(key, found)   # only an answer that passed
    if found.how == "none":
        return Network(declared[0], declared[1], None, "none")
    return found


def _compose_network(directory, copies, command, env, files, declared):
    """network_of_config() of Compose's reading of the copies; `declared` itself when there
    is no Compose (then docker-compose.yml alone is read, anything else refused)."""
    config = _ask_compose(directory, copies, command) if command else None
    if config is None:   # no Compose: docker-compose.yml alone, read line by line
        merged = [f for f in files if f != INSTALLED]
        if env is None:
            raise _refuse(directory, ".env cannot be read, and there is no Docker Compose "
                                     "here to read it")
        if merged:
            what = ("COMPOSE_FILE (%s)" % ", ".join(files)
                    if os.environ.get("COMPOSE_FILE") or env.get("COMPOSE_FILE")
                    else "%s, which Docker Compose reads" % merged[0])
            raise _refuse(directory, "%s may change what docker-compose.yml declares, and "
                                     "there is no Docker Compose v2 here to read it: install "
                                     "it, or remove that" % what)
        return declared
    try:
        return network_of_config(config, "Docker Compose's reading of %s" % directory)
    except ClawCageError as err:
        raise TargetError("%s; nothing was changed" % err)


# ---- Compose's answer, remembered -------------------------------------------------------------
# `docker compose config` costs about 0.2 s on every --firewall. Its answer depends only on
# what it is given: the bytes of the private copies (the very bytes it read, so a file changed
# meanwhile cannot pass under another's key), the environment it runs in, and the Compose
# program itself. Root keeps the last answer that passed, never a refusal and never Compose's
# output (it may hold .env's values), under a key hashing all of that: a run whose inputs
# differ in anything asks Compose again, so it refuses exactly what a run without the memory
# refuses (tests/firewall/test_compose_network.py). /run: root's, forgotten at boot.
# A docker that answered it has no Compose is remembered too (NO_COMPOSE), under the same key:
# the run then reads docker-compose.yml line by line and refuses every file Compose would
# merge, as a run that asked does; a Compose plugin appearing in any folder the docker CLI
# searches, or a new docker, changes the key and it is asked again.
MEMORY = "/run/claw-cage.compose-network.json"
NO_COMPOSE = Network(None, None, None, "no-compose")
# where the docker CLI finds its Compose plugin (docs.docker.com, "CLI plugins")
PLUGIN_DIRS = ("~/.docker/cli-plugins", "/usr/local/lib/docker/cli-plugins",
               "/usr/local/libexec/docker/cli-plugins", "/usr/lib/docker/cli-plugins",
               "/usr/libexec/docker/cli-plugins")


def _memory_key(directory, copies, command):
    def identity(path):   # a program or its config replaced: another key
        try:
            st = os.stat(os.path.expanduser(path))
            return (path, st.st_ino, st.st_size, st.st_mtime_ns)
        except OSError:
            return (path, None)
    programs = [runner.which(command[0]) or command[0], "~/.docker/config.json"]
    config_dir = os.environ.get("DOCKER_CONFIG")
    if config_dir:
        programs += [os.path.join(config_dir, "config.json"),
                     os.path.join(config_dir, "cli-plugins", "docker-compose")]
    programs += [os.path.join(d, "docker-compose")
                 for d in PLUGIN_DIRS + _extra_plugin_dirs(programs[1:])]
    environment = sorted((k, v) for k, v in os.environ.items()
                         if k.startswith(("COMPOSE_", "DOCKER_")) or k in ("HOME", "PATH"))
    digest = hashlib.sha256(repr((os.path.abspath(directory), command, environment,
                                  [identity(p) for p in programs])).encode())
    for rel, data in copies:
        digest.update(b"%s\0%d\0" % (rel.encode(), -1 if data is None else len(data)))
        digest.update(data or b"")
    return digest.hexdigest()


def _extra_plugin_dirs(configs):
    """The folders a docker CLI config.json adds to the plugin search (cliPluginsExtraDirs)."""
    found = []
    for path in configs:
        if not path.endswith("config.json"):
            continue
        try:   # as the docker CLI reads it (symlinks followed), but never waiting on a FIFO
            fd = os.open(os.path.expanduser(path), os.O_RDONLY | os.O_NONBLOCK)
            with os.fdopen(fd, "rb") as f:
                if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                    continue
                dirs = json.loads(f.read(1 << 20).decode("utf-8")).get(
                    "cliPluginsExtraDirs") or []
        except (OSError, ValueError, AttributeError):
            continue
        found += [d for d in dirs if isinstance(d, str)] if isinstance(dirs, list) else []
    return tuple(found)


def _recall(key):
    """The Network remembered under key, or None: not root, no memory, another key, or a file
    that is not root's alone."""
    if key is None or os.geteuid() != 0:
        return None
    try:
        fd = os.open(MEMORY, os.O_RDONLY | os.O_NOFOLLOW)
        with os.fdopen(fd, "rb") as f:
            st = os.fstat(f.fileno())
            if st.st_uid != 0 or st.st_mode & 0o022 or not stat.S_ISREG(st.st_mode):
                return None
            data = json.loads(f.read(4096).decode("utf-8"))
        if data.get("key") != key:
            return None
        if data.get("how") == NO_COMPOSE.how:
            return NO_COMPOSE
        subnet = ipaddress.IPv4Network(data["subnet"]) if data["subnet"] else None
        return Network(data["bridge"], subnet, data["name"], data["how"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def _remember(key, found):
    if key is None or os.geteuid() != 0:
        return
    record = {"key": key, "bridge": found.bridge, "name": found.name, "how": found.how,
              "subnet": str(found.subnet) if found.subnet else None}
    try:
        safefile.write_atomic(MEMORY, json.dumps(record, sort_keys=True), 0o600)
    except OSError:   # a read-only /run: the next run asks Compose again
        pass
