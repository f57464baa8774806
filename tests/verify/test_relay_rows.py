"""--verify's "gateway socket" row on real folders: the gateway's socket and its folder can be
replaced by no host account (the relay's uid 65100 owns them, no host account has it, every
folder above is root's). The old layout, a folder of the host's uid 1000, fails."""

import json
import os
import socket
import sys

import pytest

from conftest import ROOT, require_root

sys.path.insert(0, os.path.join(ROOT, "bootstrap"))
from claw_cage import deployment  # noqa: E402
from claw_cage.egress import config  # noqa: E402
from claw_cage.verify import relay_rows  # noqa: E402


@pytest.fixture
def gateway(tmp_path):
    require_root("chown to the relay's uid")
    run = tmp_path / "run"
    folder = run / "gateway"
    folder.mkdir(parents=True)
    for d in (tmp_path, run):
        os.chmod(str(d), 0o755)
    os.chown(str(folder), deployment.RELAY_UID, deployment.RELAY_UID)
    os.chmod(str(folder), 0o755)
    path = str(folder / "gateway.sock")
    s = socket.socket(socket.AF_UNIX)
    s.bind(path)
    os.chown(path, deployment.RELAY_UID, deployment.RELAY_UID)
    yield path
    s.close()


def _row(path):
    return relay_rows.socket_row(config.parse(json.dumps(
        {"forward": [{"listen": "127.0.0.1:18789", "to": "unix:" + path}]})))


def test_the_relays_own_folder_passes(gateway):
    assert relay_rows.socket_problems(gateway) == []
    assert _row(gateway).status == "pass"


@pytest.mark.parametrize("change,words", [
    (lambda p: os.chown(os.path.dirname(p), 1000, 1000), "is uid 1000"),     # the old layout
    (lambda p: os.chmod(os.path.dirname(p), 0o777), "mode 777"),
    (lambda p: os.chown(p, 1000, 1000), "not the relay's socket (uid 1000)"),
    (lambda p: os.chown(os.path.dirname(os.path.dirname(p)), 1000, 1000), "writable by uid 1000"),
], ids=["host-uid-folder", "world-writable", "socket-of-1000", "parent-of-1000"])
def test_a_folder_or_socket_someone_else_can_replace_fails(gateway, change, words):
    change(gateway)
    row = _row(gateway)
    assert row.status == "fail" and words in row.detail, row.detail
    assert "token" in row.detail


def test_a_missing_folder_fails(tmp_path):
    row = _row(str(tmp_path / "nowhere" / "gateway.sock"))
    assert row.status == "fail"
