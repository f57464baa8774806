"""The schedule's parts that need no Docker and no systemd: --keep's retention over real files,
the refusals of --schedule, the cron line where systemd does not run (this machine's PID 1 is
not systemd), and the --verify rows: the last backup's age against the schedule, the drill.
Under a real systemd and Docker: tests/e2e/test_e2e_backup_schedule.py."""

import json
import os
import subprocess
import sys
import time

import pytest

from conftest import ROOT, PYTHON, run_file

sys.path.insert(0, os.path.join(ROOT, "bootstrap"))
from claw_cage.backup import keep, schedule  # noqa: E402
from claw_cage.errors import EXIT_REFUSED  # noqa: E402
from claw_cage.verify import backup_age  # noqa: E402

TOKEN = "OPENCLAW_GATEWAY_TOKEN=%s\n" % ("t" * 64)


def _archive(dest, stamp, directory=None):
    path = os.path.join(str(dest), "claw-cage-backup-%s.tar.gz" % stamp)
    open(path, "wb").write(b"x")
    if directory:
        keep.wrote(directory, path, {"created": stamp, "image_id": "sha256:1"})
    return path


def test_keep_removes_only_the_oldest_of_its_own_archives(tmp_path):
    d, dest = str(tmp_path), tmp_path / "backups"
    dest.mkdir()
    foreign = _archive(dest, "20200101T000000Z")            # claw-cage's name, not ours
    other = dest / "notes.txt"
    other.write_text("mine")
    ours = [_archive(dest, "2026120%dT000000Z" % i, d) for i in range(1, 6)]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    far = _archive(elsewhere, "20261201T000000Z", d)        # ours, but not in this --to
    gone = keep.prune(d, str(dest), 2)
    assert gone == ours[:3]
    assert sorted(os.listdir(str(dest))) == sorted(
        [os.path.basename(p) for p in [foreign] + ours[3:]] + ["notes.txt"])
    assert os.path.exists(far)
    assert keep.prune(d, str(dest), 1) == [ours[3]]        # the newest always stays
    assert keep.prune(d, str(dest), 1) == []
    assert json.load(open(os.path.join(d, keep.LAST)))["archives"] == [ours[4], far]


def _run(args, tmp_path):
    (tmp_path / ".env").write_text(TOKEN)
    return subprocess.run([PYTHON, "-m", "claw_cage", "--dir", str(tmp_path)] + args,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True,
                          env=dict(os.environ, PYTHONPATH=os.path.join(ROOT, "bootstrap")))


@pytest.mark.parametrize("how", ["gpg", "age"])
def test_a_passphrase_is_refused_for_a_schedule_with_the_reason(tmp_path, how):
    r = _run(["--backup", "--schedule", "daily", "--encrypt", how], tmp_path)
    assert r.returncode == EXIT_REFUSED and len(r.stderr.splitlines()) == 1, r.stderr
    assert "nobody to type it" in r.stderr and "recipients" in r.stderr
    assert sorted(os.listdir(str(tmp_path))) == [".env"]


@pytest.mark.parametrize("args,msg", [
    (["--backup", "--schedule", "off", "--keep", "2"], "--keep cannot be used"),
    (["--restore", "a.tar.gz", "--schedule", "daily"], "--schedule cannot be used"),
    (["--backup", "--keep", "0"], "--keep takes a number"),
    (["--check"], "--check cannot be used without"),
])
def test_schedule_options_belong_to_their_modes(tmp_path, args, msg):
    r = _run(args, tmp_path)
    assert r.returncode == 2 and msg in r.stderr, r.stderr


def test_without_systemd_the_cron_line_and_nothing_written(pyz, tmp_path):
    if os.path.isdir("/run/systemd/system"):
        pytest.skip("systemd runs here: the cron line is for hosts without it")
    d = tmp_path / "claw-cage"
    d.mkdir()
    (d / ".env").write_text(TOKEN)
    rec = tmp_path / "recipients.txt"
    rec.write_text("age1xyz\n")
    r = run_file(pyz, ["--backup", "--schedule", "weekly", "--keep", "3", "--encrypt", str(rec),
                       "--dir", str(d)], how="path")
    out = r.stdout.decode()
    assert r.returncode == 0, r.stderr
    assert "systemd is not running here" in out
    cron = [ln for ln in out.splitlines() if ln.startswith("17 3 * * 0 /usr/bin/python3 ")]
    assert len(cron) == 1 and cron[0].endswith(
        "--backup --check --dir %s --keep 3 --encrypt %s" % (d, rec)), out
    assert sorted(os.listdir(str(d))) == [".env"]


def test_a_path_a_unit_line_cannot_carry_is_refused(tmp_path):
    r = _run(["--backup", "--schedule", "daily", "--to", str(tmp_path / "my backups")], tmp_path)
    assert r.returncode == EXIT_REFUSED and "no spaces" in r.stderr, r.stderr


def test_age_against_the_schedule_and_the_drill_rows(tmp_path):
    d = str(tmp_path)
    (tmp_path / "backups").mkdir()
    path = _archive(tmp_path / "backups", "20261204T000000Z", d)
    os.utime(path, (time.time() - 3 * 86400,) * 2)
    assert backup_age.row(d, when="daily").status == "fail"      # three days, daily: late
    assert backup_age.row(d, when="weekly").status == "pass"
    assert backup_age.row(d).status == "pass"                    # no schedule: advice at 7
    assert backup_age.drill_row(d).status == "warn"              # never drilled
    keep.drilled(d, path, False, "x.tar.gz is damaged or truncated")
    row = backup_age.drill_row(d)
    assert row.status == "fail" and "damaged" in row.detail
    keep.drilled(d, path, True, "a restore would put back claw-data: 3 files")
    assert backup_age.drill_row(d).status == "pass"
    _archive(tmp_path / "backups", "20261205T000000Z", d)        # newer, not drilled
    assert backup_age.drill_row(d).status == "warn"
    assert backup_age.schedule_row(d, None).status == "warn"
    failed = {"ExecMainExitTimestamp": "Mon 2026-12-07 03:17:00 UTC", "Result": "exit-code",
              "ExecMainStatus": "11"}
    row = backup_age.schedule_row(d, "daily", show=lambda unit: failed)
    assert row.status == "fail" and "exit 11" in row.detail and schedule.NAME in row.detail
