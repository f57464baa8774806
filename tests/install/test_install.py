"""The installer, run as users run it (the built file through a real pipe), against a real
HTTP server on 127.0.0.1 serving deploy/. Every fault must leave the target byte-identical."""

import fcntl
import os
import signal
import stat
import subprocess
import sys

import pytest

from lab.artifact_server import ArtifactServer
from conftest import PYTHON, ROOT, find_python, require_root

DEPLOY = os.path.join(ROOT, "deploy")
ARTIFACTS = ("docker-compose.yml", ".env.example", "iptables-rules.sh", "openclaw.json",
             "openclaw.local-only.json", "docker-compose.api-only.yml", "netns-relay.js",
             "openclaw.api-only.json")
USER_ENV = b"ANTHROPIC_API_KEY=sk-user-secret-123\nOPENCLAW_GATEWAY_TOKEN=usertoken\n"


def stub_docker(tmp_path, compose="v2", daemon=True, docker=True):
    """A `docker` stand-in on PATH: the installer only asks it for versions."""
    bindir = tmp_path / "bin"
    bindir.mkdir(exist_ok=True)
    if docker:
        script = ["#!/bin/sh"]
        if compose == "v2":
            script.append('[ "$1 $2" = "compose version" ] && '
                          '{ echo "Docker Compose version v2.29.1"; exit 0; }')
        else:  # what docker says when the compose plugin is missing
            script.append('[ "$1" = "compose" ] && '
                          '{ echo "docker: \'compose\' is not a docker command." >&2; exit 1; }')
        if daemon:
            script.append('[ "$1" = "info" ] && { echo "27.3.1"; exit 0; }')
        else:
            script.append('[ "$1" = "info" ] && { echo "Cannot connect to the Docker daemon" '
                          '>&2; exit 1; }')
        script.append("exit 1")
        path = bindir / "docker"
        path.write_text("\n".join(script) + "\n")
        path.chmod(0o755)
    # Only our bin dir and the basics: the machine's real docker must not be found.
    return {"PATH": str(bindir)}


def snapshot(directory):
    """Everything a user could notice: names, types, modes, owners, contents."""
    if not os.path.lexists(directory):
        return None
    state = {}
    for dirpath, dirnames, filenames in os.walk(directory):
        for name in sorted(dirnames + filenames):
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            content = None
            if stat.S_ISREG(st.st_mode):
                with open(path, "rb") as f:
                    content = f.read()
            elif stat.S_ISLNK(st.st_mode):
                content = os.readlink(path)
            state[os.path.relpath(path, directory)] = (st.st_mode, st.st_uid, content)
    st = os.lstat(directory)
    state["."] = (st.st_mode, st.st_uid, None)
    return state


@pytest.fixture
def env(tmp_path):
    return stub_docker(tmp_path)


@pytest.fixture
def server():
    with ArtifactServer(DEPLOY, stall=20) as srv:
        yield srv


@pytest.fixture
def installed(tmp_path, run_pyz, env, server):
    """A finished install whose .env the user has edited."""
    target = tmp_path / "claw-cage"
    r = run_pyz(["--dir", str(target), "--source", server.url], env=env)
    assert r.returncode == 0, r.stderr.decode()
    (target / ".env").write_bytes(USER_ENV)
    return target


# --- AC-1, AC-5: a fresh install, a re-run -------------------------------------------------

def test_fresh_install_creates_the_files_with_the_right_modes(tmp_path, run_pyz, env,
                                                             server, pyz):
    target = tmp_path / "home" / "claw-cage"
    (tmp_path / "home").mkdir()
    r = run_pyz(["--source", server.url], env=dict(env, CLAW_CAGE_DIR=str(target)))
    out = r.stdout.decode()
    assert r.returncode == 0, r.stderr.decode()
    for name in ARTIFACTS:
        with open(os.path.join(DEPLOY, name), "rb") as f:
            assert (target / name).read_bytes() == f.read()
    assert stat.S_IMODE((target / "iptables-rules.sh").stat().st_mode) == 0o755
    assert stat.S_IMODE((target / ".env").stat().st_mode) == 0o600
    assert stat.S_IMODE((target / "docker-compose.yml").stat().st_mode) == 0o644
    # The program saved itself byte for byte, though it arrived through a pipe.
    with open(pyz, "rb") as f:
        assert (target / "claw-cage.pyz").read_bytes() == f.read()
    # A fresh 64-hex-digit token, never printed.
    env_text = (target / ".env").read_text()
    token = [l.split("=", 1)[1] for l in env_text.splitlines()
             if l.startswith("OPENCLAW_GATEWAY_TOKEN=")]
    assert len(token) == 1 and len(token[0]) == 64 and int(token[0], 16) >= 0
    assert token[0] not in out and token[0] not in r.stderr.decode()
    assert token[0][:8] not in out
    # The three downloads were all requested.
    assert sorted(p.rsplit("/", 1)[1] for p in server.requests) == sorted(ARTIFACTS)
    for name in ARTIFACTS:
        assert "%s created" % name in out
    assert "docker compose up -d" in out and "ssh -N -L 18789:127.0.0.1:18789" in out


