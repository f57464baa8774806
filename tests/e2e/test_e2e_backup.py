"""End to end on the real Docker engine: backups, restore and upgrades that go back.

The stand-in image (tests/e2e/) does `openclaw backup create --verify` / `verify` /
`restore --target` as OpenClaw documents them. The deployment is installed from a copy of the
repo's deploy/ whose image pin carries no digest (a local image never has one), run from the
source tree: the built program checks every deploy file against its release sha256, and the
upgrade test needs a compose file that pins another image. --backup / --restore / --rollback
run through the BUILT claw-cage.pyz.

Proves, each file of the volumes compared by type, mode, owner and sha256:
  - write known data, --backup, destroy the volumes, --restore: every file back;
  - refusals (truncated, altered, another install's archive): exit 11, one line, nothing
    changed (volumes, their content, the running gateway);
  - kill -9 mid-backup: no file under a final name, the gateway still running, also on the
    fallback path that stops it (the watchdog starts it again); the next --backup sweeps what
    the killed run left;
  - an encrypted backup (age, to a recipients file) restored with --identity;
  - a restore whose state does not start the gateway: exit 12, the previous state in service;
  - an upgrade to an image that never becomes healthy: exit 12, the previous compose file,
    image and state back;
  - modes and owners of every file claw-cage wrote.
Everything created is removed afterwards, also on failure.
"""

import glob
import hashlib
import io
import json
import os
import re
import shutil
import signal
import stat
import subprocess
import tarfile
import tempfile

import pytest

from conftest import ROOT, PYTHON
from lab import e2e_support as e2e
from lab.e2e_support import sh

IMAGE = "ghcr.io/openclaw/openclaw:2026.7.1"
BROKEN = "ghcr.io/openclaw/openclaw:2026.99.0-e2e-never-healthy"
OLD = "ghcr.io/openclaw/openclaw:2026.1.0-e2e-no-backup-command"
GOOD = "ghcr.io/openclaw/openclaw:2026.8.0-e2e-healthy"
COMPOSE_FILES = ("docker-compose.yml", "docker-compose.api-only.yml")
DATA, SECRETS = "claw-cage_claw-data", "claw-cage_claw-secrets"
LABEL = "label=org.claw-cage.backup"
ENV = {"CLAW_CAGE_HEALTH_TIMEOUT": "25"}

LISTING = r'''cd /v && find . | sort | while IFS= read -r f; do
  if [ -L "$f" ]; then echo "$f L $(stat -c %u:%g "$f") $(readlink "$f")"
  elif [ -f "$f" ]; then echo "$f F $(stat -c %a:%u:%g "$f") $(sha256sum < "$f" | cut -c1-64)"
  else echo "$f D $(stat -c %a:%u:%g "$f")"; fi; done'''


def listing(volume):
    """Every file of a volume: type, mode:uid:gid, sha256 (or link target). openclaw.json and
    openclaw.routes.json are the install dir's files mounted over the state: not the volume's
    to compare."""
    out = sh(["docker", "run", "--rm", "--network", "none", "-v", volume + ":/v:ro", "--user",
              "0", "--entrypoint", "sh", IMAGE, "-c", LISTING], timeout=120).stdout
    return [ln for ln in out.splitlines()
            if not ln.startswith(("./openclaw.json ", "./openclaw.routes.json "))]


def extra_volumes():
    return sorted(sh(["docker", "volume", "ls", "-q", "--filter", LABEL]).stdout.split())


