"""volumes-init makes fresh named volumes writable for uid 1000, on the real Docker engine."""

import os
import shutil
import subprocess
import uuid

import pytest

from conftest import require_docker
from compose_support import INIT, SECRETS_DIR, TOKEN_VAR, VOLUMES, _clean_env, compose_cmd, project


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
