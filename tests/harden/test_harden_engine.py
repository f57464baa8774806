"""--harden-docker against a real engine: the system's dockerd binary as a private engine
(private_engine.py), restarted through the same `service`/`systemctl` command the product
runs. The system's engine and its /etc/docker are never touched."""

import json
import os
import shutil
import subprocess
import sys

import pytest

from conftest import refuse, require_root
from private_engine import PrivateEngine

HARDENED = {"icc": False, "no-new-privileges": True, "ipv6": False, "log-driver": "json-file",
            "log-opts": {"max-size": "10m", "max-file": "3"}, "live-restore": True}


@pytest.fixture(autouse=True)
def _needs():
    require_root("a private dockerd in its own namespaces")
    for tool in ("dockerd", "docker", "unshare", "nsenter"):
        if not shutil.which(tool):
            pytest.skip("NEEDS %s, NOT RUN" % tool)
    if not os.path.isdir("/etc/docker"):
        pytest.skip("NEEDS /etc/docker (the private engine's bind-mount point), NOT RUN")


def read(path):
    with open(path, "rb") as f:
        return f.read()


def expected_for(info):
    want = dict(HARDENED)
    major = int(info["ServerVersion"].split(".")[0])
    if major >= 24:
        want["default-network-opts"] = {
            "bridge": {"com.docker.network.bridge.host_binding_ipv4": "127.0.0.1"}}
    return want


@pytest.mark.parametrize("init", ["sysv", "systemd"])
def test_empty_config_hardened_rerun_noop_revert_removes(tmp_path, pyz, init):
    with PrivateEngine(init=init) as engine:
        assert not os.path.exists(engine.daemon_json)
        res = engine.product(pyz, "--harden-docker")
        assert res.returncode == 0, res.stdout + res.stderr + engine.log()[-3000:]
        out = res.stdout
        assert out.index("+++ /etc/docker/daemon.json") < out.index("restarting Docker")
        assert "running containers stop" in out          # said before the restart
        conf = json.loads(read(engine.daemon_json))
        assert conf == expected_for(engine.info())
        assert "userland-proxy" not in conf              # decided against (docs/layers.md)
        info = engine.info()
        assert info["LiveRestoreEnabled"] is True and info["LoggingDriver"] == "json-file"
        opts = json.loads(engine.run(["docker", "network", "inspect", "bridge", "--format",
                                      "{{json .Options}}"]).stdout)
        assert opts["com.docker.network.bridge.enable_icc"] == "false"

        before, pid = read(engine.daemon_json), engine.dockerd_pid()
        again = engine.product(pyz, "--harden-docker")
        assert again.returncode == 0, again.stdout + again.stderr
        assert "nothing to change" in again.stdout
        assert read(engine.daemon_json) == before and engine.dockerd_pid() == pid

        back = engine.product(pyz, "--harden-docker", "--revert")
        assert back.returncode == 0, back.stdout + back.stderr
        assert not os.path.exists(engine.daemon_json)
        assert os.listdir(engine.etc) == ["key.json"] or "daemon.json" not in os.listdir(engine.etc)
        assert engine.info()["LiveRestoreEnabled"] is False


def test_user_config_kept_conflict_reported_revert_byte_identical(tmp_path, pyz):
    original = (b'{\n    "icc": true,\n    "max-concurrent-downloads": 5,\n'
                b'    "log-opts": {"max-size": "50m"}\n}\n')
    with PrivateEngine() as engine:
        with open(engine.daemon_json, "wb") as f:
            f.write(original)
        engine.service("restart")
        engine.wait()
        res = engine.product(pyz, "--harden-docker")
        assert res.returncode == 0, res.stdout + res.stderr + engine.log()[-3000:]
        assert "icc is true in daemon.json, hardened is false: kept yours" in res.stdout
        assert "log-opts.max-size" in res.stdout
        conf = json.loads(read(engine.daemon_json))
        assert conf["icc"] is True and conf["max-concurrent-downloads"] == 5
        assert conf["log-opts"] == {"max-size": "50m", "max-file": "3"}
        assert conf["live-restore"] is True
        assert read(engine.daemon_json + ".claw-cage.bak") == original
        hardened = read(engine.daemon_json)
        dry = engine.product(pyz, "--harden-docker", "--revert", "--dry-run")
        assert dry.returncode == 0 and '-  "live-restore": true' in dry.stdout, dry.stderr
        assert read(engine.daemon_json) == hardened
        assert read(engine.daemon_json + ".claw-cage.bak") == original
        back = engine.product(pyz, "--harden-docker", "--revert")
        assert back.returncode == 0, back.stdout + back.stderr
        assert read(engine.daemon_json) == original
        assert not os.path.exists(engine.daemon_json + ".claw-cage.bak")
        assert engine.info()["LiveRestoreEnabled"] is False


