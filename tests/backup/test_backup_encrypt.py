"""--backup --encrypt and --restore of an encrypted archive, with the real gpg and age (no
Docker): the archive streams through the tool, which asks for the passphrase on a real
terminal (a pty here); no clear copy is left, the passphrase is never printed, a wrong one is
refused in one line. Plus the sweep of what a killed run leaves (.partial, stage folders)."""

import json
import os
import pty
import re
import select
import shutil
import stat
import subprocess
import sys
import time

import pytest

from conftest import ROOT, PYTHON, refuse

sys.path.insert(0, os.path.join(ROOT, "bootstrap"))
from claw_cage.backup import archive, cipher  # noqa: E402
from claw_cage.errors import RefusedError  # noqa: E402

PASS = "correct horse 7 battery"
PROMPT = re.compile(rb"passphrase[^\r\n:]*: ")

# in a child with the pty as its terminal: write (or read) one archive, print the outcome
CHILD = r"""
import json, sys
sys.path.insert(0, %r)
from claw_cage.backup import archive, cipher
from claw_cage.errors import RefusedError
op, how, final, staged = json.loads(sys.argv[1])
try:
    if op == "write":
        enc, check, _ = cipher.encryptor(how)
        archive.write(final, staged, {"install": "id1"}, enc, check)
        print("RESULT written")
    else:
        print("RESULT read", sorted(archive.read(final, decrypt=cipher.decryptor(final))["files"]))
except RefusedError as err:
    print("RESULT refused", err)
""" % os.path.join(ROOT, "bootstrap")


def need(tool):
    if not shutil.which(tool):
        refuse("%s IS NOT INSTALLED, NOT RUN: tests/apt-packages.txt lists it, tests/run "
               "installs it" % tool)


@pytest.fixture
def gnupg(tmp_path, monkeypatch):
    home = tmp_path / "gnupg"
    home.mkdir(mode=0o700)
    monkeypatch.setenv("GNUPGHOME", str(home))
    yield home
    subprocess.run(["gpgconf", "--kill", "gpg-agent"], check=False)   # the agent gpg started


def in_pty(args, answers):
    """Run CHILD in a new session whose terminal is a pty; type one answer per passphrase
    prompt. (exit status, everything the terminal showed)."""
    pid, fd = pty.fork()
    if pid == 0:
        os.execv(PYTHON, [PYTHON, "-c", CHILD, json.dumps(args)])
    shown, answered, end = b"", 0, time.monotonic() + 90
    try:
        while time.monotonic() < end:
            if not select.select([fd], [], [], 0.5)[0]:
                continue
            try:
                data = os.read(fd, 4096)
            except OSError:   # EIO: the child closed the terminal
                break
            if not data:
                break
            shown += data
            if answered < len(answers) and len(PROMPT.findall(shown)) > answered:
                time.sleep(0.3)   # the tool turns echo off after its prompt
                os.write(fd, answers[answered].encode() + b"\n")
                answered += 1
    finally:
        os.close(fd)
        _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), shown.decode("utf-8", "replace")


