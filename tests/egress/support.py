"""Running the built program's --firewall --profile api-only for real, without touching the host.

Each run gets a private mount namespace whose /etc, /usr/local/lib and /run are overlays (writes land
in a temporary upper directory; the real ones stay untouched), inside the namespace lab's host
namespace (its own, empty firewall). No systemd runs here, so the unit is written, not started.
"""

import hashlib
import os
import pwd
import shutil
import subprocess

from conftest import PYTHON, ROOT

OVERLAID = ("/etc", "/usr/local/lib", "/run")
ENV_TEXT = ("# keys\nANTHROPIC_API_KEY=sk-ant-secret-value-123\nOPENAI_API_KEY=\n"
            "export GROQ_API_KEY='gsk-secret-value-456'\nOPENCLAW_GATEWAY_TOKEN=tok-secret-789\n"
            "CLAW_DNS=1.1.1.1\n")
SECRETS = ("sk-ant-secret-value-123", "gsk-secret-value-456", "tok-secret-789")


def upper(base, path):
    """Where writes to `path` (under an overlaid folder) landed."""
    for top in OVERLAID:
        if path == top or path.startswith(top + "/"):
            return os.path.join(base, top.strip("/").replace("/", "_"), "upper",
                                os.path.relpath(path, top))
    raise ValueError(path)


def run(base, argv, netns=None, env=None, timeout=120, overlaid=OVERLAID):
    """argv in netns, in a private mount namespace with `overlaid` as overlays under base.
    The namespace is entered first: /run/netns seen through an overlay of /run is no longer
    a namespace. A run that itself enters namespaces (--verify's test mode) leaves /run out."""
    mounts = []
    for top in overlaid:
        d = os.path.join(base, top.strip("/").replace("/", "_"))
        for sub in ("upper", "work"):
            os.makedirs(os.path.join(d, sub), exist_ok=True)
        mounts.append("mount -t overlay overlay -o lowerdir=%s,upperdir=%s/upper,workdir=%s/work "
                      "%s" % (top, d, d, top))
    script = "mount --make-rprivate / && %s && exec \"$@\"" % " && ".join(mounts)
    full = dict(os.environ, **(env or {}))
    full.pop("SUDO_UID", None)
    outer = ["ip", "netns", "exec", netns] if netns else []
    return subprocess.run(outer + ["unshare", "-m", "sh", "-c", script, "sh"] + list(argv),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, timeout=timeout, env=full)


def install_dir(tmp, env_text=ENV_TEXT, channels=("telegram",), owner=None):
    """A user's install folder: the repo's deploy files, .env (mode 600, owned by owner)."""
    d = os.path.join(str(tmp), "claw-cage")
    os.makedirs(d)
    # what the installer puts there, the api-only files included (.env may name one of them)
    for name in ("docker-compose.yml", "openclaw.json", "docker-compose.api-only.yml",
                 "openclaw.api-only.json", "netns-relay.js"):
        shutil.copy(os.path.join(ROOT, "deploy", name), d)
    if channels != ("telegram",):   # the deploy file configures telegram
        import json
        with open(os.path.join(d, "openclaw.json")) as f:
            cfg = json.load(f)
        cfg["channels"] = {c: {} for c in channels}
        with open(os.path.join(d, "openclaw.json"), "w") as f:
            json.dump(cfg, f)
    path = os.path.join(d, ".env")
    with open(path, "w") as f:
        f.write(env_text)
    os.chmod(path, 0o600)
    if owner is not None:
        os.chown(path, owner, owner)
        os.chown(d, owner, owner)
    return d


def digest(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def nobody():
    return pwd.getpwnam("nobody").pw_uid