def test_unknown_key_refused_before_any_write(tmp_path, pyz):
    with PrivateEngine() as engine:
        broken = b'{"no-such-daemon-key": 1}\n'     # edited while dockerd runs
        with open(engine.daemon_json, "wb") as f:
            f.write(broken)
        pid = engine.dockerd_pid()
        res = engine.product(pyz, "--harden-docker")
        assert res.returncode == 10, res.stdout + res.stderr
        assert "no-such-daemon-key" in res.stderr and "nothing written" in res.stderr
        assert len(res.stderr.strip().splitlines()) == 1
        assert read(engine.daemon_json) == broken
        assert sorted(os.listdir(engine.etc)) in (["daemon.json"], ["daemon.json", "key.json"])
        assert engine.dockerd_pid() == pid


def test_flag_on_the_command_line_is_not_repeated(tmp_path, pyz):
    with PrivateEngine(flags=["--live-restore"]) as engine:
        res = engine.product(pyz, "--harden-docker")
        assert res.returncode == 0, res.stdout + res.stderr + engine.log()[-3000:]
        assert "dockerd's command line sets --live-restore" in res.stdout
        assert "live-restore" not in json.loads(read(engine.daemon_json))
        assert engine.info()["LiveRestoreEnabled"] is True


@pytest.mark.parametrize("init", ["sysv", "systemd"])
def test_dockerd_that_does_not_come_back_is_rolled_back(tmp_path, pyz, init):
    """docker.service edited (a --log-driver flag) but not yet restarted: the running dockerd
    has no such flag, so the merge adds log-driver, and the restart fails for real
    ("specified both as a flag and in the configuration file")."""
    original = b'{"max-concurrent-downloads": 4}\n'
    with PrivateEngine(init=init) as engine:
        with open(engine.daemon_json, "wb") as f:
            f.write(original)
        engine.service("restart")
        engine.wait()
        engine.set_args(engine.args + ["--log-driver", "json-file"])
        res = engine.product(pyz, "--harden-docker")
        assert res.returncode == 10, res.stdout + res.stderr
        assert "putting the previous one back" in res.stdout
        assert "the previous one is back and Docker runs with it" in res.stderr
        assert "specified both as a flag and in the configuration file" in engine.log()
        assert read(engine.daemon_json) == original
        assert engine.info()["ServerVersion"]


def test_dry_run_changes_nothing_and_shows_the_diff(tmp_path, pyz):
    with PrivateEngine() as engine:
        original = b'{"mtu": 1400}\n'
        with open(engine.daemon_json, "wb") as f:
            f.write(original)
        pid = engine.dockerd_pid()
        res = engine.product(pyz, "--harden-docker", "--dry-run")
        assert res.returncode == 0, res.stdout + res.stderr
        assert '+  "live-restore": true' in res.stdout and "dry run: nothing written" in res.stdout
        assert read(engine.daemon_json) == original
        assert sorted(os.listdir(engine.etc)) in (["daemon.json"], ["daemon.json", "key.json"])
        assert engine.dockerd_pid() == pid


def test_mode_and_owner_are_kept_and_bad_input_changes_nothing(tmp_path, pyz):
    with PrivateEngine() as engine:
        with open(engine.daemon_json, "wb") as f:
            f.write(b'{"mtu": 1400}\n')
        os.chmod(engine.daemon_json, 0o600)
        os.chown(engine.daemon_json, 0, 4)
        res = engine.product(pyz, "--harden-docker")
        assert res.returncode == 0, res.stdout + res.stderr
        st = os.stat(engine.daemon_json)
        assert (st.st_mode & 0o777, st.st_uid, st.st_gid) == (0o600, 0, 4)
        assert not [n for n in os.listdir(engine.etc) if n.startswith(".claw-cage-")]

        broken = b'{"mtu": 1400,'                   # not JSON: refused, untouched
        with open(engine.daemon_json, "wb") as f:
            f.write(broken)
        bad = engine.product(pyz, "--harden-docker")
        assert bad.returncode == 5 and len(bad.stderr.strip().splitlines()) == 1, bad.stderr
        assert "is not valid JSON" in bad.stderr or "cannot use" in bad.stderr
        assert read(engine.daemon_json) == broken

        os.unlink(engine.daemon_json + ".claw-cage.bak")
        none = engine.product(pyz, "--harden-docker", "--revert")
        assert none.returncode == 5 and "no claw-cage backup" in none.stderr
        assert read(engine.daemon_json) == broken


