"""runner.run: the one place that runs commands. A root shell whose PATH lacks the sbin folders
(sudo with a user's PATH, cron) must still reach iptables, which lives there."""

import os
import shutil
import sys

import pytest

from conftest import ROOT

sys.path.insert(0, os.path.join(ROOT, "bootstrap"))

from claw_cage import runner  # noqa: E402


def test_a_program_in_sbin_runs_with_a_path_that_lacks_sbin(monkeypatch):
    found = [p for p in ("/usr/sbin/iptables-save", "/sbin/iptables-save") if os.path.exists(p)]
    if not found:
        pytest.fail("iptables-save is installed by tests/run (tests/apt-packages.txt)")
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    assert shutil.which("iptables-save") is None          # the situation under test
    result = runner.run(["iptables-save", "--version"], check=False)
    assert result.ok and "iptables" in result.stdout.lower() + result.stderr.lower()
    assert result.argv[0] == "iptables-save"              # messages keep the name typed


def test_a_missing_program_is_one_clear_error(monkeypatch):
    with pytest.raises(runner.CommandError) as err:
        runner.run(["claw-cage-no-such-program", "x"])
    assert "command not found" in str(err.value) and "\n" not in str(err.value)
