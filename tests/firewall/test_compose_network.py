"""The cage goes on the bridge Docker Compose really uses, or nowhere (composefile.project_network).

Compose merges more than docker-compose.yml: docker-compose.override.yml beside it, the files
COMPOSE_FILE in .env names, and compose.yaml before all of them. An override that moves the
network to another bridge used to give exit 0 and "ok" while the container sat on that other
bridge and reached the LAN. Proven here in the namespace lab (netlab.py) with the BUILT program
and the real Compose binary (tests/setup.d installs it as a docker CLI plugin):
  - the container on the other bridge reaches the LAN (the hole the old "ok" hid);
  - --firewall refuses the override in one line, exit 5, iptables byte-identical;
  - control: without the override the same run cages claw-cage0, and the LAN probe that
    reached it before is blocked.
Without Compose (no `docker` on PATH), files Compose would merge are refused, not ignored; a
FIFO named like a compose file is refused at once. Compose's last passing answer, and a docker's
answer that it has no Compose, are remembered in /run: each refusal is made with the memory as
without it, and a changed input asks again.
"""

import os
import shutil
import subprocess
import sys
import time

import pytest

from lab import netlab
from lab.netlab import Lab, Probe

pytestmark = pytest.mark.usefixtures("_lab_possible")

OTHER = "claw-evil0"            # the bridge an override names
OTHER_NET = "172.31.0.0/24"
OVERRIDE = """networks:
  claw-net:
    driver_opts:
      com.docker.network.bridge.name: %s
    ipam:
      config: !override
        - subnet: %s
""" % (OTHER, OTHER_NET)
EXTRA_HOSTS = """services:
  openclaw:
    extra_hosts:
      - ollama.lan:192.168.1.50
"""
HOST_MODE = """services:
  openclaw:
    network_mode: host
    networks: !reset []
"""


@pytest.fixture
def _lab_possible():
    netlab.require_lab()
    if not shutil.which("docker") or subprocess.run(
            ["docker", "compose", "version"], stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL).returncode != 0:
        pytest.fail("the real Docker Compose v2 plugin is missing: tests/run installs it")


def _other_bridge(lab):
    """A second bridge in the lab's host, as Docker makes one for a network an override
    names (its own FORWARD ACCEPTs), and a container namespace on it at 172.31.0.2."""
    ns = lab.prefix + "-ctr3"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    lab._made.append(ns)   # deleted with the lab
    lab.sh(lab.host, """
        ip link add %(br)s type bridge
        ip addr add 172.31.0.1/24 dev %(br)s
        ip link set %(br)s up
        ip link add vevil type veth peer name eth0 netns %(ns)s
        ip link set vevil master %(br)s up
        iptables -w -A FORWARD -o %(br)s -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
        iptables -w -A FORWARD -i %(br)s ! -o %(br)s -j ACCEPT
    """ % {"br": OTHER, "ns": ns})
    lab.sh(ns, """
        ip link set lo up
        ip addr add 172.31.0.2/24 dev eth0
        ip link set eth0 up
        ip route add default via 172.31.0.1
    """)
    return ns


def _refused(lab, proc, before, words):
    print(proc.returncode, proc.stdout, proc.stderr)
    assert proc.returncode == 5, (proc.returncode, proc.stdout, proc.stderr)
    assert proc.stderr.count("\n") == 1 and "nothing was changed" in proc.stderr, proc.stderr
    assert words in proc.stderr, proc.stderr
    assert "ok" not in proc.stdout.split(), proc.stdout
    assert (lab.save(4), lab.save(6)) == before, "a refused run changed iptables"


def _write(lab, name, text):
    with open(os.path.join(lab.compose_dir, name), "w") as f:
        f.write(text)


