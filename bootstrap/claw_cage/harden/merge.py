"""The Docker daemon settings of seed 003 step 5 as data, and the pure merge into daemon.json.

Nothing here runs a command or reads the system: harden/__init__.py gathers the facts (engine
version, dockerd's command-line flags, swarm) and writes; this decides what changes.
"""

import difflib
import json

DAEMON_JSON = "/etc/docker/daemon.json"

# key, hardened value, first engine version that knows the key. Merged in this order.
WANTED = (
    ("icc", False, (1, 0)),                  # the default bridge only (README "Layers")
    ("no-new-privileges", True, (1, 13)),
    ("ipv6", False, (1, 0)),
    ("log-driver", "json-file", (1, 0)),
    ("log-opts", {"max-size": "10m", "max-file": "3"}, (1, 0)),
    ("default-network-opts",
     {"bridge": {"com.docker.network.bridge.host_binding_ipv4": "127.0.0.1"}}, (24, 0)),
    ("live-restore", True, (1, 12)),
)
# Decided against, with the reason shown to the user (measured: README "Layers").
NOT_SET = (("userland-proxy", "false makes dockerd set route_localnet=1 on every bridge "
            "(moby#45629): other containers could reach this host's 127.0.0.1 services"),)
LOG_DRIVERS_WITH_SIZE = ("json-file", "local")
# daemon.json keys that are no dockerd flag, or whose flag has another name.
FLAG_OF = {"log-opts": "log-opt", "default-network-opts": "default-network-opt",
           "hosts": "host", "labels": "label", "runtimes": "add-runtime"}
JSON_ONLY = ("features", "builder", "runtimes", "default-address-pools", "proxies")


def version_tuple(text):
    """'20.10.24+dfsg1' -> (20, 10)."""
    try:
        major, minor = text.split(".")[:2]
        return int(major), int("".join(c for c in minor if c.isdigit()) or 0)
    except ValueError:
        return (0, 0)


def flag_of(key):
    return FLAG_OF.get(key, key)


def _merge_value(have, want, path, notes):
    """have's value kept, want's filled in where have has nothing; conflicts noted."""
    if isinstance(have, dict) and isinstance(want, dict):
        out = dict(have)
        for key, value in want.items():
            if key in have:
                out[key] = _merge_value(have[key], value, path + "." + key, notes)
            else:
                out[key] = value
        return out
    if have != want:
        notes.append(("conflict", "%s is %s in daemon.json, hardened is %s: kept yours"
                      % (path, json.dumps(have), json.dumps(want))))
    return have


def merge(current, version, flags=(), swarm=False):
    """(merged dict, notes): current with every WANTED setting this engine supports added.

    Never changes a value the user set (a different value is a "conflict" note), never adds a
    key that a dockerd flag already sets (dockerd would refuse to start), notes every key left
    out and why. notes: [(kind, text)], kind one of conflict, skip."""
    merged, notes = dict(current), []
    for key, value, since in WANTED:
        if version < since:
            notes.append(("skip", "%s: this engine does not know it (Docker %d.%d+)"
                          % ((key,) + since)))
        elif "--" + flag_of(key) in flags:
            notes.append(("skip", "%s: dockerd's command line sets --%s: not repeated in "
                          "daemon.json (dockerd refuses both)" % (key, flag_of(key))))
        elif key == "live-restore" and swarm:
            notes.append(("skip", "live-restore: this engine is in swarm mode, which refuses it"))
        elif key == "log-opts" and merged.get("log-driver", "json-file") \
                not in LOG_DRIVERS_WITH_SIZE:
            notes.append(("skip", "log-opts: size caps need the json-file or local log driver"))
        elif key in merged:
            merged[key] = _merge_value(merged[key], value, key, notes)
        else:
            merged[key] = value
    for key, why in NOT_SET:
        notes.append(("skip", "%s: left as it is: %s" % (key, why)))
    return merged, notes


def render(conf):
    return json.dumps(conf, indent=2) + "\n"


def diff(old_text, new_text, path=DAEMON_JSON):
    return "".join(difflib.unified_diff(old_text.splitlines(True), new_text.splitlines(True),
                                        path, path + " (hardened)"))


def known_keys(help_text):
    """Top-level daemon.json keys an engine knows, from `dockerd --help` (for engines without
    --validate): each flag, its plural, and the keys that have no flag."""
    keys = set(JSON_ONLY)
    for word in help_text.split():
        if word.startswith("--"):
            flag = word[2:].split("=")[0].rstrip(",")
            keys.add(flag)
            keys.add(flag + "s")
            if flag.endswith("y"):
                keys.add(flag[:-1] + "ies")
    keys.update(key for key, flag in FLAG_OF.items() if flag in keys)
    return keys