def test_an_install_and_a_rerun_do_not_import_the_backup_package(tmp_path, run_pyz, env,
                                                                  server):
    """Only an upgrade whose compose file changed needs backup/ (its imports cost about a
    tenth of a second): a first install and a re-run never load it."""
    target = tmp_path / "t"
    for _ in range(2):
        r = run_pyz(["--dir", str(target), "--source", server.url],
                    env=dict(env, PYTHONPROFILEIMPORTTIME="1"))
        assert r.returncode == 0, r.stderr.decode()[-2000:]
        imports = r.stderr.decode()
        assert "claw_cage.install.steps" in imports  # the control: imports are listed
        assert "claw_cage.backup" not in imports


def test_two_installs_get_different_tokens(tmp_path, run_pyz, env, server):
    tokens = set()
    for n in range(2):
        target = tmp_path / ("c%d" % n)
        assert run_pyz(["--dir", str(target), "--source", server.url], env=env).returncode == 0
        tokens.add((target / ".env").read_text())
    assert len(tokens) == 2


def test_rerun_updates_artifacts_and_keeps_the_users_env(installed, run_pyz, env, server):
    (installed / "docker-compose.yml").write_text("# an old version\n")
    (installed / "iptables-rules.sh").write_text("#!/bin/sh\n# old\n")
    r = run_pyz(["--dir", str(installed), "--source", server.url], env=env)
    out = r.stdout.decode()
    assert r.returncode == 0, r.stderr.decode()
    assert (installed / ".env").read_bytes() == USER_ENV
    with open(os.path.join(DEPLOY, "docker-compose.yml"), "rb") as f:
        assert (installed / "docker-compose.yml").read_bytes() == f.read()
    assert "docker-compose.yml updated" in out
    assert "iptables-rules.sh updated" in out
    assert ".env.example unchanged" in out
    assert "sk-user-secret-123" not in out + r.stderr.decode()
    # And a third run changes nothing at all.
    before = snapshot(installed)
    r = run_pyz(["--dir", str(installed), "--source", server.url], env=env)
    assert r.returncode == 0
    assert snapshot(installed) == before
    assert "updated" not in r.stdout.decode() and "created" not in r.stdout.decode()


def test_a_too_open_env_is_tightened_not_rewritten(installed, run_pyz, env, server):
    (installed / ".env").chmod(0o644)
    r = run_pyz(["--dir", str(installed), "--source", server.url], env=env)
    assert r.returncode == 0
    assert stat.S_IMODE((installed / ".env").stat().st_mode) == 0o600
    assert (installed / ".env").read_bytes() == USER_ENV
    assert "tightened" in r.stdout.decode()


@pytest.mark.parametrize("kind", ["symlink", "directory"])
def test_an_env_that_is_not_a_regular_file_stops_the_install(installed, run_pyz, env,
                                                              server, tmp_path, kind):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.write_bytes(b"SECRET=1\n")
    (installed / ".env").unlink()
    if kind == "symlink":
        (installed / ".env").symlink_to(elsewhere)
    else:
        (installed / ".env").mkdir()
    (installed / "docker-compose.yml").write_text("# old\n")
    before = snapshot(installed)
    r = run_pyz(["--dir", str(installed), "--source", server.url], env=env)
    assert r.returncode == 5
    err = r.stderr.decode().strip()
    assert ".env" in err and len(err.splitlines()) == 1
    assert snapshot(installed) == before
    assert elsewhere.read_bytes() == b"SECRET=1\n"