def test_override_moving_the_network_is_refused_and_the_control_cages(pyz):
    with Lab() as lab:
        evil = _other_bridge(lab)
        lan_from_other = Probe("LAN 192.168.1.1 from the override's bridge", evil, "tcp",
                               "192.168.1.1", netlab.TCP_PORT)
        lan_from_cage = Probe("LAN 192.168.1.1 from claw-cage0", lab.ctr, "tcp",
                              "192.168.1.1", netlab.TCP_PORT)
        got = lab.probe([lan_from_other, lan_from_cage], retry=[lan_from_other, lan_from_cage])
        assert all(got.values()), "control: the LAN is out of reach even without rules: %s" % got
        before = (lab.save(4), lab.save(6))
        cases = [
            ("docker-compose.override.yml", OVERRIDE, "bridge %s" % OTHER),
            ("compose.override.yaml", OVERRIDE, "bridge %s" % OTHER),
            ("compose.yaml", open(os.path.join(netlab.ROOT, "deploy", "docker-compose.yml"))
             .read().replace("claw-cage0", OTHER).replace("172.30.0.0/24", OTHER_NET),
             "bridge %s" % OTHER),
            ("docker-compose.override.yml", HOST_MODE, "network_mode host"),
            (".env", "COMPOSE_FILE=docker-compose.yml:moved.yml\n", "bridge %s" % OTHER),
        ]
        _write(lab, "moved.yml", OVERRIDE)
        for name, text, words in cases:
            _write(lab, name, text)
            _refused(lab, lab.firewall(pyz, "--no-persist"), before, words)
            os.unlink(os.path.join(lab.compose_dir, name))
        # the hole stays visible as what it is: nothing was caged, nothing said "ok"
        assert lab.probe([lan_from_other], retry=[lan_from_other])[lan_from_other]
        # control: the same directory with the override the README suggests (names in
        # /etc/hosts, the network untouched) is caged, on claw-cage0
        _write(lab, "docker-compose.override.yml", EXTRA_HOSTS)
        out = netlab.ok(lab.firewall(pyz, "--no-persist"))
        assert "claw-cage0" in out.stdout and "not the LAN or this host" in out.stdout, out.stdout
        got = lab.probe([lan_from_cage])
        assert not got[lan_from_cage], "claw-cage0 not caged after an accepted run"


def test_the_remembered_answer_refuses_every_override_compose_refuses(pyz, tmp_path):
    """--firewall remembers Compose's last passing answer (composefile.MEMORY, in /run) and
    asks Compose again only when something it reads changed. A stand-in `docker` in front of
    the real one logs every call: an unchanged re-run does not ask; each override the test
    above refuses, and COMPOSE_FILE set in the environment, is asked about and refused with the
    same line as with no memory at all, iptables unchanged; without it the memory answers."""
    log = tmp_path / "docker.log"
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "docker").write_text('#!/bin/sh\necho "$*" >> %s\nexec %s "$@"\n'
                                   % (log, shutil.which("docker")))
    (bindir / "docker").chmod(0o755)
    overlay = tmp_path / "overlay"   # /etc, /usr/local/lib and /run: the memory lands here
    memory = overlay / "run" / "upper" / os.path.basename(composefile_memory())
    path = "PATH=%s:%s" % (bindir, os.environ["PATH"])

    def run(*env):
        return lab.run_program(["env", path] + list(env) + [netlab.PY, pyz, "--firewall",
                                "--no-persist", "--dir", lab.compose_dir],
                               etc_overlay=str(overlay))

    def asked():
        calls = log.read_text().count("config") if log.exists() else 0
        log.write_text("")
        return calls

    with Lab() as lab:
        netlab.ok(run())
        assert asked() == 1 and memory.exists()
        assert b"services" not in memory.read_bytes()   # the answer, never Compose's output
        caged = (lab.save(4), lab.save(6))
        netlab.ok(run())
        assert asked() == 0, "an unchanged project asked Compose again"
        _write(lab, "moved.yml", OVERRIDE)
        cases = [
            ("docker-compose.override.yml", OVERRIDE, "bridge %s" % OTHER),
            ("compose.override.yaml", OVERRIDE, "bridge %s" % OTHER),
            ("compose.yaml", open(os.path.join(netlab.ROOT, "deploy", "docker-compose.yml"))
             .read().replace("claw-cage0", OTHER).replace("172.30.0.0/24", OTHER_NET),
             "bridge %s" % OTHER),
            ("docker-compose.override.yml", HOST_MODE, "network_mode host"),
            (".env", "COMPOSE_FILE=docker-compose.yml:moved.yml\n", "bridge %s" % OTHER),
            (None, "COMPOSE_FILE=docker-compose.yml:moved.yml", "bridge %s" % OTHER),
        ]
        for name, text, words in cases:
            if name:
                _write(lab, name, text)
            proc = run(*([] if name else [text]))
            _refused(lab, proc, caged, words)
            assert asked() == 1
            remembered = memory.read_bytes()
            assert OTHER.encode() not in remembered   # a refused answer is never remembered
            memory.unlink()   # the same run with no memory at all: the same line
            again = run(*([] if name else [text]))
            assert (again.returncode, again.stderr) == (proc.returncode, proc.stderr)
            asked()
            memory.write_bytes(remembered)
            if name:
                os.unlink(os.path.join(lab.compose_dir, name))
        netlab.ok(run())
        assert asked() == 0, "the memory of the passing project was lost to a refusal"


