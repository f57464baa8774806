"""Root reads the user's files defensively (issue 17): docker-compose.yml and .env in the
install directory are opened without following a symlink, must be regular files, are
size-capped, and an error never shows their content. And the bridge the cage goes on must be a
Linux bridge or not exist yet.

--firewall and --verify run as root from the BUILT program; the firewall runs in a network
namespace of its own (the lab's host, or `unshare -n`), so no real firewall is touched.
"""

import os
import stat
import subprocess
import sys

import pytest

from lab import netlab
from lab.netlab import Lab
from conftest import PYTHON, ROOT, require_root

SECRET = "root-only-s3cr3t-do-not-print"
COMPOSE = os.path.join(ROOT, "deploy", "docker-compose.yml")


@pytest.fixture
def root():
    require_root("reading the user's files as root")


def _run(pyz, mode, directory, timeout=30):
    """The program as root in a fresh network namespace (empty iptables, nothing shared)."""
    argv = ["unshare", "-n", PYTHON, pyz, mode, "--dir", str(directory)]
    if mode == "--firewall":
        argv.append("--no-persist")
    return subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, timeout=timeout)


def _root_only_file(tmp_path):
    path = tmp_path / "root-only"
    path.write_text("services:\n  x:\n    labels:\n      com.docker.network.bridge.name: %s\n"
                    "      subnet: %s\n" % (SECRET, SECRET))
    os.chmod(str(path), 0o600)
    return path


def _one_line(proc, code, *words):
    assert proc.returncode == code, (proc.returncode, proc.stdout, proc.stderr)
    assert proc.stderr.count("\n") == 1, proc.stderr
    for w in words:
        assert w in proc.stderr, proc.stderr
    assert SECRET not in proc.stdout + proc.stderr


@pytest.mark.parametrize("mode", ["--firewall", "--verify"])
def test_symlinked_compose_is_refused_and_its_target_never_printed(pyz, tmp_path, root, mode):
    d = tmp_path / "inst"
    d.mkdir()
    os.symlink(str(_root_only_file(tmp_path)), str(d / "docker-compose.yml"))
    _one_line(_run(pyz, mode, d), 5, "symlink")


@pytest.mark.parametrize("mode", ["--firewall", "--verify"])
def test_fifo_compose_is_refused_without_hanging(pyz, tmp_path, root, mode):
    d = tmp_path / "inst"
    d.mkdir()
    os.mkfifo(str(d / "docker-compose.yml"))
    _one_line(_run(pyz, mode, d, timeout=20), 5, "not a regular file")


@pytest.mark.parametrize("mode", ["--firewall", "--verify"])
def test_oversize_compose_is_refused(pyz, tmp_path, root, mode):
    d = tmp_path / "inst"
    d.mkdir()
    with open(COMPOSE) as f:
        text = f.read()
    (d / "docker-compose.yml").write_text(text + "#" * (2 * 1024 * 1024) + "\n")
    _one_line(_run(pyz, mode, d), 5, "larger than")


def test_compose_error_shows_no_content(pyz, tmp_path, root):
    """A regular compose file with a bad bridge value: the error names the key, not the value."""
    d = tmp_path / "inst"
    d.mkdir()
    with open(COMPOSE) as f:
        text = f.read()
    (d / "docker-compose.yml").write_text(text.replace("claw-cage0", SECRET))
    _one_line(_run(pyz, "--firewall", d), 5, "bridge")


def test_env_fifo_and_symlink_give_a_failing_row_without_hanging(tmp_path, root):
    """--verify's .env row, as root: a FIFO, a device and a symlink to a root-only file each
    fail the row at once and name no content."""
    code = ("import sys; sys.path.insert(0, %r)\n"
            "from claw_cage.verify import exposure\n"
            "r = exposure.check_env(sys.argv[1]); print(r.status, r.detail)\n"
            % os.path.join(ROOT, "bootstrap"))
    for kind in ("fifo", "device", "symlink"):
        d = tmp_path / kind
        d.mkdir()
        env = d / ".env"
        if kind == "fifo":
            os.mkfifo(str(env))
        elif kind == "device":
            os.mknod(str(env), stat.S_IFCHR | 0o600, os.makedev(1, 5))   # like /dev/zero
        else:
            os.symlink(str(_root_only_file(tmp_path)), str(env))
        proc = subprocess.run([PYTHON, "-c", code, str(d)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, universal_newlines=True, timeout=20)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.startswith("fail "), (kind, proc.stdout)
        assert SECRET not in proc.stdout + proc.stderr


# ---- the bridge ----------------------------------------------------------------------------

def _with_bridge(tmp_path, name):
    d = tmp_path / ("inst-" + name)
    d.mkdir()
    with open(COMPOSE) as f:
        (d / "docker-compose.yml").write_text(f.read().replace("claw-cage0", name))
    return str(d)


def test_bridge_must_be_a_linux_bridge_or_absent(pyz, tmp_path, root):
    netlab.require_lab()
    with Lab() as lab:
        # the lab host's uplink: a default route through wan0
        lab.sh(lab.host, "ip route add default via 198.51.100.2")
        before = (lab.save(4), lab.save(6))
        for name, why in (("lo", "loopback"), ("wan0", "default route"),
                          ("lan0", "not a Linux bridge")):
            proc = lab.firewall(pyz, "--no-persist", "--dir", _with_bridge(tmp_path, name))
            assert proc.returncode == 5, (name, proc.stdout, proc.stderr)
            assert proc.stderr.count("\n") == 1 and why in proc.stderr, proc.stderr
            assert (lab.save(4), lab.save(6)) == before, name
        # a bridge that does not exist yet (Docker makes it later), and an existing bridge
        out = lab.firewall(pyz, "--no-persist", "--dir", _with_bridge(tmp_path, "cc-later0"))
        assert out.returncode == 0, out.stderr
        out = lab.firewall(pyz, "--no-persist")
        assert out.returncode == 0, out.stderr


# ---- safefile itself -----------------------------------------------------------------------

def test_safefile_reads_regular_files_only(tmp_path):
    sys.path.insert(0, os.path.join(ROOT, "bootstrap"))
    from claw_cage import safefile
    from claw_cage.errors import TargetError
    ok = tmp_path / "ok"
    ok.write_bytes(b"abc\n")
    assert safefile.read(str(ok)) == b"abc\n"
    assert safefile.read(str(tmp_path / "absent")) is None
    os.symlink(str(ok), str(tmp_path / "link"))
    os.mkfifo(str(tmp_path / "fifo"))
    (tmp_path / "dir").mkdir()
    big = tmp_path / "big"
    big.write_bytes(b"x" * 101)
    for name, limit, words in (("link", 100, "symlink"), ("fifo", 100, "not a regular file"),
                               ("dir", 100, "not a regular file"), ("big", 100, "larger than")):
        with pytest.raises(safefile.UnsafeFile) as err:
            safefile.read(str(tmp_path / name), limit)
        assert words in str(err.value) and err.value.exit_code == 5
    bad = tmp_path / "bad"
    bad.write_bytes(b"bridge: " + SECRET.encode() + b"\xff\n")
    with pytest.raises(TargetError) as err:
        safefile.read_text(str(bad))
    assert SECRET not in str(err.value) and "\\xff" not in str(err.value)