def test_keys_in_env_without_firewall_are_named_and_not_shown(installed, run_pyz, env, server):
    """An upgrade from a release that handed .env to the gateway: the keys reach the agent no
    more, and the provider only once --firewall moved them; the run says so, by name only.
    After --firewall wrote its own openclaw.routes.json, nothing is said."""
    r = run_pyz(["--dir", str(installed), "--source", server.url], env=env)
    out = r.stdout.decode() + r.stderr.decode()
    assert r.returncode == 0, out
    line = [l for l in out.splitlines() if "no longer reach" in l]
    assert len(line) == 1 and "ANTHROPIC_API_KEY" in line[0] and "--firewall" in line[0], out
    assert "sk-user-secret-123" not in out
    (installed / "openclaw.routes.json").write_text('{"$include": "./openclaw.json", "models": {}}')
    r = run_pyz(["--dir", str(installed), "--source", server.url], env=env)
    assert r.returncode == 0 and "no longer reach" not in r.stdout.decode() + r.stderr.decode()


def test_an_api_only_socket_folder_of_another_uid_is_named(installed, pyz, env, server):
    """A host upgraded from the release whose relay ran as uid 1000: the folder the relay's
    socket goes in is still uid 1000's, so the new relay (uid 65100) cannot make its socket;
    the installer names the folder and the --firewall run that mends it. A private /run (mount
    namespace, tmpfs) holds the folder: the host's is never touched."""
    require_root("a private /run in a mount namespace")
    script = ("/usr/bin/mount -t tmpfs none /run && /usr/bin/mkdir -p /run/claw-cage/gateway && "
              "/usr/bin/chown %d /run/claw-cage/gateway && exec %s - --dir %s --source %s"
              % (1000, PYTHON, installed, server.url))
    with open(pyz, "rb") as f:
        r = subprocess.run(["/usr/bin/unshare", "-m", "--propagation", "private", "/bin/sh", "-c",
                            script],
                           input=f.read(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           env=env, timeout=120)
    out = r.stdout.decode() + r.stderr.decode()
    assert r.returncode == 0, out
    line = [l for l in out.splitlines() if "/run/claw-cage/gateway belongs to uid 1000" in l]
    assert len(line) == 1 and "--firewall --profile api-only" in line[0], out


def test_dry_run_changes_nothing(installed, run_pyz, env, server, tmp_path):
    (installed / "docker-compose.yml").write_text("# old\n")
    (installed / ".env").chmod(0o644)
    before = snapshot(installed)
    r = run_pyz(["--dir", str(installed), "--source", server.url, "--dry-run"], env=env)
    assert r.returncode == 0
    out = r.stdout.decode()
    assert "would update docker-compose.yml" in out and "would tighten" in out
    assert snapshot(installed) == before
    fresh = tmp_path / "fresh"
    r = run_pyz(["--dir", str(fresh), "--source", server.url, "--dry-run"], env=env)
    assert r.returncode == 0 and not fresh.exists()


@pytest.mark.parametrize("how", ["dir", "file-url"])
def test_local_sources(tmp_path, run_pyz, env, how):
    target = tmp_path / "t"
    source = DEPLOY if how == "dir" else "file://" + DEPLOY
    r = run_pyz(["--dir", str(target), "--source", source], env=env)
    assert r.returncode == 0, r.stderr.decode()
    assert (target / "docker-compose.yml").exists()


def test_a_source_that_cannot_be_fetched_is_named_after_the_prerequisites(tmp_path, run_pyz,
                                                                            server):
    """The downloads start after the prerequisites passed (fetch.start): a source of an
    unsupported kind is still refused in one line, exit 4, nothing created; and a host that
    lacks Docker hears that first, exit 3, as before the downloads started early."""
    target = tmp_path / "t"
    r = run_pyz(["--dir", str(target), "--source", "ftp://example.invalid/deploy"],
                env=stub_docker(tmp_path))
    err = r.stderr.decode().strip()
    assert r.returncode == 4 and "unsupported source" in err and len(err.splitlines()) == 1
    assert "ok: docker and Docker Compose" in r.stdout.decode()
    assert not target.exists()
    (tmp_path / "none").mkdir()
    r = run_pyz(["--dir", str(target), "--source", "ftp://example.invalid/deploy"],
                env=stub_docker(tmp_path / "none", docker=False))
    err = r.stderr.decode().strip()
    assert r.returncode == 3 and "docker not found" in err and len(err.splitlines()) == 1
    assert not target.exists()


def test_verbose_logs_every_command_and_only_with_v(tmp_path, run_pyz, env, server):
    """-v: each command the installer runs, one `  $ ...` line on stderr (runner's log, not
    the logging module); without -v none."""
    quiet = run_pyz(["--dir", str(tmp_path / "a"), "--source", server.url], env=env)
    loud = run_pyz(["--dir", str(tmp_path / "b"), "--source", server.url, "-v"], env=env)
    assert quiet.returncode == loud.returncode == 0, loud.stderr.decode()
    assert "$ " not in quiet.stderr.decode()
    lines = loud.stderr.decode().splitlines()
    assert [l.split()[2:] for l in lines if l.startswith("  $ ")] == [
        ["compose", "version"], ["info", "--format", "'{{.ServerVersion}}'"]], lines


def test_source_from_the_environment(tmp_path, run_pyz, env, server):
    target = tmp_path / "t"
    r = run_pyz(["--dir", str(target)], env=dict(env, CLAW_CAGE_SOURCE=server.url))
    assert r.returncode == 0, r.stderr.decode()
    assert server.requests


# --- AC-7: prerequisites, checked before anything touches the disk -------------------------

@pytest.mark.parametrize("case,needle", [
    ("no-docker", "docker not found"),
    ("compose-v1-only", "Compose v2"),
])
def test_missing_prerequisite_creates_nothing(tmp_path, run_pyz, server, case, needle):
    env = stub_docker(tmp_path, docker=(case != "no-docker"), compose="none")
    target = tmp_path / "claw-cage"
    r = run_pyz(["--dir", str(target), "--source", server.url], env=env)
    assert r.returncode == 3
    err = r.stderr.decode().strip()
    assert needle in err and len(err.splitlines()) == 1
    assert not target.exists()
    assert server.requests == []  # nothing was even downloaded


def test_a_silent_docker_daemon_is_only_a_warning(tmp_path, run_pyz, server):
    env = stub_docker(tmp_path, daemon=False)
    r = run_pyz(["--dir", str(tmp_path / "t"), "--source", server.url], env=env)
    assert r.returncode == 0
    assert "daemon does not answer" in r.stdout.decode()


# --- Faults: each leaves the target exactly as it was -------------------------------------

FAULTS = [
    ("docker-compose.yml", "404", "HTTP 404"),
    (".env.example", "500", "HTTP 500"),
    ("iptables-rules.sh", "reset", ""),
    ("docker-compose.yml", "slow", "timed out"),
    ("docker-compose.yml", "tamper", "sha256"),
    (".env.example", "oversize", "limit"),
    ("iptables-rules.sh", "oversize-chunked", "limit"),
    ("docker-compose.yml", "redirect-http", "https"),
]


@pytest.mark.parametrize("name,kind,needle", FAULTS, ids=[f[1] for f in FAULTS])
def test_download_faults_leave_the_target_untouched(installed, run_pyz, env, server, name,
                                                    kind, needle, tmp_path):
    server.fault(name, kind)
    (installed / "docker-compose.yml").write_text("# the user's current version\n")
    before = snapshot(installed)
    r = run_pyz(["--dir", str(installed), "--source", server.url],
                env=dict(env, CLAW_CAGE_TIMEOUT="2"))
    err = r.stderr.decode().strip()
    assert r.returncode == 4, err
    assert len(err.splitlines()) == 1 and name in err and needle in err
    assert snapshot(installed) == before
    # and on a fresh install, nothing is created at all
    fresh = tmp_path / "fresh"
    r = run_pyz(["--dir", str(fresh), "--source", server.url],
                env=dict(env, CLAW_CAGE_TIMEOUT="2"))
    assert r.returncode == 4 and not fresh.exists()


def test_ctrl_c_during_the_download(installed, pyz, env, server):
    server.fault("docker-compose.yml", "slow")
    (installed / "docker-compose.yml").write_text("# old\n")
    before = snapshot(installed)
    with open(pyz, "rb") as f:
        source = f.read()
    full_env = dict(os.environ, **env)
    proc = subprocess.Popen([PYTHON, "-", "--dir", str(installed), "--source", server.url],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=full_env)
    proc.stdin.write(source)
    proc.stdin.close()
    assert server.stalled.wait(30), "the download never started"
    proc.send_signal(signal.SIGINT)
    # it ends while the server still stalls (the stall outlasts this wait): it did not wait
    # for the stalled download; TimeoutExpired otherwise (a bound on behaviour, not on speed)
    proc.wait(timeout=server.stall - 5)
    assert not server.release.is_set()
    err = proc.stderr.read()
    proc.stdout.close()
    proc.stderr.close()
    assert proc.returncode == 130, err.decode()
    assert "interrupted" in err.decode()
    assert snapshot(installed) == before


def test_a_second_run_while_the_first_holds_the_lock(installed, run_pyz, env, server):
    (installed / "docker-compose.yml").write_text("# old\n")
    before = snapshot(installed)
    fd = os.open(str(installed), os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # what a running install holds
        r = run_pyz(["--dir", str(installed), "--source", server.url], env=env)
    finally:
        os.close(fd)
    assert r.returncode == 5
    assert "another claw-cage run" in r.stderr.decode()
    assert snapshot(installed) == before


def test_two_real_runs_at_once_never_interleave(tmp_path, pyz, env, server):
    """Two installers started together: each either completes or stops on the lock; the
    result is one complete, consistent install."""
    target = tmp_path / "t"
    target.mkdir()
    server.latency = 0.3
    with open(pyz, "rb") as f:
        source = f.read()
    full_env = dict(os.environ, **env)
    procs = [subprocess.Popen([PYTHON, "-", "--dir", str(target), "--source", server.url],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, env=full_env) for _ in range(2)]
    for p in procs:
        p.stdin.write(source)
        p.stdin.close()
    codes = sorted(p.wait(60) for p in procs)
    assert codes in ([0, 0], [0, 5])
    assert len([l for l in (target / ".env").read_text().splitlines()
                if l.startswith("OPENCLAW_GATEWAY_TOKEN=")]) == 1
    assert sorted(os.listdir(target)) == sorted(ARTIFACTS + (".env", "claw-cage.pyz",
                                                             "openclaw.routes.json"))
    for p in procs:
        p.stdout.close()
        p.stderr.close()


def test_read_only_target_directory(installed, run_pyz, env, server):
    require_root("mounting a read-only file system over the install directory")
    (installed / "docker-compose.yml").write_text("# old\n")
    before = snapshot(installed)
    subprocess.run(["mount", "--bind", str(installed), str(installed)], check=True)
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(installed)], check=True)
        r = run_pyz(["--dir", str(installed), "--source", server.url], env=env)
        assert r.returncode == 5, r.stderr.decode()
        err = r.stderr.decode().strip()
        assert "Read-only file system" in err and len(err.splitlines()) == 1
    finally:
        subprocess.run(["umount", str(installed)], check=True)
    assert snapshot(installed) == before