def _staged(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    out = []
    for name, data in (("state/claw-data.tar.gz", os.urandom(200000)),
                       ("install/.env", b"OPENCLAW_GATEWAY_TOKEN=tok-SECRET-abc\n")):
        (src / name.replace("/", "_")).write_bytes(data)
        out.append((name, str(src / name.replace("/", "_"))))
    return out


def _clear_bytes_absent(path):
    data = open(path, "rb").read()
    assert b"claw-cage-backup-1" not in data and b"manifest.json" not in data
    assert b"tok-SECRET-abc" not in data and b"OPENCLAW_GATEWAY_TOKEN" not in data


@pytest.mark.parametrize("how,answers_write", [("gpg", [PASS, PASS]), ("age", [PASS, PASS])])
def test_encrypted_round_trip_wrong_passphrase_refused(tmp_path, gnupg, how, answers_write):
    need(how)
    dest = tmp_path / "out"
    dest.mkdir(mode=0o700)
    final = str(dest / ("claw-cage-backup-x.tar.gz." + how))
    staged = _staged(tmp_path)
    rc, shown = in_pty(["write", how, final, staged], answers_write)
    assert rc == 0 and "RESULT written" in shown and PASS not in shown, shown
    assert os.listdir(str(dest)) == [os.path.basename(final)]   # no clear copy, no .partial
    assert stat.S_IMODE(os.stat(final).st_mode) == 0o600
    _clear_bytes_absent(final)
    rc, shown = in_pty(["read", how, final, []], [PASS])
    assert "RESULT read ['install/.env', 'state/claw-data.tar.gz']" in shown, shown
    assert PASS not in shown
    before = open(final, "rb").read()
    rc, shown = in_pty(["read", how, final, []], ["not the passphrase"])
    line = [ln for ln in shown.splitlines() if "RESULT" in ln]
    assert len(line) == 1 and "could not be decrypted" in line[0] and "refused" in line[0], shown
    assert "not the passphrase" not in shown and PASS not in shown
    assert open(final, "rb").read() == before and os.listdir(str(dest)) == [os.path.basename(final)]


def test_gpg_passphrase_mistyped_the_second_time_leaves_nothing(tmp_path, gnupg):
    """gpg --pinentry-mode loopback asks once: the read-back asks again, as a confirmation."""
    need("gpg")
    dest = tmp_path / "out"
    dest.mkdir(mode=0o700)
    final = str(dest / "claw-cage-backup-x.tar.gz.gpg")
    rc, shown = in_pty(["write", "gpg", final, _staged(tmp_path)], [PASS, PASS + "x"])
    assert "RESULT refused" in shown and "could not be decrypted" in shown, shown
    assert os.listdir(str(dest)) == []


def test_age_recipients_need_no_secret_to_back_up(tmp_path):
    need("age")
    key = tmp_path / "key.txt"
    subprocess.run(["age-keygen", "-o", str(key)], check=True, stderr=subprocess.DEVNULL)
    rcpt = tmp_path / "recipients.txt"
    rcpt.write_bytes(subprocess.run(["age-keygen", "-y", str(key)], check=True,
                                    stdout=subprocess.PIPE).stdout)
    dest = tmp_path / "out"
    dest.mkdir()
    final = str(dest / "claw-cage-backup-x.tar.gz.age")
    enc, check, suffix = cipher.encryptor(str(rcpt))
    assert suffix == ".age" and check is None
    archive.write(final, _staged(tmp_path), {"install": "id1"}, enc, check)   # no terminal
    assert os.listdir(str(dest)) == [os.path.basename(final)]
    _clear_bytes_absent(final)
    got = archive.read(final, decrypt=cipher.decryptor(final, str(key)))
    assert sorted(got["files"]) == ["install/.env", "state/claw-data.tar.gz"]
    other = tmp_path / "other.txt"
    subprocess.run(["age-keygen", "-o", str(other)], check=True, stderr=subprocess.DEVNULL)
    with pytest.raises(RefusedError, match="could not be decrypted.*refused"):
        archive.read(final, decrypt=cipher.decryptor(final, str(other)))


def test_missing_tool_or_bad_choice_is_refused_before_anything(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))   # neither gpg nor age on it
    for how in ("gpg", "age"):
        with pytest.raises(RefusedError, match="%s is not installed.*nothing changed" % how):
            cipher.encryptor(how)
    with pytest.raises(RefusedError, match="--encrypt: gpg, age or an age recipients file, not"):
        cipher.encryptor(str(tmp_path / "no-such-recipients"))
    with pytest.raises(RefusedError, match="not installed"):
        cipher.decryptor("claw-cage-backup-x.tar.gz.gpg")
    assert os.listdir(str(tmp_path)) == []


HOLD = "import fcntl, os, sys, time; fd = os.open(sys.argv[1], os.O_RDONLY); " \
       "fcntl.flock(fd, fcntl.LOCK_EX); print('held', flush=True); time.sleep(60)"


def test_sweep_removes_a_dead_runs_leftovers_not_a_live_runs(tmp_path):
    d = tmp_path / "backups"
    d.mkdir()
    dead_partial = d / ".claw-cage-backup-20260101T000000Z.tar.gz.partial"
    dead_partial.write_bytes(b"half")
    dead_stage = d / ".claw-cage-backup-abc123"
    dead_stage.mkdir()
    (dead_stage / "claw-data").write_bytes(b"clear state")
    live_partial = d / ".claw-cage-backup-20260101T000001Z.tar.gz.partial"
    live_partial.write_bytes(b"being written")
    live_stage = d / ".claw-cage-backup-def456"
    live_stage.mkdir()
    kept = d / "claw-cage-backup-20251231T000000Z.tar.gz"
    kept.write_bytes(b"a finished backup")
    holders = [subprocess.Popen([PYTHON, "-c", HOLD, str(p)], stdout=subprocess.PIPE)
               for p in (live_partial, live_stage)]
    try:
        for h in holders:
            assert h.stdout.readline() == b"held\n"
        assert sorted(archive.sweep(str(d))) == sorted([dead_stage.name, dead_partial.name])
        assert sorted(os.listdir(str(d))) == sorted([live_partial.name, live_stage.name,
                                                     kept.name])
    finally:
        for h in holders:
            h.kill()
            h.wait()
    assert sorted(archive.sweep(str(d))) == sorted([live_partial.name, live_stage.name])
    assert os.listdir(str(d)) == [kept.name]
