"""Which chain the second anchor hangs off: Docker's firewall backend as the running engine
says it (`docker info`, Docker 28.1+), else daemon.json, else Docker's default. A stand-in
`docker` on PATH plays engines this machine does not run; the code under test runs it through
runner.run like the real one. No root needed."""

import os
import sys

import pytest

from conftest import ROOT

sys.path.insert(0, os.path.join(ROOT, "bootstrap"))
from claw_cage.firewall import host  # noqa: E402


def _docker(tmp_path, monkeypatch, script):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    exe = bin_dir / "docker"
    exe.write_text("#!/bin/sh\n" + script)
    exe.chmod(0o755)
    monkeypatch.setenv("PATH", "%s:%s" % (bin_dir, os.environ.get("PATH", "")))
    return bin_dir


def _daemon_json(tmp_path, text):
    path = tmp_path / "daemon.json"
    if text is not None:
        path.write_text(text)
    return str(path)


@pytest.mark.parametrize("answer, daemon_json, expected", [
    ("echo nftables", None, "nftables"),                                   # Docker 29, running
    ("echo iptables", '{"firewall-backend": "nftables"}', "iptables"),     # the engine wins
    # Docker < 28.1: the template field does not exist -> daemon.json decides
    ("echo 'template: :1:2: executing at <.FirewallBackend.Driver>' >&2; exit 1",
     '{"firewall-backend": "nftables"}', "nftables"),
    ("exit 1", '{"log-driver": "json-file"}', "iptables"),
    ("exit 1", None, "iptables"),                                          # Docker's default
    ("exit 1", "not json", "iptables"),                                    # dockerd refuses it too
])
def test_backend_from_docker_info_then_daemon_json(tmp_path, monkeypatch, answer, daemon_json,
                                                   expected):
    _docker(tmp_path, monkeypatch, answer + "\n")
    assert host.docker_firewall_backend(_daemon_json(tmp_path, daemon_json)) == expected


def test_docker_info_is_asked_for_exactly_the_driver(tmp_path, monkeypatch):
    bin_dir = _docker(tmp_path, monkeypatch, 'echo "$@" > "$(dirname "$0")/args"\necho nftables\n')
    assert host.docker_firewall_backend(_daemon_json(tmp_path, None)) == "nftables"
    assert (bin_dir / "args").read_text().strip() == \
        "info --format {{.FirewallBackend.Driver}}"


def test_forward_jumping_to_docker_user_decides_without_asking_docker():
    def never():
        raise AssertionError("docker was asked although FORWARD already jumps to DOCKER-USER")
    assert host.parent_to_use({"FORWARD": ["-j DOCKER-USER"]}, never) == "DOCKER-USER"
    assert host.parent_to_use({"FORWARD": []}, lambda: "nftables") == "FORWARD"
    assert host.parent_to_use({}, lambda: "iptables") == "DOCKER-USER"