class Deployment:
    def __init__(self, home, pyz):
        self.home, self.pyz = home, pyz
        self.dir = os.path.join(home, "claw-cage")
        self.source = self.deploy_copy("source", IMAGE)

    def deploy_copy(self, name, image):
        path = os.path.join(self.home, name)
        shutil.copytree(os.path.join(ROOT, "deploy"), path)
        for compose in COMPOSE_FILES:   # every profile's file pins the image
            compose = os.path.join(path, compose)
            text = open(compose).read()
            text, n = re.subn(r"\$\{OPENCLAW_IMAGE:-[^}]+\}", "${OPENCLAW_IMAGE:-%s}" % image,
                              text)
            assert n >= 1
            open(compose, "w").write(text)
        return path

    def install(self, source, env=None):
        """The installer from the source tree (no release sha256 to match)."""
        return subprocess.run([PYTHON, "-m", "claw_cage", "--dir", self.dir, "--source", source],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              universal_newlines=True, timeout=600, cwd=self.home,
                              env=dict(os.environ, PYTHONPATH=os.path.join(ROOT, "bootstrap"),
                                       **(env or {})))

    def program(self, *args, timeout=600, **kw):
        return subprocess.run([PYTHON, self.pyz, "--dir", self.dir] + list(args),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              universal_newlines=True, timeout=timeout, cwd=self.home,
                              env=dict(os.environ, **ENV), **kw)

    def compose(self, *args, check=True, timeout=180):
        return sh(["docker", "compose"] + list(args), cwd=self.dir, check=check, timeout=timeout)

    def gateway(self):
        out = sh(["docker", "ps", "-q", "--no-trunc", "--filter",
                  "label=com.docker.compose.project=claw-cage", "--filter",
                  "label=com.docker.compose.service=openclaw"]).stdout.split()
        return out[0] if out else None

    def wait_healthy(self, timeout=120):
        def healthy():
            cid = self.gateway()
            return cid and json.loads(sh(["docker", "inspect", cid]).stdout)[0]["State"].get(
                "Health", {}).get("Status") == "healthy"
        assert e2e.wait_for(healthy, timeout, interval=1), self.compose(
            "logs", "--tail", "20", check=False).stdout

    def exec(self, script):
        return self.compose("exec", "-T", "openclaw", "sh", "-c", script)

    def token(self):
        return re.search(r"^OPENCLAW_GATEWAY_TOKEN=(\S+)", open(os.path.join(self.dir, ".env")
                                                                 ).read(), re.M).group(1)

    def state(self):
        return listing(DATA), listing(SECRETS)

    def archives(self):
        d = os.path.join(self.dir, "backups")
        return sorted(f for f in os.listdir(d) if not f.startswith(".")) \
            if os.path.isdir(d) else []


def _stop_one_shots():
    """claw-cage's helper containers still running (a failed test): they hold volumes."""
    for v in (DATA, SECRETS):
        for cid in sh(["docker", "ps", "-q", "--filter", "volume=" + v]).stdout.split():
            labels = json.loads(sh(["docker", "inspect", cid]).stdout)[0]["Config"]["Labels"]
            if "com.docker.compose.project" not in (labels or {}):
                sh(["docker", "rm", "-f", cid], check=False)


def _untag(name):
    sh(["docker", "rmi", name], check=False)


@pytest.fixture(scope="module")
def dep(pyz, tmp_path_factory):
    with e2e.deployment("the e2e backup test writes into Docker volumes as their owners",
                        "the e2e backup test runs the stack on the real Docker engine",
                        also_left=extra_volumes) as cleanup:
        d = Deployment(str(tmp_path_factory.mktemp("backup-home")), pyz)
        standin = e2e.StandIn(cleanup)
        standin.build()
        standin.tag_as(IMAGE)
        standin.tag_as(GOOD)   # an upgrade that ends healthy
        # the "new image" of the upgrade test: the stand-in whose /healthz is gone
        # and an image from before `openclaw backup` (the fallback copy)
        for tag, body in ((BROKEN, "USER root\nRUN rm /srv/gateway/healthz\nUSER node\n"),
                          (OLD, "ENV CLAW_STANDIN_NO_BACKUP=1\n")):
            ctx = tempfile.mkdtemp()
            with open(os.path.join(ctx, "Dockerfile"), "w") as f:
                f.write("FROM %s\n%s" % (standin.image_id, body))
            sh(["docker", "build", "-q", "-t", tag, ctx], timeout=300,
               env=dict(os.environ, DOCKER_BUILDKIT="0"))
            shutil.rmtree(ctx)
            cleanup.push("untag " + tag, _untag, tag)
        d.standin_id = standin.image_id
        res = d.install(d.source)
        assert res.returncode == 0, res.stdout + res.stderr
        cleanup.push("remove backup volumes", lambda: [sh(["docker", "volume", "rm", v],
                                                          check=False) for v in extra_volumes()])
        cleanup.push("docker compose down -v", d.compose, "down", "-v", "--remove-orphans",
                     "--timeout", "5", check=False)
        cleanup.push("stop helper containers", _stop_one_shots)
        d.compose("up", "-d", "--pull", "never")
        d.wait_healthy()
        yield d


