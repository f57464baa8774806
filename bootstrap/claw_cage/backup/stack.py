"""The deployment as backups see it: its compose project, volumes, image and gateway health.

Every helper container runs from the deployment's own image (the only one sure to be here),
with no network, a read-only root and only the capabilities its copy needs.
"""

import glob
import json
import os
import shutil
import tempfile
import time
import urllib.request

from .. import deployment, runner
from ..errors import RefusedError

COMPOSE_FILES = ("docker-compose.yml", "docker-compose.api-only.yml")   # one per profile
STATE, SECRETS = deployment.STATE, deployment.SECRETS
LAST = ".claw-cage-last-backup.json"  # where the last --backup went (read by --verify)
HEALTH_URL = deployment.HEALTH_URL
# root, but only able to read and copy files with their owners and modes
COPY_CAPS = ["--user", "0:0", "--cap-drop", "ALL", "--cap-add", "CHOWN", "--cap-add",
             "DAC_OVERRIDE", "--cap-add", "FOWNER", "--cap-add", "DAC_READ_SEARCH"]


class Stack:
    def __init__(self, directory):
        self.dir = directory
        if not os.path.isfile(os.path.join(directory, "docker-compose.yml")):
            raise RefusedError("%s holds no claw-cage docker-compose.yml" % directory)
        cfg = json.loads(self.compose("config", "--format", "json").stdout)
        self.project = cfg.get("name") or deployment.PROJECT
        self.image = cfg["services"]["openclaw"]["image"]
        vols = cfg.get("volumes") or {}
        self.volumes = {k: (vols.get(k) or {}).get("name") or "%s_%s" % (self.project, k)
                        for k in (STATE, SECRETS)}

    def compose(self, *args, timeout=300, check=True, session=False):
        return runner.run(["docker", "compose"] + list(args), cwd=self.dir, timeout=timeout,
                          check=check, session=session)

    def image_facts(self):
        res = runner.run(["docker", "image", "inspect", "--format",
                          "{{.Id}} {{json .RepoDigests}}", self.image], check=False, timeout=30)
        if not res.ok:
            return {"image": self.image}
        ident, _, digests = res.stdout.strip().partition(" ")
        return {"image": self.image, "image_id": ident, "digests": json.loads(digests or "[]")}

    def gateway_id(self):
        out = runner.run(["docker", "ps", "-q", "--filter",
                          "label=com.docker.compose.project=" + self.project, "--filter",
                          "label=com.docker.compose.service=openclaw"], timeout=30).stdout.split()
        return out[0] if out else None

    def wait_healthy(self, timeout=None):
        """True once the gateway answers /healthz (or Docker calls it healthy); False when it
        exits, Docker calls it unhealthy, or CLAW_CAGE_HEALTH_TIMEOUT (120 s) passes."""
        limit = timeout or float(os.environ.get("CLAW_CAGE_HEALTH_TIMEOUT") or 120)
        end = time.monotonic() + limit
        while time.monotonic() < end:
            cid = self.gateway_id()
            if cid:
                res = runner.run(["docker", "inspect", "--format",
                                  "{{if .State.Health}}{{.State.Health.Status}}{{end}}", cid],
                                 check=False, timeout=30)
                status = res.stdout.strip()
                if status == "healthy":
                    return True
                if status == "unhealthy":
                    return False
                try:
                    with urllib.request.urlopen(HEALTH_URL, timeout=3) as r:  # nosec B310
                        if 200 <= r.status < 300:
                            return True
                except OSError:
                    pass
            time.sleep(2)
        return False

    def volume_exists(self, name):
        return runner.run(["docker", "volume", "inspect", name], check=False, timeout=30).ok

    def new_volume(self, name, role):
        runner.run(["docker", "volume", "create", "--label", "org.claw-cage.backup=" + role,
                    name], timeout=60)

    def remove_volumes(self, names):
        for name in names:
            runner.run(["docker", "volume", "rm", name], check=False, timeout=60)

    def sweep(self, ui, gone=()):
        """Remove what killed runs of this install left, and say so with `gone` (removed
        already): a backup's scratch volume (OpenClaw's unfinished archive), a restore's
        .restored- volumes, and, from releases before, a restore's members in /tmp. Called under the install's lock: no run of ours uses
        them now (Docker refuses to remove a volume in use all the same)."""
        mine = tuple([self.project + "_backup-scratch-"] +
                     [v + ".restored-" for v in self.volumes.values()])
        ls = runner.run(["docker", "volume", "ls", "-q", "--filter", "label=org.claw-cage.backup"],
                        check=False, timeout=30)
        gone = list(gone)
        for v in (v for v in ls.stdout.split() if v.startswith(mine)):
            # a killed run's one-shot may hang on, created but never started, or waiting on
            # its input: only our one-shots mount these volumes
            held = runner.run(["docker", "ps", "-aq", "--filter", "volume=" + v], check=False,
                              timeout=30).stdout.split()
            if held:
                runner.run(["docker", "rm", "-f"] + held, check=False, timeout=60)
            if runner.run(["docker", "volume", "rm", v], check=False, timeout=60).ok:
                gone.append(v)
        for path in glob.glob(os.path.join(tempfile.gettempdir(), "claw-cage-restore-*")):
            if os.lstat(path).st_uid == os.geteuid():
                shutil.rmtree(path, ignore_errors=True)
                gone.append(path)
        if gone:
            ui.info("removed what a cut-off run left: " + ", ".join(gone))
        return gone

    def one_shot(self, mounts, argv, caps=COPY_CAPS, stdout=None, feed=False, entry="sh",
                 session=False):
        """docker run --rm of this image: no network, read-only root, `entry` argv. feed: return
        it started, its input a pipe (runner.finish judges it). session: see runner.run."""
        cmd = ["docker", "run", "--rm", "--network", "none", "--read-only", "--tmpfs",
               "/tmp", "--security-opt", "no-new-privileges"] + caps  # nosec B108: in it
        if feed:
            cmd.append("-i")
        for src, dst in mounts:
            cmd += ["-v", "%s:%s" % (src, dst)]
        cmd += ["--entrypoint", entry, self.image] + argv
        return runner.start(cmd) if feed else runner.stream(cmd, stdout=stdout, session=session)
