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
    (tmp_path / backup_age.LAST).write_text(json.dumps({"path": str(elsewhere)}))
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