KNOWN = r'''set -e
cd "$HOME/.openclaw" && mkdir -p agents/main/agent sessions workspace/notes
echo '{"profiles":{"a":1}}' > agents/main/agent/auth-profiles.json && chmod 600 agents/main/agent/auth-profiles.json
head -c 3000000 /dev/urandom > state.sqlite
for i in 1 2 3 4 5; do echo "session $i" > "sessions/s$i.jsonl"; done
printf 'memo\n' > "workspace/notes/a file with spaces.md"
ln -sf ../sessions/s1.jsonl workspace/latest
echo key-material > "$HOME/.config/openclaw/auth.key" && chmod 600 "$HOME/.config/openclaw/auth.key"
'''


PLANTED_KEY = "sk-ant-planted-in-env-0042"


def test_backup_destroy_restore_every_file_back(dep):
    dep.exec(KNOWN)
    before = dep.state()
    assert any("auth-profiles.json F 600:1000:1000" in ln for ln in before[0])
    env_path = os.path.join(dep.dir, ".env")
    env_text = open(env_path).read()
    with open(env_path, "a") as f:   # issue 29: a provider key the backup leaves out
        f.write("ANTHROPIC_API_KEY=%s\n" % PLANTED_KEY)
    res = dep.program("--backup")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "openclaw backup create --verify" in res.stdout and "left out" in res.stdout
    assert "left out: ANTHROPIC_API_KEY" in res.stdout
    assert dep.token() not in res.stdout + res.stderr
    assert PLANTED_KEY not in res.stdout + res.stderr
    [name] = dep.archives()
    path = os.path.join(dep.dir, "backups", name)
    with tarfile.open(path) as t:   # no member holds the key; .env keeps its line, blank
        members = {m.name: t.extractfile(m).read() for m in t.getmembers() if m.isfile()}
    assert not any(PLANTED_KEY.encode() in data for data in members.values())
    assert b"\nANTHROPIC_API_KEY=\n" in members["install/.env"]
    assert dep.token().encode() in members["install/.env"]
    with open(env_path, "w") as f:   # the host that restores lacks the key: named
        f.write(env_text)
    for p, mode in ((path, 0o600), (os.path.join(dep.dir, "backups"), 0o700),
                    (os.path.join(dep.dir, ".claw-cage-last-backup.json"), 0o600)):
        st = os.lstat(p)
        assert (stat.S_IMODE(st.st_mode), st.st_uid) == (mode, os.geteuid()), p
    with tarfile.open(path) as t:
        names = t.getnames()
    assert names[0] == "manifest.json" and "state/openclaw-backup.tar.gz" in names
    assert "install/.env" in names and not any("npm" in n or "local" in n for n in names)
    # destroy the volumes
    dep.compose("down", "--timeout", "5")
    sh(["docker", "volume", "rm", DATA, SECRETS])
    checked = set(glob.glob(os.path.join(tempfile.gettempdir(), "claw-cage-restore-*")))
    res = dep.program("--restore", path)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "lacks ANTHROPIC_API_KEY" in res.stdout + res.stderr
    assert set(glob.glob(os.path.join(tempfile.gettempdir(), "claw-cage-restore-*"))) == checked
    dep.wait_healthy()
    assert dep.state() == before
    assert any(v.startswith(DATA + ".before-") for v in extra_volumes())
    assert not any(".restored-" in v or "scratch" in v for v in extra_volumes())
    dep.archive = path


