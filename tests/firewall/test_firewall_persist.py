"""Persistence: the rules come back after a (simulated) reboot, before or after Docker.

No reboot and no running systemd here, so the boot is simulated as the issue asks: a FRESH lab
(new namespaces: an empty firewall, as after power-on), then the boot mechanism's own restore
step - the ExecStart command of the installed unit, as systemd would run it, reading the files
--firewall wrote - and dockerd's start, in both orders; then the packet matrix again.

/etc is never written for real: each program run gets a private mount namespace whose /etc is an
overlay; its writes land in a temporary upper directory, which the simulated boot then reads.
"""

import configparser
import os
import shlex
import stat

import pytest

from lab import netlab
from lab import fwlab
from lab.netlab import Lab, blocked_probes, open_probes


UNIT = "systemd/system/claw-cage-firewall.service"
WANTS = "systemd/system/multi-user.target.wants/claw-cage-firewall.service"
SCRIPT = "claw-cage/firewall.sh"
USER_RULES_V4 = "*filter\n-A INPUT -p tcp --dport 22 -j ACCEPT\nCOMMIT\n"


pytestmark = pytest.mark.usefixtures("_lab_possible")


def _own(save_text):
    return [l for l in save_text.splitlines() if "CLAW-CAGE" in l]


def _exec_start(upper):
    """The unit's ExecStart, read the way systemd reads it (one command, no shell)."""
    unit = configparser.ConfigParser(interpolation=None, strict=False)
    unit.read(os.path.join(upper, UNIT))
    return shlex.split(unit["Service"]["ExecStart"])


def _verdicts(lab):
    got = lab.probe(blocked_probes(lab) + open_probes(lab), retry=open_probes(lab))
    leaks = [p.name for p in blocked_probes(lab) if got[p]]
    broken = [p.name for p in open_probes(lab) if not got[p]]
    assert not leaks and not broken, "after reboot: leaks %s, broken %s" % (leaks, broken)


@pytest.fixture
def installed(pyz, tmp_path):
    """--firewall with persistence, in a lab, with /etc as an overlay. Returns
    (etc overlay dir, own rules v4, own rules v6) of the host it was applied on."""
    etc = str(tmp_path / "etc")
    os.makedirs(os.path.join(etc, "upper", "iptables"))
    with open(os.path.join(etc, "upper", "iptables", "rules.v4"), "w") as f:
        f.write(USER_RULES_V4)  # a user who already persists rules with iptables-persistent
    with Lab(docker_return=True) as lab:
        out = netlab.ok(lab.firewall(pyz, "--allow", "192.168.1.1:8081", etc_overlay=etc))
        assert "restored at boot" in out.stdout
        yield etc, _own(lab.save(4)), _own(lab.save(6))


def test_persistence_files_are_root_owned_and_leave_user_files_alone(installed):
    etc, _, _ = installed
    upper = os.path.join(etc, "upper")
    for rel in (SCRIPT, UNIT):
        st = os.lstat(os.path.join(upper, rel))
        assert stat.S_ISREG(st.st_mode) and st.st_uid == 0
        assert not st.st_mode & (stat.S_IWGRP | stat.S_IWOTH), rel
    st = os.lstat(os.path.join(upper, "claw-cage"))
    assert st.st_uid == 0 and not st.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
    assert os.readlink(os.path.join(upper, WANTS)) == "/etc/" + UNIT
    assert _exec_start(upper) == ["/bin/bash", "/etc/" + SCRIPT]
    # after nftables.service (its `flush ruleset` would wipe rules loaded earlier), before
    # docker.service
    unit = configparser.ConfigParser(interpolation=None, strict=False)
    unit.read(os.path.join(upper, UNIT))
    assert "nftables.service" in unit["Unit"]["After"].split()
    assert "docker.service" in unit["Unit"]["Before"].split()
    with open(os.path.join(upper, "iptables", "rules.v4")) as f:
        assert f.read() == USER_RULES_V4
    # nothing else under /etc was written: no snapshot of Docker's rules anywhere
    written = sorted(os.path.relpath(os.path.join(d, n), upper)
                     for d, dirs, files in os.walk(upper) for n in files)
    assert written == sorted([SCRIPT, UNIT, WANTS, "iptables/rules.v4"])