def test_not_root_is_refused_before_anything(pyz):
    require_root("runs the program as nobody")
    python = shutil.which("python3", path="/usr/bin:/bin")   # one that nobody can run
    if not python:
        pytest.skip("NEEDS /usr/bin/python3, NOT RUN")
    with open(pyz, "rb") as f:                                # `cat pyz | python3 -`
        res = subprocess.run(["setpriv", "--reuid", "65534", "--regid", "65534",
                              "--clear-groups", python, "-", "--harden-docker"],
                             input=f.read(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             cwd="/", timeout=60)
    res.stderr = res.stderr.decode()
    assert res.returncode == 3, res.stderr
    assert res.stderr.strip() == ("claw-cage: error: --harden-docker changes "
                                  "/etc/docker/daemon.json and restarts Docker: run it with sudo")


NEWER = ("26.1.5", "29.7.2-iptables")


@pytest.mark.parametrize("name", NEWER)
def test_newer_engine_validates_with_dockerd_and_binds_new_networks_to_loopback(pyz, name):
    """Engines of 23.0+ validate with `dockerd --validate`, 24.0+ take default-network-opts;
    the binaries come from the engines harness (tests/lab/engines.py, issue 18)."""
    from lab import engines
    try:
        binaries = engines.prepare(name)
    except engines.EngineUnavailable as err:
        refuse("Docker %s UNAVAILABLE, NOT RUN: %s" % (name, err))
    with PrivateEngine(init="systemd", bindir=binaries.bindir) as engine:
        assert engine.info()["ServerVersion"].startswith(name.split("-")[0])
        broken = b'{"no-such-daemon-key": 1}\n'
        with open(engine.daemon_json, "wb") as f:
            f.write(broken)
        res = engine.product(pyz, "--harden-docker")
        assert res.returncode == 10, res.stdout + res.stderr
        assert "dockerd refuses the merged daemon.json, nothing written" in res.stderr
        assert "no-such-daemon-key" in res.stderr and read(engine.daemon_json) == broken

        os.unlink(engine.daemon_json)
        res = engine.product(pyz, "--harden-docker")
        assert res.returncode == 0, res.stdout + res.stderr + engine.log()[-3000:]
        assert json.loads(read(engine.daemon_json)) == expected_for(engine.info())
        engine.run(["docker", "network", "create", "after-harden"])
        opts = json.loads(engine.run(["docker", "network", "inspect", "after-harden",
                                      "--format", "{{json .Options}}"]).stdout)
        assert opts.get("com.docker.network.bridge.host_binding_ipv4") == "127.0.0.1"
        back = engine.product(pyz, "--harden-docker", "--revert")
        assert back.returncode == 0 and not os.path.exists(engine.daemon_json), back.stderr


def test_measurement_userland_proxy_false_sets_route_localnet_on_every_bridge():
    """The measurement behind leaving userland-proxy alone (docs/layers.md): with
    `userland-proxy: false` dockerd turns on route_localnet on docker0 and on each bridge it
    creates, so packets from containers to 127.0.0.0/8 are routed to this host; without it,
    never. If an engine stops doing this, the decision can be revisited."""
    seen = {}
    for setting in (None, False):
        with PrivateEngine() as engine:
            if setting is not None:
                with open(engine.daemon_json, "w") as f:
                    json.dump({"userland-proxy": setting}, f)
                engine.service("restart")
                engine.wait()
            engine.run(["docker", "network", "create", "--opt",
                        "com.docker.network.bridge.name=measure0", "measure"])
            seen[setting] = [engine.run(["sysctl", "-n", "net.ipv4.conf.%s.route_localnet"
                                         % bridge]).stdout.strip()
                             for bridge in ("docker0", "measure0")]
    assert seen == {None: ["0", "0"], False: ["1", "1"]}


def test_containers_stop_or_keep_running_as_said_before_the_restart(pyz):
    """Measured: a container survives a restart only when the dockerd that stops and the one
    that starts both have live-restore on; what the program says must match."""
    if not shutil.which("busybox"):
        pytest.skip("NEEDS busybox (busybox-static) for a container image, NOT RUN")
    with PrivateEngine() as engine:                      # no daemon.json: live-restore off
        engine.sleeper("c1")
        res = engine.product(pyz, "--harden-docker")
        assert res.returncode == 0, res.stdout + res.stderr
        assert "running containers stop" in res.stdout
        assert engine.running("c1") == (False, 0)
        engine.run(["docker", "start", "c1"])
        res = engine.product(pyz, "--harden-docker", "--revert")   # live-restore off after
        assert res.returncode == 0 and "running containers stop" in res.stdout, res.stderr
        assert engine.running("c1") == (False, 0)

    with PrivateEngine() as engine:                      # the user had live-restore on
        with open(engine.daemon_json, "w") as f:
            f.write('{"live-restore": true}\n')
        engine.service("restart")
        engine.wait()
        engine.sleeper("c1")
        before = engine.running("c1")
        for args in (["--harden-docker"], ["--harden-docker", "--revert"]):
            res = engine.product(pyz, *args)
            assert res.returncode == 0, res.stdout + res.stderr
            assert "running containers keep running (live-restore)" in res.stdout
            assert engine.running("c1") == before and before[0]
            if "--revert" not in args:   # the default bridge stays as it was, and is said so
                assert "icc: the default bridge keeps its old settings" in res.stdout


def test_no_docker_cli_is_a_missing_prerequisite(pyz, tmp_path):
    res = subprocess.run([sys.executable, pyz, "--harden-docker"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, universal_newlines=True, timeout=60,
                         env=dict(os.environ, PATH=str(tmp_path)))
    assert res.returncode == 3, res.stderr
    assert res.stderr == ("claw-cage: error: --harden-docker needs Docker: `docker` is not "
                          "on PATH\n")
