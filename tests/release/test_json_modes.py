"""--json for install and --firewall (issue 14): configuration management reads "changed" from
it, so it must be true exactly when the run changed something, and a failure must still be one
JSON object with the exit status. stdout holds that one object; the human lines go to stderr.

Install runs against a stub `docker` (only versions are asked) and a real HTTP server on
127.0.0.1; --firewall runs the built program in the namespace lab (tests/lab/netlab.py), with
/etc an overlay so the boot persistence is real but private."""

import json
import os
import shutil
import tempfile

import pytest

from conftest import ROOT, run_file
from lab import netlab
from lab.artifact_server import ArtifactServer

DEPLOY = os.path.join(ROOT, "deploy")
NAMES = ["docker-compose.yml", ".env.example", "iptables-rules.sh", "claw-cage.pyz", ".env"]


def stub_docker(tmp_path):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    path = bindir / "docker"
    path.write_text('#!/bin/sh\n[ "$1 $2" = "compose version" ] && '
                    '{ echo "Docker Compose version v2.29.1"; exit 0; }\n'
                    '[ "$1" = "info" ] && { echo "27.3.1"; exit 0; }\nexit 1\n')
    path.chmod(0o755)
    return {"PATH": str(bindir)}


def one_json(proc):
    """The single JSON object a --json run prints on stdout (and nothing else there)."""
    out = proc.stdout.decode() if isinstance(proc.stdout, bytes) else proc.stdout
    lines = out.splitlines()
    assert len(lines) == 1, "stdout is not one JSON line: %r" % out
    return json.loads(lines[0])


def statuses(result):
    return {f["name"]: f["status"] for f in result["files"]}


# ---- install ---------------------------------------------------------------------------------

@pytest.fixture
def server():
    with ArtifactServer(DEPLOY) as srv:
        yield srv


def test_install_json_reports_each_file_and_changed_truthfully(tmp_path, pyz, server):
    env = stub_docker(tmp_path)
    target = tmp_path / "claw-cage"

    def install(*extra):
        return run_file(pyz, ["--dir", str(target), "--source", server.url, "--json"]
                        + list(extra), env=env)

    first = install()
    assert first.returncode == 0, first.stderr.decode()
    res = one_json(first)
    assert res["mode"] == "install" and res["ok"] is True and res["exit_code"] == 0
    assert res["changed"] is True and res["dry_run"] is False and res["dir"] == str(target)
    names = set(statuses(res))   # NAMES, and whatever deploy file a later issue adds
    assert set(NAMES) <= names and set(statuses(res).values()) == {"created"}
    assert res["version"].startswith("claw-cage ")
    assert "installer" in first.stderr.decode()          # the human lines, on stderr
    # the second run changes nothing and says so
    res = one_json(install())
    assert res["changed"] is False and statuses(res) == {n: "unchanged" for n in names}
    # a local edit of a managed file is put back ("updated"); .env at 644 is tightened
    with open(target / "docker-compose.yml", "a") as f:
        f.write("# local edit\n")
    os.chmod(str(target / ".env"), 0o644)
    env_before = (target / ".env").read_bytes()
    res = one_json(install())
    assert res["changed"] is True
    assert statuses(res) == dict({n: "unchanged" for n in names},
                                 **{"docker-compose.yml": "updated", ".env": "updated"})
    assert (target / ".env").read_bytes() == env_before   # content never rewritten
    # a dry run says what would change and changes nothing
    with open(target / "iptables-rules.sh", "a") as f:
        f.write("# local edit\n")
    res = one_json(install("--dry-run"))
    assert res["changed"] is False and res["dry_run"] is True
    assert statuses(res)["iptables-rules.sh"] == "updated"
    assert (target / "iptables-rules.sh").read_text().endswith("# local edit\n")


def test_install_json_failure_is_one_object_with_the_exit_status(tmp_path, pyz, server):
    env = stub_docker(tmp_path)
    server.fault("docker-compose.yml", "tamper")
    proc = run_file(pyz, ["--dir", str(tmp_path / "t"), "--source", server.url, "--json"],
                    env=env)
    assert proc.returncode == 4
    res = one_json(proc)
    assert res == dict(res, mode="install", ok=False, exit_code=4)
    assert "sha256" in res["error"] and "claw-cage: error:" in proc.stderr.decode()
    assert not (tmp_path / "t").exists()


def test_a_usage_error_stays_one_line_on_stderr(pyz):
    proc = run_file(pyz, ["--json", "--allow", "host:1"])
    assert proc.returncode == 2 and proc.stdout == b""


# ---- --firewall ------------------------------------------------------------------------------

def test_firewall_json_changed_only_when_rules_or_persistence_change(pyz, tmp_path):
    netlab.require_lab()
    etc = str(tmp_path / "etc")
    with netlab.Lab() as lab:
        def fw(*args):
            proc = lab.firewall(pyz, "--json", *args, etc_overlay=etc)
            res = one_json(proc)
            assert proc.returncode == res["exit_code"] == 0, proc.stderr
            return res

        res = fw()
        assert res["mode"] == "firewall" and res["ok"] is True
        assert (res["changed"], res["rules_changed"], res["persistence_changed"]) == (
            True, True, True)
        assert res["profile"] == "internet" and res["allow"] == [] and res["persisted"]
        assert "firewall applied" in "".join(lab.firewall(pyz, etc_overlay=etc).stdout)
        res = fw()
        assert (res["changed"], res["rules_changed"], res["persistence_changed"]) == (
            False, False, False)
        # another allow-list: new rules and a new boot script
        res = fw("--allow", "192.168.1.1:8081")
        assert (res["changed"], res["rules_changed"], res["persistence_changed"]) == (
            True, True, True)
        assert res["allow"] == ["192.168.1.1:8081"]
        assert fw("--allow", "192.168.1.1:8081")["changed"] is False
        # a rule deleted behind claw-cage's back is put back: rules changed, the file did not
        netlab.ok(lab.exec(lab.host, [lab.backend, "-w", "-D", "CLAW-CAGE-FWD", "-d",
                                      "10.0.0.0/8", "-j", "DROP"]))
        res = fw("--allow", "192.168.1.1:8081")
        assert (res["changed"], res["rules_changed"], res["persistence_changed"]) == (
            True, True, False)
        # --remove, twice
        proc = lab.firewall(pyz, "--remove", "--json", etc_overlay=etc)
        res = one_json(proc)
        assert res["mode"] == "firewall-remove" and res["changed"] is True, proc.stderr
        res = one_json(lab.firewall(pyz, "--remove", "--json", etc_overlay=etc))
        assert res["changed"] is False
        # not root: one JSON object with the exit status, nothing changed
        shared = tempfile.mkdtemp(prefix="claw-cage-nonroot-")   # pytest's tmp is root-only
        try:
            os.chmod(shared, 0o755)
            copy = os.path.join(shared, "claw-cage.pyz")
            shutil.copy(pyz, copy)
            os.chmod(copy, 0o644)
            before = (lab.save(4), lab.save(6))
            proc = lab.firewall(copy, "--json", user=65534)
        finally:
            shutil.rmtree(shared)
        res = one_json(proc)
        assert proc.returncode == res["exit_code"] == 3 and res["ok"] is False
        assert "sudo" in res["error"] and (lab.save(4), lab.save(6)) == before