def _tailscaled(lab):
    fwlab.tailscale(lambda argv, input=None: lab.exec(lab.host, argv, input=input),
                    lab.backend, lab.ip6tables)


@pytest.mark.parametrize("order", ["rules-docker-tailscale", "docker-tailscale-rules"])
def test_reboot_restores_the_cage(installed, order):
    """Both boot orders, with Tailscale's ts-forward ACCEPT at FORWARD 1 (tailscaled starts
    after dockerd): the cage holds either way."""
    etc, own4, own6 = installed
    upper = os.path.join(etc, "upper")
    with Lab(docker=False, docker_return=True) as lab:   # power-on: empty firewall
        assert not _own(lab.save(4))
        if order == "docker-tailscale-rules":
            lab.dockerd_start()
            _tailscaled(lab)
        netlab.ok(lab.run_program(_exec_start(upper), etc_overlay=etc))
        if order == "rules-docker-tailscale":
            lab.dockerd_start()
            _tailscaled(lab)
        assert "-A FORWARD -j ts-forward" in lab.save(4).splitlines()
        assert _own(lab.save(4)) == own4
        assert _own(lab.save(6)) == own6
        _verdicts(lab)
        allowed = [netlab.Probe("allowed", lab.ctr, "tcp", "192.168.1.1", 8081)]
        reached = lab.probe(allowed, retry=allowed)
        assert all(reached.values()), "the --allow entry did not survive the reboot"
        lab.dockerd_start()   # a later Docker restart keeps it all
        assert _own(lab.save(4)) == own4
        # and the boot step is itself idempotent (a unit restarted by hand): the first re-run
        # may only put claw-cage's INPUT jump back above ts-input, the next changes nothing
        netlab.ok(lab.run_program(_exec_start(upper), etc_overlay=etc))
        before = lab.save(4), lab.save(6)
        netlab.ok(lab.run_program(_exec_start(upper), etc_overlay=etc))
        assert (lab.save(4), lab.save(6)) == before


def test_remove_takes_out_persistence_too_and_is_safe_twice(pyz, installed):
    etc, _, _ = installed
    upper = os.path.join(etc, "upper")
    with Lab() as lab:
        netlab.ok(lab.firewall(pyz, "--remove", etc_overlay=etc))
        for rel in (SCRIPT, UNIT, WANTS):
            path = os.path.join(upper, rel)
            # overlayfs records a deletion of a lower file as a whiteout; here the files only
            # ever existed in the upper layer, so they are simply gone
            assert not os.path.lexists(path), rel
        assert not os.path.lexists(os.path.join(upper, "claw-cage"))
        with open(os.path.join(upper, "iptables", "rules.v4")) as f:
            assert f.read() == USER_RULES_V4
        again = netlab.ok(lab.firewall(pyz, "--remove", etc_overlay=etc))
        assert "nothing to remove" in again.stdout


def test_no_persist_writes_nothing_under_etc(pyz, tmp_path):
    etc = str(tmp_path / "etc")
    with Lab() as lab:
        netlab.ok(lab.firewall(pyz, "--no-persist", etc_overlay=etc))
        assert os.listdir(os.path.join(etc, "upper")) == []
        assert _own(lab.save(4))


def test_refuses_an_etc_claw_cage_that_others_can_write(pyz, tmp_path):
    """Boot runs what is in /etc/claw-cage as root: a group/world-writable one is refused."""
    etc = str(tmp_path / "etc")
    os.makedirs(os.path.join(etc, "upper", "claw-cage"))
    os.chmod(os.path.join(etc, "upper", "claw-cage"), 0o777)
    with Lab() as lab:
        before = lab.save(4), lab.save(6)
        proc = lab.firewall(pyz, etc_overlay=etc)
        assert proc.returncode == 6, proc.stderr
        assert "/etc/claw-cage" in proc.stderr and proc.stderr.count("\n") == 1
        assert (lab.save(4), lab.save(6)) == before
        assert os.listdir(os.path.join(etc, "upper", "claw-cage")) == []
