"""The hardening guide's Docker daemon settings as data, and the pure merge into daemon.json."""

import difflib
import json

DAEMON_JSON = "/etc/docker/daemon.json"

# key, hardened value, first engine version that knows it; merged in this order
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
NOT_SET = ("userland-proxy: left as it is: false makes dockerd set route_localnet=1 on every "
           "bridge (moby#45629), opening this host's 127.0.0.1 services to containers")
# daemon.json keys whose dockerd flag has another name; keys that have no flag
FLAG_OF = {"log-opts": "log-opt", "default-network-opts": "default-network-opt",
           "hosts": "host", "labels": "label", "runtimes": "add-runtime"}
JSON_ONLY = {"features", "builder", "runtimes", "default-address-pools", "proxies"}


def version_tuple(text):
    """'20.10.24+dfsg1' -> (20, 10); (0, 0) when unreadable."""
    try:
        major, minor = text.split(".")[:2]
        return int(major), int("".join(c for c in minor if c.isdigit()) or 0)
    except ValueError:
        return (0, 0)


def _merge(have, want, path, notes):
    """have kept, want filled in where have has nothing; each difference noted."""
    if isinstance(have, dict) and isinstance(want, dict):
        return dict(have, **{k: _merge(have[k], v, path + "." + k, notes) if k in have else v
                             for k, v in want.items()})
    if have != want:
        notes.append(("conflict", "%s is %s in daemon.json, hardened is %s: kept yours"
                      % (path, json.dumps(have), json.dumps(want))))
    return have


def merge(current, version, flags=(), swarm=False):
    """(merged, notes): current plus every WANTED setting this engine supports, no value of
    the user changed, no key whose flag (`--KEY`) dockerd already runs with (it would refuse
    to start). notes: [(kind, text)], kind "conflict" or "skip"."""
    merged, notes = dict(current), []
    for key, value, since in WANTED:
        flag = FLAG_OF.get(key, key)
        why = ("this engine does not know it (Docker %d.%d+)" % since if version < since else
               "dockerd's command line sets --%s (both ways, dockerd refuses)" % flag
               if "--" + flag in flags else
               "swarm mode refuses it" if key == "live-restore" and swarm else
               "size caps need the json-file or local log driver" if key == "log-opts" and
               merged.get("log-driver", "json-file") not in ("json-file", "local") else None)
        if why:
            notes.append(("skip", "%s: %s" % (key, why)))
        else:
            merged[key] = _merge(merged[key], value, key, notes) if key in merged else value
    notes.append(("skip", NOT_SET))
    return merged, notes


def render(conf):
    return json.dumps(conf, indent=2) + "\n"


def diff(old, new, path=DAEMON_JSON):
    return "".join(difflib.unified_diff(old.splitlines(True), new.splitlines(True),
                                        path, path + " (hardened)"))


def known_keys(help_text):
    """daemon.json keys an engine knows, from `dockerd --help`: each flag, its plural
    (`--label` -> labels, `--insecure-registry` -> insecure-registries), JSON_ONLY."""
    keys = set(JSON_ONLY)
    for word in help_text.split():
        if word.startswith("--"):
            flag = word[2:].split("=")[0].rstrip(",")
            keys.update((flag, flag + "s", flag[:-1] + "ies" if flag.endswith("y") else flag))
    keys.update(key for key, flag in FLAG_OF.items() if flag in keys)
    return keys
