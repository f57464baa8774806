"""A Docker command that fails during --backup, --restore, --rollback or an upgrade: exit 14
and one line naming the command and Docker's own error (was exit 1, "internal error").

The built program runs as users run it, with a stand-in `docker` first on PATH: it answers the
installer's version questions, `docker volume inspect` and, for the upgrade,
`docker compose config` (so the upgrade guard sees the project's state to protect), and fails every other command the way docker does when its daemon is down."""

import json
import os
import re

import pytest

from conftest import ROOT, run_file

DOWN = "Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker " \
       "daemon running?"
STAND_IN = """#!/bin/sh
case "$1 $2" in
  "compose version") echo "Docker Compose version v2.29.1"; exit 0;;
  "info "*|"info") echo 27.3.1; exit 0;;
  "volume inspect") echo '[{"Name": "claw-cage_openclaw-state"}]'; exit 0;;
  "compose config") [ -n "$ANSWER_CONFIG" ] &&
    echo '{"name": "claw-cage", "services": {"openclaw": {"image": "x"}}}' && exit 0;;
esac
echo "%s" >&2
exit 1
""" % DOWN


@pytest.fixture
def setup(tmp_path, pyz):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "docker").write_text(STAND_IN)
    (bindir / "docker").chmod(0o755)
    env = {"PATH": "%s:/usr/bin:/bin" % bindir}
    target = tmp_path / "inst"
    r = run_file(pyz, ["--dir", str(target), "--source", os.path.join(ROOT, "deploy")], env=env)
    assert r.returncode == 0, r.stderr
    return pyz, target, env


def _assert_docker_failed(r):
    err = r.stderr.decode()
    assert r.returncode == 14, err
    lines = [l for l in err.splitlines() if l.startswith("claw-cage:")]
    assert len(lines) == 1 and lines[0].startswith("claw-cage: error: docker "), err
    assert lines[0].endswith(DOWN), err


def test_backup(setup):
    pyz, target, env = setup
    _assert_docker_failed(run_file(pyz, ["--backup", "--dir", str(target)], env=env))


def test_restore(setup, tmp_path):
    pyz, target, env = setup
    archive = tmp_path / "claw-cage-backup.tar.gz"
    archive.write_bytes(b"not checked yet: the project is read first")
    _assert_docker_failed(run_file(pyz, ["--restore", str(archive), "--dir", str(target)],
                                   env=env))


def test_rollback(setup):
    pyz, target, env = setup
    (target / "docker-compose.yml.previous").write_bytes((target / "docker-compose.yml")
                                                        .read_bytes())
    (target / ".claw-cage-upgrade.json").write_text(json.dumps(
        {"from": "old", "to": "new", "backup": None, "running": True}))
    _assert_docker_failed(run_file(pyz, ["--rollback", "--dir", str(target)], env=env))


def test_upgrade(setup):
    """The installed compose file pins another image (an older release's): the re-run is an
    upgrade with state, whose guard asks Docker about the project first."""
    pyz, target, env = setup
    compose = target / "docker-compose.yml"
    text, n = re.subn(r"\$\{OPENCLAW_IMAGE:-[^}]+\}", "${OPENCLAW_IMAGE:-old.example/oc:1}",
                      compose.read_text())
    assert n >= 1
    compose.write_text(text)
    r = run_file(pyz, ["--dir", str(target), "--source", os.path.join(ROOT, "deploy")],
                 env=dict(env, ANSWER_CONFIG="1"))
    _assert_docker_failed(r)
    assert "old.example/oc:1" in compose.read_text()  # the guard failed before any file moved
