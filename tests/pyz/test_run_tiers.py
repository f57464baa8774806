"""tests/run, the one test command: the default run is the whole suite whatever the shell
holds, --fast is the documented tier without root, apt or Docker, and pytest's exit 5 (no test
collected) fails both. Run on a copy of the script, beside a stand-in for the virtualenv's
python that records how pytest was called and answers with the exit status it is told."""

import os
import shutil
import subprocess

import pytest

from conftest import ROOT, require_root

STANDIN = """#!/bin/sh
if [ "$1" = "-m" ] && [ "$2" = "pytest" ]; then
  shift 2
  echo "tier=${CLAW_CAGE_TEST_TIER:-none} args=$*" >> "$LOG"
  exit "${PYTEST_RC:-0}"
fi
exit 0
"""


def _run(tmp_path, args, rc=0, tier=None):
    tree = tmp_path / "tree"
    for d in ("tests/setup.d", ".venv-test/bin"):
        (tree / d).mkdir(parents=True, exist_ok=True)
    shutil.copy(os.path.join(ROOT, "tests", "run"), str(tree / "tests" / "run"))
    (tree / "tests" / "apt-packages.txt").write_text("# none here\n")
    (tree / "tests" / "requirements.txt").write_text("")
    (tree / "build.py").write_text("")
    python = tree / ".venv-test" / "bin" / "python"
    python.write_text(STANDIN)
    python.chmod(0o755)
    log = tmp_path / "pytest.log"
    env = dict(os.environ, LOG=str(log), PYTEST_RC=str(rc))
    env.pop("CLAW_CAGE_TEST_TIER", None)
    if tier:
        env["CLAW_CAGE_TEST_TIER"] = tier
    p = subprocess.run(["bash", str(tree / "tests" / "run")] + args, env=env, timeout=60,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       universal_newlines=True)
    return p.returncode, p.stdout, log.read_text() if log.exists() else ""


def test_fast_runs_the_fast_tier_without_root(tmp_path):
    rc, out, calls = _run(tmp_path, ["--fast", "-k", "docs"])
    assert rc == 0, out
    assert calls == "tier=fast args=-q -n auto -k docs tests\n"   # every core


def test_the_default_run_is_the_whole_suite_whatever_the_shell_holds(tmp_path):
    require_root("tests/run without --fast refuses to start without root")
    rc, out, calls = _run(tmp_path, ["-x"], tier="fast")
    assert rc == 0, out
    assert calls == "tier=none args=-ra -x tests\n"


@pytest.mark.parametrize("fast", [True, False], ids=["fast", "whole"])
def test_no_test_collected_is_a_failure(tmp_path, fast):
    if not fast:
        require_root("tests/run without --fast refuses to start without root")
    rc, out, _ = _run(tmp_path, ["--fast"] if fast else [], rc=5)
    assert rc == 1 and "collected no tests: failing" in out, out
