"""End to end on the real Docker engine, and under a real systemd: scheduled backups, their
retention, the restore drill, and an upgrade that uses a drilled backup.

The deployment is test_e2e_backup's (the stand-in image; its `dep` fixture, one per module).
The schedule's test boots systemd in a container (tests/lab/systemd.py) holding the install
directory at the same path, the host's Docker socket and the install's owner (uid 1000, in
the socket's group): `--backup --schedule daily --keep 2` run there as root installs the timer
and service, `systemctl start` of the service runs what the timer runs.

Proves:
  - the drill passes on a good archive (live state, gateway, volumes unchanged, its scratch
    volumes gone) and says what is wrong with a damaged one, and with one whose checksums all
    match but whose OpenClaw archive OpenClaw's `backup verify` refuses;
  - the service runs as the install's owner, from the root-owned program copy: archives owned
    by uid 1000, mode 600, each drilled; --keep 2 leaves exactly 2 of this install's archives
    and never touches a foreign one; the --verify rows read the run, the age, the drill;
    `--schedule off` leaves no unit, no timer, no program copy, no failed-unit record;
  - an upgrade right after a drilled backup of the same image takes no new backup, says so.
"""

import hashlib
import io
import json
import os
import shutil
import stat
import tarfile
import time

import pytest  # noqa: F401  (fixtures)

from conftest import ROOT
from lab.systemd import Booted, require_nspawn
from test_e2e_backup import IMAGE, dep, extra_volumes  # noqa: F401  (dep: the fixture)
from lab.e2e_support import sh

UID = 1000   # the common first account; the installer gives uid 1000 openclaw.json
NAME = "claw-cage-backup"
FOREIGN = "claw-cage-backup-20200101T000000Z.tar.gz"


def _newest(dep):
    return os.path.join(dep.dir, "backups", [a for a in dep.archives() if a != FOREIGN][-1])


def _rewrite(src, dst, member, data):
    """A copy of src whose `member` holds data, its manifest's sha256 updated to match."""
    with tarfile.open(src) as t:
        entries = [(m.name, t.extractfile(m).read()) for m in t.getmembers()]
    entries = [(n, data if n == member else d) for n, d in entries]
    manifest = json.loads(entries[0][1])
    manifest["files"][member] = hashlib.sha256(data).hexdigest()
    entries[0] = ("manifest.json", json.dumps(manifest).encode())
    with tarfile.open(dst, "w:gz") as t:
        for name, body in entries:
            ti = tarfile.TarInfo(name)
            ti.size, ti.mode = len(body), 0o600
            t.addfile(ti, io.BytesIO(body))


