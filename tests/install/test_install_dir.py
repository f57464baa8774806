"""Issue 11: the copy the installer saves runs from its own folder.

`python3 DIR/claw-cage.pyz` (no --dir, no CLAW_CAGE_DIR) works on DIR when DIR holds claw-cage's
docker-compose.yml, in every mode; --dir and CLAW_CAGE_DIR still win; a pipe, or a folder
without claw-cage's compose file, keeps the default ~/claw-cage.
"""

import os
import shutil
import sys

import pytest

from conftest import ROOT

sys.path.insert(0, os.path.join(ROOT, "bootstrap"))

from claw_cage import paths  # noqa: E402

COMPOSE = os.path.join(ROOT, "deploy", "docker-compose.yml")


def _saved_copy(pyz, where, compose_text=None):
    os.makedirs(where, exist_ok=True)
    target = shutil.copy(pyz, os.path.join(where, "claw-cage.pyz"))
    if compose_text is not None:
        with open(os.path.join(where, "docker-compose.yml"), "w") as f:
            f.write(compose_text)
    return target


def _compose(bridge="claw-cage0"):
    with open(COMPOSE) as f:
        return f.read().replace("claw-cage0", bridge)


def test_install_dir_order(tmp_path, monkeypatch):
    here = tmp_path / "inst"
    here.mkdir()
    (here / "docker-compose.yml").write_text(_compose())
    program = str(here / "claw-cage.pyz")
    (here / "claw-cage.pyz").write_text("")
    monkeypatch.delenv("CLAW_CAGE_DIR", raising=False)
    user = paths.User("u", 1000, 1000, str(tmp_path / "home"), False)
    assert paths.install_dir(None, user, program) == str(here)
    assert paths.install_dir(str(tmp_path / "x"), user, program) == str(tmp_path / "x")
    monkeypatch.setenv("CLAW_CAGE_DIR", str(tmp_path / "env"))
    assert paths.install_dir(None, user, program) == str(tmp_path / "env")
    monkeypatch.delenv("CLAW_CAGE_DIR")
    # a compose file that is not claw-cage's, or none: the default
    (here / "docker-compose.yml").write_text("name: other\nservices: {}\n")
    assert paths.install_dir(None, user, program) == str(tmp_path / "home" / "claw-cage")
    os.unlink(str(here / "docker-compose.yml"))
    assert paths.install_dir(None, user, program) == str(tmp_path / "home" / "claw-cage")
    # from source (no launcher) or through a pipe there is no program file
    assert paths.program_file("-") is None and paths.program_file() is None


@pytest.mark.parametrize("mode", ["verify", "firewall"])
def test_saved_copy_works_on_its_own_folder(pyz, tmp_path, mode):
    """The bridge name of the folder's compose file shows which file the run read."""
    folder = str(tmp_path / "somewhere" / "claw-cage")
    copy = _saved_copy(pyz, folder, _compose("cc-own-dir0"))
    from conftest import run_file
    args = ["--verify"] if mode == "verify" else ["--firewall", "--dry-run"]
    env = {"CLAW_CAGE_INTERNET_PROBE": "off", "NO_COLOR": "1"}
    if mode == "firewall" and os.geteuid() != 0:
        pytest.skip("--firewall --dry-run needs root")
    p = run_file(copy, args, how="path", env=env, timeout=120, cwd=str(tmp_path))
    out = p.stdout.decode() + p.stderr.decode()
    assert "cc-own-dir0" in out, out
    assert "no docker-compose.yml" not in out, out
    # the same file through a pipe cannot know its folder: the default directory
    piped = run_file(copy, args, how="pipe", env=env, timeout=120, cwd=str(tmp_path))
    assert "cc-own-dir0" not in piped.stdout.decode() + piped.stderr.decode()


@pytest.mark.parametrize("mode", ["verify", "firewall"])
def test_a_fifo_beside_the_program_is_refused_at_once(pyz, tmp_path, mode):
    """root probes the program's own folder with the defensive reader: a FIFO named
    docker-compose.yml there is refused in one line (exit 5), it never blocks the run.
    Control: a regular claw-cage docker-compose.yml in the same place is read (its bridge)."""
    import subprocess
    import time
    from conftest import run_file
    if mode == "firewall" and os.geteuid() != 0:
        pytest.skip("--firewall --dry-run needs root")
    folder = str(tmp_path / "fifo" / "claw-cage")
    copy = _saved_copy(pyz, folder)
    fifo = os.path.join(folder, "docker-compose.yml")
    os.mkfifo(fifo)
    args = ["--verify"] if mode == "verify" else ["--firewall", "--dry-run"]
    env = {"CLAW_CAGE_INTERNET_PROBE": "off", "NO_COLOR": "1"}
    start = time.monotonic()
    try:
        p = run_file(copy, args, how="path", env=env, timeout=20, cwd=str(tmp_path))
    except subprocess.TimeoutExpired:
        pytest.fail("the run blocked on the FIFO beside the program")
    took = time.monotonic() - start
    err = p.stderr.decode()
    print(p.returncode, err.strip(), "%.1fs" % took)
    assert p.returncode == 5, (p.returncode, err)
    assert fifo in err and "not a regular file" in err and err.count("\n") == 1, err
    os.unlink(fifo)
    with open(fifo, "w") as f:
        f.write(_compose("cc-fifo-ctl0"))
    p = run_file(copy, args, how="path", env=env, timeout=120, cwd=str(tmp_path))
    assert "cc-fifo-ctl0" in p.stdout.decode() + p.stderr.decode()
