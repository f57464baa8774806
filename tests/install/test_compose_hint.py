"""Issue 11: the Compose v2 hint is right for the host it runs on (fake os-release files, a
fake dpkg answer), and the real installer prints it when `docker compose` is missing."""

import os
import sys

import pytest

from conftest import ROOT

sys.path.insert(0, os.path.join(ROOT, "bootstrap"))

from claw_cage import runner  # noqa: E402
from claw_cage.install import prereqs  # noqa: E402

RELEASES = {
    "debian12": 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nID=debian\nVERSION_ID="12"\n',
    "debian13": 'PRETTY_NAME="Debian GNU/Linux 13 (trixie)"\nID=debian\nVERSION_ID="13"\n',
    "raspios12": 'PRETTY_NAME="Raspbian GNU/Linux 12 (bookworm)"\nID=raspbian\nID_LIKE=debian\n'
                 'VERSION_ID="12"\n',
    "ubuntu24": 'PRETTY_NAME="Ubuntu 24.04.1 LTS"\nID=ubuntu\nID_LIKE=debian\n'
                'VERSION_ID="24.04"\n',
    "fedora": 'NAME="Fedora Linux"\nID=fedora\nVERSION_ID=40\n',
}


def _release(tmp_path, name):
    path = tmp_path / ("os-release-" + name)
    path.write_text(RELEASES[name])
    return prereqs.os_release([str(tmp_path / "missing"), str(path)])


@pytest.mark.parametrize("name,packages,machine,says,never", [
    ("debian12", {"docker.io"}, "x86_64", "docker-compose-linux-x86_64", "apt-get install"),
    ("raspios12", {"docker.io"}, "aarch64", "docker-compose-linux-aarch64", "apt-get install"),
    ("debian13", {"docker.io"}, "x86_64", "sudo apt-get install docker-compose ", "curl"),
    ("ubuntu24", {"docker.io"}, "x86_64", "sudo apt-get install docker-compose-v2", "curl"),
    ("debian12", {"docker-ce", "docker-ce-cli"}, "x86_64",
     "sudo apt-get install docker-compose-plugin", "curl"),
    ("ubuntu24", {"docker-ce-cli"}, "aarch64", "sudo apt-get install docker-compose-plugin",
     "curl"),
    ("fedora", set(), "x86_64", "docker-compose-linux-x86_64", "apt-get"),
], ids=["debian12-docker.io", "raspios12-arm64", "debian13-docker.io", "ubuntu-docker.io",
        "debian12-docker-ce", "ubuntu-docker-ce", "no-dpkg"])
def test_hint_names_the_exact_command(tmp_path, name, packages, machine, says, never):
    hint = prereqs.compose_hint(_release(tmp_path, name), packages, machine)
    assert says in hint, hint
    assert never not in hint, hint
    assert "\n" not in hint
    if name.endswith("12") and packages == {"docker.io"}:
        assert "12" in hint and "docker-compose-plugin" in hint   # Docker's repo, named


def test_unknown_arch_and_no_os_release(tmp_path):
    assert prereqs.os_release([str(tmp_path / "none")]) == {}
    assert prereqs.compose_hint({}, set(), "weird64") == prereqs.COMPOSE_HINT


def test_docker_packages_from_dpkg_query(monkeypatch):
    """dpkg-query -S output (one path unknown: exit 1, the rest still answered)."""
    def fake(argv, **kw):
        assert argv[:2] == ["dpkg-query", "-S"], argv
        return runner.Result(argv, 1, "docker.io: /usr/sbin/dockerd\n"
                             "docker-ce-cli, docker-buildx: /usr/bin/docker\n",
                             "dpkg-query: no path found matching pattern /usr/local/bin/x\n")
    monkeypatch.setattr(runner, "run", fake)
    monkeypatch.setattr(runner, "which", lambda n: "/usr/bin/" + n)
    assert prereqs.docker_packages(["/usr/sbin/dockerd", "/usr/bin/docker"]) == \
        {"docker.io", "docker-ce-cli", "docker-buildx"}


def test_installer_prints_the_hint_when_compose_v2_is_missing(run_pyz, tmp_path):
    """The built installer with a `docker` whose `compose` subcommand is missing (as Debian
    12's docker.io without a plugin): exit 3, one line, the command for this host."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    docker = bindir / "docker"
    docker.write_text("#!/bin/sh\necho \"docker: 'compose' is not a docker command.\" >&2\n"
                      "exit 1\n")
    docker.chmod(0o755)
    p = run_pyz(["--dir", str(tmp_path / "inst"), "--source", os.path.join(ROOT, "deploy")],
                how="path", env={"PATH": str(bindir) + os.pathsep + os.environ["PATH"]},
                timeout=60)
    err = p.stderr.decode()
    assert p.returncode == 3, err
    assert err.count("\n") == 1
    expected = prereqs.host_compose_hint(str(docker))
    assert expected in err, err
    assert not (tmp_path / "inst").exists()