def test_drill_passes_on_a_good_archive_and_says_what_is_wrong_otherwise(dep):
    res = dep.program("--backup")
    assert res.returncode == 0, res.stdout + res.stderr
    good = _newest(dep)
    state, vols, cid = dep.state(), extra_volumes(), dep.gateway()
    res = dep.program("--restore", good, "--check")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "openclaw backup verify" in res.stdout
    assert "a restore would put back claw-data: " in res.stdout, res.stdout
    assert (dep.state(), extra_volumes(), dep.gateway()) == (state, vols, cid)

    damaged = os.path.join(dep.home, "damaged.tar.gz")
    data = open(good, "rb").read()
    open(damaged, "wb").write(data[:len(data) // 2] + bytes([data[len(data) // 2] ^ 1]) +
                              data[len(data) // 2 + 1:])
    # every sha256 matches, but OpenClaw's own archive lacks its state: its verify refuses
    hollow = os.path.join(dep.home, "hollow.tar.gz")
    inner = io.BytesIO()
    with tarfile.open(fileobj=inner, mode="w:gz") as t:
        body = b'{"schemaVersion":1,"assets":[{"kind":"state","archivePath":"r/payload/x"}]}'
        ti = tarfile.TarInfo("r/manifest.json")
        ti.size = len(body)
        t.addfile(ti, io.BytesIO(body))
    _rewrite(good, hollow, "state/openclaw-backup.tar.gz", inner.getvalue())
    # read once: a damaged OpenClaw member may reach OpenClaw's verify before its sha256 ends
    for path, why in ((damaged, ("damaged", "does not match its manifest", "drill failed")),
                      (hollow, ("asset r/payload/x missing",))):
        res = dep.program("--restore", path, "--check")
        assert res.returncode == 11, res.stdout + res.stderr
        assert any(w in res.stderr for w in why), res.stderr
        assert len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert (dep.state(), extra_volumes(), dep.gateway()) == (state, vols, cid)


def test_schedule_under_systemd_backs_up_as_the_owner_keeps_n_and_leaves_nothing(dep, pyz,
                                                                                  tmp_path):
    require_nspawn("boots a systemd container with systemd-nspawn")
    program = os.path.join(dep.dir, "claw-cage.pyz")
    shutil.copy(pyz, program)
    backups = os.path.join(dep.dir, "backups")
    os.makedirs(backups, exist_ok=True)
    with open(os.path.join(backups, FOREIGN), "wb") as f:   # claw-cage's name, not ours
        f.write(b"another install's archive")
    # the install becomes the user's; what the installer gave the container's uid 1000
    # (openclaw.json, which the gateway reads) stays
    given = [os.path.join(top, n) for top, dirs, files in os.walk(dep.dir)
             for n in dirs + files] + [dep.dir]
    given = [p for p in given if os.lstat(p).st_uid == 0]
    for path in given:
        os.lchown(path, UID, UID)
    sock_gid = os.stat("/var/run/docker.sock").st_gid
    box = Booted(str(tmp_path), None, [dep.dir, "/var/run/docker.sock:/run/docker.sock",
                                       os.path.join(ROOT, "bootstrap")])
    try:
        box.run(["sh", "-c", "echo 'claw:x:%d:%d::/home/claw:/bin/sh' >> /etc/passwd && "
                 "printf 'claw:x:%d:\\ndocker:x:%d:claw\\n' >> /etc/group && "
                 "install -d -o %d -g %d /home/claw" % (UID, UID, UID, sock_gid, UID, UID)])
        res = box.run(["python3", program, "--backup", "--schedule", "daily", "--keep", "2",
                       "--dir", dep.dir], check=False)
        assert res.returncode == 0, res.stdout + res.stderr
        assert "backups daily as claw" in res.stdout
        assert box.run(["systemctl", "is-enabled", NAME + ".timer"]).stdout.strip() == "enabled"
        assert box.run(["systemctl", "show", "-p", "NextElapseUSecRealtime", "--value",
                        NAME + ".timer"]).stdout.strip()
        unit = box.run(["cat", "/etc/systemd/system/%s.service" % NAME]).stdout
        assert "User=claw" in unit and "/usr/local/lib/claw-cage/claw-cage.pyz" in unit
        assert box.run(["stat", "-c", "%u %a", "/usr/local/lib/claw-cage/claw-cage.pyz"]
                       ).stdout.split() == ["0", "644"]
        for i in range(3):
            if i:
                time.sleep(1.1)   # archive names carry the second
            res = box.run(["systemctl", "start", NAME + ".service"], check=False, timeout=600)
            assert res.returncode == 0, box.run(["journalctl", "-u", NAME, "--no-pager"],
                                                check=False).stdout[-3000:]
        ours = [a for a in dep.archives() if a != FOREIGN]
        assert len(ours) == 2, dep.archives()              # --keep 2: exactly two of ours
        assert FOREIGN in dep.archives()                   # never one it did not write
        for name in ours:
            st = os.lstat(os.path.join(backups, name))
            assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (UID, 0o600), name
        rec = json.load(open(os.path.join(dep.dir, ".claw-cage-last-backup.json")))
        assert rec["drill"]["ok"] is True and rec["drill"]["archive"] == _newest(dep), rec
        rows = box.run(["env", "PYTHONPATH=" + os.path.join(ROOT, "bootstrap"), "python3", "-c",
                        "import json, sys; from claw_cage.verify import backup_age as b; "
                        "print(json.dumps([[r.check, r.status, r.detail] for r in "
                        "b.rows(sys.argv[1])]))", dep.dir]).stdout
        rows = {c: (s, d) for c, s, d in json.loads(rows)}
        assert rows["backup schedule"][0] == "pass" and " ok; next: " in \
            rows["backup schedule"][1], rows
        assert rows["last backup"][0] == "pass" and rows["last drill"][0] == "pass", rows

        res = box.run(["python3", program, "--backup", "--schedule", "off", "--dir", dep.dir],
                      check=False)
        assert res.returncode == 0, res.stdout + res.stderr
        left = box.run(["sh", "-c", "ls -d /etc/systemd/system/claw-cage* "
                        "/etc/systemd/system/*/claw-cage* /usr/local/lib/claw-cage 2>/dev/null; "
                        "systemctl list-units --all --no-legend 'claw-cage*'; "
                        "systemctl list-unit-files --no-legend 'claw-cage*'"], check=False)
        assert left.stdout.strip() == "", left.stdout
    finally:
        box.close()
        for path in given + [os.path.join(backups, a) for a in dep.archives()]:
            if os.path.lexists(path):
                os.lchown(path, 0, 0)


def test_upgrade_after_a_drilled_backup_of_the_same_image_takes_none(dep):
    res = dep.program("--backup", "--check")
    assert res.returncode == 0, res.stdout + res.stderr
    n = len(dep.archives())
    same = IMAGE.replace("2026.7.1", "2026.7.1-e2e-same-build")   # the same image, new name
    sh(["docker", "tag", IMAGE, same])
    try:
        res = dep.install(dep.deploy_copy("source-same", same))
        assert res.returncode == 0, res.stdout + res.stderr
        assert "no backup before the upgrade" in res.stdout + res.stderr
        assert len(dep.archives()) == n
        res = dep.install(dep.source)   # back, with the record's backup: none taken either
        assert res.returncode == 0, res.stdout + res.stderr
    finally:
        dep.compose("up", "-d", "--pull", "never")
        sh(["docker", "rmi", same], check=False)