def _rewrite(src, dst, change):
    with tarfile.open(src) as t:
        entries = [(m.name, t.extractfile(m).read()) for m in t.getmembers()]
    with tarfile.open(dst, "w:gz") as t:
        for name, data in entries:
            data = change(name, data)
            ti = tarfile.TarInfo(name)
            ti.size, ti.mode = len(data), 0o600
            t.addfile(ti, io.BytesIO(data))


def test_refusals_change_nothing(dep):
    src = dep.archive
    bad = {}
    data = open(src, "rb").read()
    bad["truncated"] = os.path.join(dep.home, "truncated.tar.gz")
    open(bad["truncated"], "wb").write(data[:len(data) * 2 // 3])
    bad["altered"] = os.path.join(dep.home, "altered.tar.gz")
    _rewrite(src, bad["altered"], lambda n, d: d + b"# x\n" if n == "install/openclaw.json" else d)
    bad["other install"] = os.path.join(dep.home, "other.tar.gz")

    def other(name, d):
        if name != "manifest.json":
            return d
        m = json.loads(d)
        m["install"] = "0" * 32
        return json.dumps(m).encode()
    _rewrite(src, bad["other install"], other)
    state, vols, cid = dep.state(), extra_volumes(), dep.gateway()
    for why, path in bad.items():
        res = dep.program("--restore", path)
        assert res.returncode == 11, (why, res.stdout, res.stderr)
        assert len(res.stderr.strip().splitlines()) == 1, (why, res.stderr)
        assert "refused" in res.stderr, (why, res.stderr)
    assert "another claw-cage install" in res.stderr
    assert (dep.state(), extra_volumes(), dep.gateway()) == (state, vols, cid)


def _signal_when(dep, ready, timeout, *args, sig=signal.SIGKILL):
    """The built program (--backup unless args) in its own process group, sent sig (the whole
    group, as a terminal's Ctrl-C does) as soon as ready() holds; its (exit status, stderr)."""
    proc = subprocess.Popen([PYTHON, dep.pyz, "--dir", dep.dir] + list(args or ["--backup"]),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            universal_newlines=True, start_new_session=True,
                            env=dict(os.environ, **ENV))
    try:
        assert e2e.wait_for(ready, timeout, interval=0.05), "the run never got there"
        os.killpg(proc.pid, sig)
        err = proc.communicate(timeout=300)[1]
        return proc.returncode, err
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)


def _kill_9_backup_when(dep, ready, timeout):
    _signal_when(dep, ready, timeout)


def test_kill_9_mid_backup_leaves_no_archive_and_the_gateway_running(dep):
    dep.exec('head -c 60000000 /dev/urandom > "$HOME/.openclaw/big.bin"')
    bdir = os.path.join(dep.dir, "backups")
    cid, before, entries = dep.gateway(), dep.archives(), set(os.listdir(bdir))

    def others():   # containers on the state volume besides the gateway: the one-shot
        return sh(["docker", "ps", "-q", "--filter", "volume=" + DATA]).stdout.split()[1:]

    def streaming():   # OpenClaw's archive is being made in its one-shot container
        staged = [f for d in os.listdir(bdir) if d.startswith(".claw-cage-backup-")
                  for f in os.listdir(os.path.join(bdir, d)) if f == "openclaw"]
        return staged and others()
    _kill_9_backup_when(dep, streaming, 60)
    assert dep.archives() == before
    assert dep.gateway() == cid
    dep.wait_healthy(30)
    # the orphaned one-shot container ends on its own; still no archive under a final name
    assert e2e.wait_for(lambda: not others(), 180, interval=1)
    assert dep.archives() == before
    dep.exec('rm -f "$HOME/.openclaw/big.bin"')
    left = set(os.listdir(bdir)) - entries   # the killed run's hidden staging folder
    assert left and all(d.startswith(".claw-cage-backup-") for d in left), left
    scratch = [v for v in extra_volumes() if "scratch" in v]   # OpenClaw's unfinished archive
    assert scratch, extra_volumes()
    # the next --backup removes what the dead run left, and only that
    res = dep.program("--backup")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "removed what a cut-off run left" in res.stdout
    assert all(d in res.stdout for d in list(left) + scratch)
    assert not [v for v in extra_volumes() if "scratch" in v], extra_volumes()
    assert set(os.listdir(bdir)) - entries == {dep.archives()[-1]}


def test_encrypted_backup_to_age_recipients_restores_with_the_key(dep):
    """--encrypt RECIPIENTS (age -R: no secret at backup time, as cron needs) and --restore
    --identity KEY, through the built program; the archive holds no clear byte of it."""
    if not shutil.which("age"):
        pytest.fail("age IS NOT INSTALLED: tests/apt-packages.txt lists it, tests/run installs it")
    key, rcpt = os.path.join(dep.home, "age-key.txt"), os.path.join(dep.home, "recipients.txt")
    sh(["age-keygen", "-o", key])
    with open(rcpt, "w") as f:
        f.write(sh(["age-keygen", "-y", key]).stdout)
    before, n = dep.state(), len(dep.archives())
    res = dep.program("--backup", "--encrypt", rcpt)
    assert res.returncode == 0, res.stdout + res.stderr
    assert ".tar.gz.age" in res.stdout and "in clear" not in res.stdout + res.stderr
    [path] = [os.path.join(dep.dir, "backups", a) for a in dep.archives()[n:]]
    assert path.endswith(".tar.gz.age") and stat.S_IMODE(os.stat(path).st_mode) == 0o600
    data = open(path, "rb").read()
    assert b"manifest.json" not in data and dep.token().encode() not in data
    assert not [d for d in os.listdir(os.path.dirname(path)) if d.startswith(".")]
    res = dep.program("--restore", path)   # no key: refused, nothing changed
    assert res.returncode == 11 and "could not be decrypted" in res.stderr, res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    dep.exec('echo changed > "$HOME/.openclaw/sessions/s2.jsonl"')
    res = dep.program("--restore", path, "--identity", key)
    assert res.returncode == 0, res.stdout + res.stderr
    dep.wait_healthy()
    assert dep.state() == before


def _restoring(dep):   # a one-shot container unpacks into a .restored- volume
    return [v for v in extra_volumes() if ".restored-" in v and
            sh(["docker", "ps", "-q", "--filter", "volume=" + v]).stdout.split()]


def _restore_clear_files():
    return set(glob.glob(os.path.join(tempfile.gettempdir(), "claw-cage-restore-*")))


def test_kill_9_mid_restore_of_an_encrypted_archive_leaves_no_clear_member(dep):
    """kill -9 of --restore of an age archive while it unpacks: no member in clear anywhere
    but the restore's own volumes (labelled), which the next run names and removes. Before:
    /tmp/claw-cage-restore-* kept the decrypted .env, auth key and OpenClaw's archive."""
    key, rcpt = os.path.join(dep.home, "kill-key.txt"), os.path.join(dep.home, "kill.pub")
    sh(["age-keygen", "-o", key])
    with open(rcpt, "w") as f:
        f.write(sh(["age-keygen", "-y", key]).stdout)
    dep.exec('head -c 60000000 /dev/urandom > "$HOME/.openclaw/big.bin"')
    res = dep.program("--backup", "--encrypt", rcpt)
    assert res.returncode == 0, res.stdout + res.stderr
    path = os.path.join(dep.dir, "backups", dep.archives()[-1])
    dep.exec('rm -f "$HOME/.openclaw/big.bin"')
    before, cid, clear = dep.state(), dep.gateway(), _restore_clear_files()
    files = sorted(os.listdir(dep.dir)) + sorted(os.listdir(os.path.join(dep.dir, "backups")))
    _signal_when(dep, lambda: _restoring(dep), 120, "--restore", path, "--identity", key)
    assert _restore_clear_files() == clear
    assert sorted(os.listdir(dep.dir)) + sorted(os.listdir(os.path.join(dep.dir, "backups"))
                                                ) == files
    left = [v for v in extra_volumes() if ".restored-" in v]
    assert left and dep.gateway() == cid and dep.state() == before
    # the orphaned one-shot may still run, or wait on its input forever: the next run ends it
    res = dep.program("--restore", os.path.join(dep.home, "none.tar.gz"))
    assert res.returncode == 11   # refused, but the leftovers are named and removed first
    assert "removed what a cut-off run left" in res.stdout and all(v in res.stdout for v in left)
    assert not [v for v in extra_volumes() if ".restored-" in v]


def _crafted(dep, name, state):
    """An archive of the fallback kind (the install id in it is the one every plain manifest
    shows) whose state volume is the tar.gz `state`."""
    token = dep.token().encode()
    files = {"state/claw-data.tar.gz": state}
    manifest = json.dumps({
        "format": "claw-cage-backup-1", "state": "copy", "created": "20260101T000000Z",
        "image": IMAGE, "install": hashlib.sha256(b"claw-cage install\0" + token).hexdigest()[
            :32], "files": {n: hashlib.sha256(d).hexdigest() for n, d in files.items()}}).encode()
    path = os.path.join(dep.home, name)
    with tarfile.open(path, "w:gz", compresslevel=0) as t:
        for n, d in [("manifest.json", manifest)] + list(files.items()):
            ti = tarfile.TarInfo(n)
            ti.size, ti.mode = len(d), 0o600
            t.addfile(ti, io.BytesIO(d))
    return path


def _tgz(entries):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as t:
        for ti, data in entries:
            t.addfile(ti, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def _ti(name, mode, uid, kind=tarfile.REGTYPE, size=0):
    ti = tarfile.TarInfo(name)
    ti.mode, ti.uid, ti.gid, ti.type, ti.size = mode, uid, uid, kind, size
    return ti


def test_restored_files_belong_to_uid_1000_without_setuid_bits(dep):
    """A crafted archive plants a setuid-root file and a setgid folder. Before: restored as
    root:root 4755 into the live state."""
    tool = b"#!/bin/sh\nid\n"
    path = _crafted(dep, "setuid.tar.gz", _tgz([
        (_ti(".", 0o755, 1000, tarfile.DIRTYPE), None),
        (_ti("./sessions", 0o2775, 0, tarfile.DIRTYPE), None),
        (_ti("./sessions/s1.jsonl", 0o644, 1000, size=4), b"one\n"),
        (_ti("./tool", 0o4755, 0, size=len(tool)), tool),
        (_ti("./keep", 0o6750, 1234, size=4), b"keep")]))
    res = dep.program("--restore", path)
    assert res.returncode == 0, res.stdout + res.stderr
    dep.wait_healthy()
    lines = listing(DATA)
    assert any(ln.startswith("./tool F 755:1000:1000 ") for ln in lines), lines
    for ln in lines:
        mode, owner = ln.split()[2].split(":", 1)[0], ln.split()[2].split(":", 1)[-1]
        assert owner.endswith("1000:1000") and not (len(mode) == 4 and mode[0] != "0"), ln
    # the crafted archive holds no auth-profile key: its volume came back empty; the tests
    # after this one start from the full state again
    res = dep.program("--restore", dep.archive)
    assert res.returncode == 0, res.stdout + res.stderr
    dep.wait_healthy()


def test_an_archive_that_unpacks_beyond_the_cap_is_refused(dep):
    """300 MiB of zeros in a few hundred KB: refused once 256 MiB are unpacked (the cap: the
    larger of 256 MiB and 64 times the archive), nothing changed. Before: no cap at all."""
    work = tempfile.mkdtemp(dir=dep.home)
    with open(os.path.join(work, "zeros"), "wb") as f:
        f.truncate(300 << 20)
    sh(["sh", "-c", "tar -C %s -cf - zeros | gzip -1 > %s/bomb.gz" % (work, work)])
    with open(os.path.join(work, "bomb.gz"), "rb") as f:
        path = _crafted(dep, "bomb.tar.gz", f.read())
    shutil.rmtree(work)
    assert os.path.getsize(path) < 2 << 20
    state, vols, cid = dep.state(), extra_volumes(), dep.gateway()
    res = dep.program("--restore", path)
    assert res.returncode == 11, res.stdout + res.stderr
    assert "unpacks to more than 256 MiB: refused, nothing changed" in res.stderr
    assert (dep.state(), extra_volumes(), dep.gateway()) == (state, vols, cid)


def test_ctrl_c_during_the_swap_is_held_and_the_message_is_true(dep):
    """Ctrl-C (SIGINT to the whole process group) while the volumes are swapped: the swap
    ends, the gateway starts, and the last line says the restored state is in service. Before:
    "interrupted; nothing was left half-done" with the gateway stopped mid-swap."""
    dep.exec('head -c 80000000 /dev/urandom > "$HOME/.openclaw/big.bin"')
    res = dep.program("--backup")
    assert res.returncode == 0, res.stdout + res.stderr
    path = os.path.join(dep.dir, "backups", dep.archives()[-1])
    archived = dep.state()
    dep.exec('rm -f "$HOME/.openclaw/big.bin"; echo changed > "$HOME/.openclaw/sessions/s3.jsonl"')

    def swapping():   # the gateway stopped after the .before- volumes were made: the held part
        # (stop, copy, start) has begun; two Docker calls a look, so a loaded machine still
        # sees the copy's window
        return dep.gateway() is None and any(".before-" in v for v in extra_volumes())
    rc, err = _signal_when(dep, swapping, 180, "--restore", path, sig=signal.SIGINT)
    assert rc == 130, err
    assert "interrupted: the restored state is in service, the gateway started on it" in err
    assert "half-done" not in err
    dep.wait_healthy(60)
    assert dep.state() == archived
    dep.exec('rm -f "$HOME/.openclaw/big.bin"')


def test_failed_restore_puts_the_previous_state_back(dep):
    dep.exec('touch "$HOME/.openclaw/.standin-corrupt-state"')
    res = dep.program("--backup")
    assert res.returncode == 0, res.stdout + res.stderr
    broken = os.path.join(dep.dir, "backups", dep.archives()[-1])
    dep.exec('rm "$HOME/.openclaw/.standin-corrupt-state"; echo after > "$HOME/.openclaw/new"')
    before = dep.state()
    res = dep.program("--restore", broken)
    assert res.returncode == 12, res.stdout + res.stderr
    assert "previous state is back" in res.stderr
    dep.wait_healthy(60)
    assert dep.state() == before


def test_upgrade_to_a_never_healthy_image_rolls_back_with_the_data(dep):
    before, compose = dep.state(), open(os.path.join(dep.dir, "docker-compose.yml")).read()
    checked = set(glob.glob(os.path.join(tempfile.gettempdir(), "claw-cage-restore-*")))
    n = len(dep.archives())
    new = dep.deploy_copy("source-new", BROKEN)
    res = dep.install(new, env=ENV)
    assert res.returncode == 12, res.stdout + res.stderr
    out = res.stdout + res.stderr
    assert "openclaw doctor --non-interactive" in out and "back" in res.stderr
    assert len(dep.archives()) == n + 1          # the backup before the upgrade
    assert open(os.path.join(dep.dir, "docker-compose.yml")).read() == compose
    dep.wait_healthy(60)
    img = json.loads(sh(["docker", "inspect", dep.gateway()]).stdout)[0]["Image"]
    assert img == dep.standin_id
    assert dep.state() == before
    for name in (".claw-cage-upgrade.json",) + tuple(f + ".previous" for f in COMPOSE_FILES):
        assert not os.path.exists(os.path.join(dep.dir, name))
    for f in COMPOSE_FILES:   # every profile runs the recorded image again (before: api-only not)
        cfg = json.loads(sh(["docker", "compose", "config", "--format", "json"], cwd=dep.dir,
                            env=dict(os.environ, COMPOSE_FILE=f)).stdout)
        assert cfg["services"]["openclaw"]["image"] == IMAGE, f
    for name in ("docker-compose.yml", ".env", "openclaw.json"):
        st = os.lstat(os.path.join(dep.dir, name))
        assert st.st_uid == os.geteuid() or st.st_uid == 1000, name
    assert stat.S_IMODE(os.lstat(os.path.join(dep.dir, ".env")).st_mode) == 0o600
    res = dep.program("--rollback")
    assert res.returncode == 11 and "nothing to roll back" in res.stderr
    # the archive's members checked before the rollback (.env in clear among them) are gone
    assert set(glob.glob(os.path.join(tempfile.gettempdir(), "claw-cage-restore-*"))) == checked


def _kill_9_while_the_gateway_is_stopped(dep):
    """The fallback copy stops the gateway: kill -9 of the whole process group then, and the
    watchdog (its own session) starts it again; no archive under a final name."""
    dep.exec('head -c 80000000 /dev/urandom > "$HOME/.openclaw/big.bin"')
    before = dep.archives()

    def copying():   # the gateway stopped, the copy's one-shot container on the state volume
        return dep.gateway() is None and sh(["docker", "ps", "-q", "--filter",
                                             "volume=" + DATA]).stdout.split()
    _kill_9_backup_when(dep, copying, 90)
    assert e2e.wait_for(dep.gateway, 60, interval=0.5), "the gateway stayed stopped"
    dep.wait_healthy(60)
    assert e2e.wait_for(lambda: len(sh(["docker", "ps", "-q", "--filter", "volume=" + DATA]
                                       ).stdout.split()) == 1, 180, interval=1)
    assert dep.archives() == before
    dep.exec('rm -f "$HOME/.openclaw/big.bin"')


def test_image_without_backup_command_stops_copies_and_restarts(dep):
    env = os.path.join(dep.dir, ".env")
    text = open(env).read()
    with open(env, "a") as f:
        f.write("OPENCLAW_IMAGE=%s\n" % OLD)
    try:
        dep.compose("up", "-d", "--pull", "never")
        dep.wait_healthy()
        before, n = dep.state(), len(dep.archives())
        _kill_9_while_the_gateway_is_stopped(dep)
        res = dep.program("--backup")
        assert res.returncode == 0, res.stdout + res.stderr
        assert "removed what a cut-off run left" in res.stdout
        assert "no `openclaw backup` command: the gateway is stopped" in res.stdout
        assert "gateway started again" in res.stdout
        dep.wait_healthy(60)
        path = os.path.join(dep.dir, "backups", dep.archives()[-1])
        assert len(dep.archives()) == n + 1
        with tarfile.open(path) as t:
            assert "state/claw-data.tar.gz" in t.getnames()
        dep.exec('echo changed > "$HOME/.openclaw/sessions/s1.jsonl"')
        res = dep.program("--restore", path)
        assert res.returncode == 0, res.stdout + res.stderr
        assert dep.state() == before
    finally:
        with open(env, "w") as f:
            f.write(text)
        dep.compose("up", "-d", "--pull", "never")


def test_an_upgrade_that_ends_healthy_closes_its_record(dep):
    """Before: the record and docker-compose.yml.previous stayed, and a later --rollback with
    the gateway merely stopped restored the pre-upgrade backup over newer state."""
    new = dep.deploy_copy("source-good", GOOD)
    res = dep.install(new, env=ENV)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "the upgrade is closed" in res.stdout + res.stderr
    for name in (".claw-cage-upgrade.json",) + tuple(f + ".previous" for f in COMPOSE_FILES):
        assert not os.path.exists(os.path.join(dep.dir, name)), name
    dep.compose("stop", "openclaw")
    state = dep.state()
    res = dep.program("--rollback")
    assert res.returncode == 11 and "nothing to roll back" in res.stderr, res.stdout + res.stderr
    assert dep.state() == state