def test_a_docker_without_compose_is_remembered_and_refuses_the_same(pyz, tmp_path):
    """A docker that says it has no Compose is remembered too (composefile.NO_COMPOSE), under
    the same key: an unchanged re-run asks nothing and cages. Each file Compose would merge is
    asked about and refused with the same line as with no memory at all, iptables unchanged,
    and the memory of the passing project survives the refusals. A Compose plugin appearing
    where the docker CLI looks (DOCKER_CONFIG's cli-plugins, a cliPluginsExtraDirs folder of
    its config.json) or another docker program: asked again."""
    log = tmp_path / "docker.log"
    bindir = tmp_path / "bin"
    bindir.mkdir()
    docker = bindir / "docker"   # the docker CLI's own words without its Compose plugin
    docker.write_text('#!/bin/sh\necho "$*" >> %s\n'
                      'echo "docker: \'compose\' is not a docker command." >&2\nexit 1\n' % log)
    docker.chmod(0o755)
    config = tmp_path / "docker-config"
    config.mkdir()
    overlay = tmp_path / "overlay"
    memory = overlay / "run" / "upper" / os.path.basename(composefile_memory())
    env = ["PATH=%s:%s" % (bindir, os.environ["PATH"]), "DOCKER_CONFIG=%s" % config]

    def run(*more):
        return lab.run_program(["env"] + env + list(more) + [
            netlab.PY, pyz, "--firewall", "--no-persist", "--dir", lab.compose_dir],
            etc_overlay=str(overlay))

    def asked():
        calls = log.read_text().count("compose") if log.exists() else 0
        log.write_text("")
        return calls

    with Lab() as lab:
        out = netlab.ok(run())
        assert "claw-cage0" in out.stdout and asked() == 1
        assert b"no-compose" in memory.read_bytes()
        caged = (lab.save(4), lab.save(6))
        netlab.ok(run())
        assert asked() == 0, "an unchanged project asked the same docker again"
        _write(lab, "moved.yml", OVERRIDE)
        cases = [
            ("docker-compose.override.yml", OVERRIDE, "docker-compose.override.yml"),
            ("compose.override.yaml", OVERRIDE, "compose.override.yaml"),
            ("compose.yaml", "services: {}\n", "compose.yaml"),
            (".env", "COMPOSE_FILE=docker-compose.yml:moved.yml\n", "COMPOSE_FILE"),
            (None, "COMPOSE_FILE=docker-compose.yml:moved.yml", "COMPOSE_FILE"),
        ]
        for name, text, words in cases:
            if name:
                _write(lab, name, text)
            proc = run(*([] if name else [text]))
            _refused(lab, proc, caged, words)
            assert asked() == 1
            remembered = memory.read_bytes()
            memory.unlink()   # the same run with no memory at all: the same line
            again = run(*([] if name else [text]))
            assert (again.returncode, again.stderr) == (proc.returncode, proc.stderr)
            asked()
            memory.write_bytes(remembered)
            if name:
                os.unlink(os.path.join(lab.compose_dir, name))
        os.unlink(os.path.join(lab.compose_dir, "moved.yml"))
        netlab.ok(run())
        assert asked() == 0, "the memory of the passing project was lost to a refusal"
        # Compose appears: in DOCKER_CONFIG's plugin folder, then in an extra folder that
        # config.json names (the config itself changed: asked; then the plugin there: asked)
        plugins = config / "cli-plugins"
        plugins.mkdir()
        (plugins / "docker-compose").write_text("#!/bin/sh\n")
        netlab.ok(run())
        assert asked() == 1, "a Compose plugin in DOCKER_CONFIG went unnoticed"
        extra = tmp_path / "extra-plugins"
        extra.mkdir()
        (config / "config.json").write_text('{"cliPluginsExtraDirs": ["%s"]}' % extra)
        netlab.ok(run())
        assert asked() == 1
        netlab.ok(run())
        assert asked() == 0
        (extra / "docker-compose").write_text("#!/bin/sh\n")
        netlab.ok(run())
        assert asked() == 1, "a Compose plugin in a cliPluginsExtraDirs folder went unnoticed"
        # another docker program (the same path, new contents): asked again
        docker.write_text(docker.read_text() + "# upgraded\n")
        netlab.ok(run())
        assert asked() == 1, "a replaced docker program went unnoticed"