def test_read_only_empty_target_directory(tmp_path, run_pyz, env, server):
    """A first install (no .env yet) into an existing, empty, read-only directory."""
    require_root("mounting a read-only file system over the install directory")
    target = tmp_path / "empty"
    target.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(target)],
                   check=True)
    try:
        before = snapshot(target)
        r = run_pyz(["--dir", str(target), "--source", server.url], env=env)
        err = r.stderr.decode().strip()
        assert r.returncode == 5, err
        assert "Read-only file system" in err and len(err.splitlines()) == 1
        assert snapshot(target) == before
    finally:
        subprocess.run(["umount", str(target)], check=True)


# --- sudo: installs for the invoking user -------------------------------------------------

def test_under_sudo_it_installs_as_the_invoking_user(tmp_path, run_pyz, env, server):
    require_root("acting as root through sudo")
    import pathlib
    import shutil
    import tempfile
    home = pathlib.Path(tempfile.mkdtemp(prefix="claw-home-"))  # pytest's tmp is 0700 root
    try:
        home.chmod(0o755)
        os.chown(str(home), 65534, 65534)
        target = home / "claw-cage"
        env = stub_docker(home)  # where the dropped-to user can still run it
        # SUDO_UID as sudo sets it; uid 65534 (nobody) stands for the invoking user.
        r = run_pyz(["--dir", str(target), "--source", DEPLOY],
                    env=dict(env, SUDO_UID="65534", SUDO_GID="65534", SUDO_USER="nobody"))
        assert r.returncode == 0, r.stderr.decode()
        assert "through sudo" in r.stdout.decode() and "nobody" in r.stdout.decode()
        assert os.lstat(str(target / ".env")).st_mode & 0o777 == 0o600
        for name in os.listdir(str(target)) + ["."]:
            assert os.lstat(str(target / name)).st_uid == 65534, name
    finally:
        shutil.rmtree(str(home))


# --- Python versions --------------------------------------------------------------------

def test_installs_under_python_38(tmp_path, pyz, env, server):
    py38 = find_python("3.8")
    from conftest import run_file
    target = tmp_path / "t"
    r = run_file(pyz, ["--dir", str(target), "--source", server.url], env=env, python=py38)
    assert r.returncode == 0, r.stderr.decode()
    assert stat.S_IMODE((target / ".env").stat().st_mode) == 0o600
