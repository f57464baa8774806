"""The backup archive on its own (no Docker): written atomically with mode 600, read back whole,
and refused in one line when truncated, altered, padded with an unexpected entry, or made by
another install. Plus the command line: the backup options belong to their modes."""

import gzip
import hashlib
import io
import json
import os
import stat
import sys
import tarfile

import pytest

import subprocess

from conftest import ROOT, PYTHON

sys.path.insert(0, os.path.join(ROOT, "bootstrap"))
from claw_cage.backup import archive, create  # noqa: E402
from claw_cage.errors import RefusedError, EXIT_REFUSED  # noqa: E402
from claw_cage.verify import backup_age  # noqa: E402
from claw_cage.backup.stack import LAST  # noqa: E402


def _staged(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    files = []
    for name, data in (("state/claw-data.tar.gz", os.urandom(300000)),
                       ("install/.env", b"OPENCLAW_GATEWAY_TOKEN=abc\n"),
                       ("install/openclaw.json", b"{}\n")):
        p = src / name.replace("/", "_")
        p.write_bytes(data)
        files.append((name, str(p)))
    return files


class _Sink:
    """Each member streams into a BytesIO, which close() keeps."""
    members = {}

    def __call__(self, manifest, name, size):
        assert manifest["install"] == "id1" and name in manifest["files"]
        out = self.members[name] = io.BytesIO()
        out.close = lambda: None
        return out


def _write(tmp_path):
    dest = tmp_path / "out"
    dest.mkdir()
    final = str(dest / "claw-cage-backup-x.tar.gz")
    facts = archive.write(final, _staged(tmp_path), {"install": "id1"})
    return final, facts


def test_written_mode_600_no_leftover_and_read_back(tmp_path):
    final, facts = _write(tmp_path)
    assert stat.S_IMODE(os.stat(final).st_mode) == 0o600
    assert os.stat(final).st_uid == os.geteuid()
    assert os.listdir(os.path.dirname(final)) == ["claw-cage-backup-x.tar.gz"]
    got, members = archive.read(final, _Sink()), _Sink.members
    assert got["files"] == facts["files"] and got["install"] == "id1"
    for name, digest in got["files"].items():
        assert hashlib.sha256(members[name].getvalue()).hexdigest() == digest
    with tarfile.open(final) as t:
        assert t.getnames()[0] == "manifest.json"


def test_never_replaces_a_file_of_the_final_name(tmp_path):
    final, _ = _write(tmp_path)
    before = open(final, "rb").read()
    (tmp_path / "again").mkdir()
    with pytest.raises(FileExistsError):
        archive.write(final, _staged(tmp_path / "again"), {})
    assert open(final, "rb").read() == before
    assert os.listdir(os.path.dirname(final)) == ["claw-cage-backup-x.tar.gz"]


@pytest.mark.parametrize("cut", [0.5, 0.9, 0.999])
def test_truncated_is_refused(tmp_path, cut):
    final, _ = _write(tmp_path)
    data = open(final, "rb").read()
    with open(final, "wb") as f:
        f.write(data[:int(len(data) * cut)])
    with pytest.raises(RefusedError) as err:
        archive.read(final)
    assert "refused" in str(err.value) or "not a claw-cage backup" in str(err.value)
    assert "\n" not in str(err.value)


def _rewrite(final, change):
    """Rebuild the archive with change(name, data) -> data (None drops the entry)."""
    with tarfile.open(final) as t:
        entries = [(m.name, t.extractfile(m).read()) for m in t.getmembers()]
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as t:
        for name, data in entries + [("", None)]:
            new = change(name, data)
            if new is None:
                continue
            name, data = new
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            t.addfile(ti, io.BytesIO(data))
    with open(final, "wb") as f:
        f.write(buf.getvalue())


def test_altered_member_is_refused(tmp_path):
    final, _ = _write(tmp_path)
    _rewrite(final, lambda n, d: None if not n else
             (n, b"OPENCLAW_GATEWAY_TOKEN=evil\n" if n == "install/.env" else d))
    with pytest.raises(RefusedError, match="does not match its manifest"):
        archive.read(final)


def test_missing_or_extra_or_traversal_entry_is_refused(tmp_path):
    final, _ = _write(tmp_path)
    _rewrite(final, lambda n, d: None if n in ("", "install/openclaw.json") else (n, d))
    with pytest.raises(RefusedError, match="does not match"):
        archive.read(final)
    (tmp_path / "b").mkdir()
    final, _ = _write(tmp_path / "b")
    _rewrite(final, lambda n, d: ("../evil", b"x") if not n else (n, d))
    with pytest.raises(RefusedError, match="unexpected entry"):
        archive.read(final)


def test_flipped_byte_in_the_compressed_stream_is_refused(tmp_path):
    final, _ = _write(tmp_path)
    data = bytearray(open(final, "rb").read())
    data[len(data) // 2] ^= 0xFF
    with open(final, "wb") as f:
        f.write(bytes(data))
    with pytest.raises(RefusedError):
        archive.read(final)


def test_not_an_archive_is_refused(tmp_path):
    p = tmp_path / "x.tar.gz"
    p.write_bytes(gzip.compress(b"hello"))
    with pytest.raises(RefusedError):
        archive.read(str(p))


def test_install_id_follows_the_token_and_never_holds_it(tmp_path):
    (tmp_path / ".env").write_text("OPENCLAW_GATEWAY_TOKEN=%s\n" % ("a" * 64))
    one = create.install_id(str(tmp_path))
    assert "a" * 8 not in one and len(one) == 32
    (tmp_path / ".env").write_text("OPENCLAW_GATEWAY_TOKEN=%s\n" % ("b" * 64))
    assert create.install_id(str(tmp_path)) != one
    (tmp_path / ".env").write_text("X=1\n")
    with pytest.raises(RefusedError):
        create.install_id(str(tmp_path))


def test_verify_row_age_and_place(tmp_path):
    row = backup_age.row(str(tmp_path))
    assert row.status == "warn" and "--backup" in row.detail
    (tmp_path / "backups").mkdir()
    old = tmp_path / "backups" / "claw-cage-backup-20260101T000000Z.tar.gz"
    old.write_bytes(b"x")
    os.utime(str(old), (1, 1))
    row = backup_age.row(str(tmp_path), now=1 + 10 * 86400)
    assert row.status == "warn" and str(old) in row.detail and "10.0 days" in row.detail
    elsewhere = tmp_path / "elsewhere.tar.gz"
    elsewhere.write_bytes(b"x")
    (tmp_path / LAST).write_text(json.dumps({"path": str(elsewhere)}))
    row = backup_age.row(str(tmp_path))
    assert row.status == "pass" and str(elsewhere) in row.detail


@pytest.mark.parametrize("argv,msg", [
    (["--to", "/tmp/x"], "--to"),
    (["--firewall", "--no-backup"], "--no-backup"),
    (["--backup", "--dry-run"], "--dry-run cannot be used with --backup"),
    (["--restore", "a.tar.gz", "--to", "/x"], "--to cannot be used with --restore"),
    (["--rollback", "--yes"], "--yes cannot be used with --rollback"),
    (["--backup", "--verify"], "not allowed with"),
])
def test_backup_options_belong_to_their_modes(argv, msg):
    r = subprocess.run([PYTHON, "-m", "claw_cage"] + argv, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, universal_newlines=True,
                       env=dict(os.environ, PYTHONPATH=os.path.join(ROOT, "bootstrap")))
    assert r.returncode == 2 and msg in r.stderr and len(r.stderr.splitlines()) == 1


def test_restore_of_a_missing_archive_is_refused_with_exit_11(tmp_path):
    r = subprocess.run([PYTHON, "-m", "claw_cage", "--restore", str(tmp_path / "none.tar.gz"),
                        "--dir", str(tmp_path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       universal_newlines=True,
                       env=dict(os.environ, PYTHONPATH=os.path.join(ROOT, "bootstrap")))
    assert r.returncode == EXIT_REFUSED, r.stderr
    assert len(r.stderr.splitlines()) == 1


@pytest.mark.parametrize("mode", [["--backup"], ["--restore", "a.tar.gz"], ["--rollback"]])
def test_no_install_folder_is_refused_in_one_line_and_nothing_made(tmp_path, mode):
    where = tmp_path / "no-such-install"
    r = subprocess.run([PYTHON, "-m", "claw_cage"] + mode + ["--dir", str(where)],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True,
                       cwd=str(tmp_path),
                       env=dict(os.environ, PYTHONPATH=os.path.join(ROOT, "bootstrap")))
    assert r.returncode == EXIT_REFUSED, r.stderr
    assert r.stderr.splitlines() == ["claw-cage: error: no claw-cage install in %s (give --dir)"
                                     % where]
    assert os.listdir(str(tmp_path)) == []
    assert not where.exists()


def test_the_image_an_upgrade_compares_is_the_one_that_runs():
    from claw_cage.backup import upgrade
    old = b"services:\n  openclaw:\n    image: ${OPENCLAW_IMAGE:-ghcr.io/openclaw/openclaw:2026.7.1@sha256:ab}\n"
    new = old.replace(b"2026.7.1@sha256:ab", b"2026.9.1@sha256:cd")
    assert upgrade.pinned(old, b"") == "ghcr.io/openclaw/openclaw:2026.7.1@sha256:ab"
    assert upgrade.pinned(old, b"") != upgrade.pinned(new, b"")
    # OPENCLAW_IMAGE in .env runs another image whatever the compose file pins: no change
    env = b"OPENCLAW_IMAGE=local/openclaw:mine\n"
    assert upgrade.pinned(old, env) == upgrade.pinned(new, env) == "local/openclaw:mine"


def test_members_larger_than_the_archive_are_refused_before_they_are_read(tmp_path):
    """20 MB of zeros deflate to 20 KB: the member's header alone says it cannot be ours (the
    outer tar.gz is stored, level 0), so nothing of it reaches a sink. Before: read whole."""
    zeros = b"\0" * (20 << 20)
    body = json.dumps({"format": archive.FORMAT, "install": "id1", "files": {
        "state/claw-data.tar.gz": hashlib.sha256(zeros).hexdigest()}}).encode()
    final = str(tmp_path / "claw-cage-backup-x.tar.gz")
    with tarfile.open(final, "w:gz", compresslevel=9) as t:
        for name, data in (("manifest.json", body), ("state/claw-data.tar.gz", zeros)):
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            t.addfile(ti, io.BytesIO(data))
    assert os.path.getsize(final) < 100000
    got = []
    with pytest.raises(RefusedError, match="unpacks to more than its own size.*refused"):
        archive.read(final, lambda m, n, s: got.append(n))
    assert got == []


def _install(tmp_path, project):
    """An install folder of the repo's deploy files, its Compose project named in .env."""
    d = tmp_path / "claw-cage"
    d.mkdir()
    for name in ("docker-compose.yml", "docker-compose.api-only.yml"):
        (d / name).write_bytes(open(os.path.join(ROOT, "deploy", name), "rb").read())
    (d / ".env").write_text("OPENCLAW_GATEWAY_TOKEN=%s\nCOMPOSE_PROJECT_NAME=%s\n"
                            % ("t" * 64, project))
    return d


def _program(*argv, timeout=60):
    return subprocess.run([PYTHON, "-m", "claw_cage"] + list(argv), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True, timeout=timeout,
                          env=dict(os.environ, PYTHONPATH=os.path.join(ROOT, "bootstrap")))


@pytest.fixture
def project_volume():
    """A state volume under a project name of the test's own (COMPOSE_PROJECT_NAME)."""
    from conftest import require_docker
    require_docker("Compose reads the project's volume names; the volume is a real one")
    name = "cc-test-%d" % os.getpid()
    subprocess.run(["docker", "volume", "create", name + "_claw-data"], check=True,
                   stdout=subprocess.DEVNULL)
    yield name
    subprocess.run(["docker", "volume", "rm", name + "_claw-data"], stdout=subprocess.DEVNULL)


def test_backup_to_a_fifo_is_refused_in_one_line(tmp_path, project_volume):
    """Before: makedirs met the FIFO, "internal error: FileExistsError", exit 1."""
    d = _install(tmp_path, project_volume)
    fifo = tmp_path / "fifo"
    os.mkfifo(str(fifo))
    r = _program("--backup", "--dir", str(d), "--to", str(fifo))
    assert r.returncode == EXIT_REFUSED, r.stderr
    assert r.stderr.splitlines() == ["claw-cage: error: --to %s is not a directory: refused, "
                                     "nothing changed" % fifo]
    assert stat.S_ISFIFO(os.lstat(str(fifo)).st_mode)
    assert sorted(os.listdir(str(d))) == [".env", "docker-compose.api-only.yml",
                                          "docker-compose.yml"]


def test_the_upgrade_guard_finds_the_projects_own_volume(tmp_path, project_volume):
    """COMPOSE_PROJECT_NAME in .env: the state volume is <project>_claw-data. Before: the guard
    looked for claw-cage_claw-data, found none and skipped the backup and the record silently."""
    from claw_cage.backup import upgrade
    from claw_cage.ui import UI
    d = _install(tmp_path, project_volume)
    old = (d / "docker-compose.yml").read_bytes()
    new = old.replace(b"${OPENCLAW_IMAGE:-", b"${OPENCLAW_IMAGE:-example.invalid/new-", 1)
    rec = upgrade.before(UI(), str(d), new, no_backup=True)
    assert rec and rec["from"] == upgrade.pinned(old, b"") and rec["backup"] is None
    for name in ("docker-compose.yml", "docker-compose.api-only.yml"):
        assert (d / (name + ".previous")).read_bytes() == (d / name).read_bytes()
    assert (d / upgrade.RECORD).exists()


def _record(d, backup):
    (d / ".claw-cage-upgrade.json").write_text(json.dumps({
        "from": "a", "to": "b", "backup": backup, "running": False}))
    (d / "docker-compose.yml.previous").write_bytes((d / "docker-compose.yml").read_bytes())


@pytest.mark.parametrize("where", ["outside", "symlink", "fifo"])
def test_rollback_opens_only_an_archive_in_the_backups_folder(tmp_path, project_volume, where):
    """--rollback runs as root; the record is in the user's folder. Before: it opened any path
    (a FIFO hung it; a root-only file's first bytes were in the error)."""
    d = _install(tmp_path, project_volume)
    secret = tmp_path / "root-only"
    secret.write_text("ro-secret-content\n")
    os.chmod(str(secret), 0o600)
    (d / "backups").mkdir()
    inside = d / "backups" / "claw-cage-backup-20260101T000000Z.tar.gz"
    if where == "symlink":
        os.symlink(str(secret), str(inside))
    elif where == "fifo":
        os.mkfifo(str(inside))
    _record(d, str(secret) if where == "outside" else str(inside))
    r = _program("--rollback", "--dir", str(d), timeout=30)
    assert r.returncode == EXIT_REFUSED, r.stderr
    assert len(r.stderr.splitlines()) == 1 and "refused" in r.stderr, r.stderr
    assert "ro-secret" not in r.stdout + r.stderr and "b'" not in r.stderr
    assert (d / "docker-compose.yml.previous").exists()   # nothing changed