def composefile_memory():
    sys.path.insert(0, os.path.join(netlab.ROOT, "bootstrap"))
    from claw_cage import composefile
    return composefile.MEMORY


def test_without_compose_merged_files_are_refused_not_ignored(pyz):
    """No `docker` on PATH (iptables stays reachable in sbin): the line-by-line reading of
    docker-compose.yml is all there is, so anything Compose would add to it is refused."""
    with Lab() as lab:
        before = (lab.save(4), lab.save(6))
        env = "PATH=/usr/sbin:/sbin"
        for name, text, words in [
                ("docker-compose.override.yml", OVERRIDE, "docker-compose.override.yml"),
                ("compose.yaml", "services: {}\n", "compose.yaml"),
                (".env", "COMPOSE_FILE=docker-compose.yml:moved.yml\n", "COMPOSE_FILE")]:
            _write(lab, name, text)
            proc = lab.run_program(["env", env, netlab.PY, pyz, "--firewall", "--no-persist",
                                    "--dir", lab.compose_dir])
            _refused(lab, proc, before, words)
            assert "Compose" in proc.stderr
            os.unlink(os.path.join(lab.compose_dir, name))
        # control: docker-compose.yml alone is read without Compose, and caged
        out = netlab.ok(lab.run_program(["env", env, netlab.PY, pyz, "--firewall",
                                         "--no-persist", "--dir", lab.compose_dir]))
        assert "claw-cage0" in out.stdout, out.stdout


def test_a_fifo_named_like_a_compose_file_is_refused_at_once(pyz):
    with Lab(docker=False) as lab:
        before = (lab.save(4), lab.save(6))
        for name in ("docker-compose.override.yml", "compose.yaml", ".env"):
            path = os.path.join(lab.compose_dir, name)
            os.mkfifo(path)
            start = time.monotonic()
            proc = lab.firewall(pyz, "--no-persist", timeout=30)
            took = time.monotonic() - start
            print(name, proc.returncode, proc.stderr.strip(), "%.1fs" % took)
            assert proc.returncode == 5 and "not a regular file" in proc.stderr, proc.stderr
            assert proc.stderr.count("\n") == 1
            assert (lab.save(4), lab.save(6)) == before
            os.unlink(path)
