"""A Ctrl-C between the IPv4 and the IPv6 commit rolls back like any other failure.

The BUILT program runs in the namespace lab (netlab.py) on a caged host, re-applied with an
allow list that opens the LAN address 192.168.1.1:8080 (and its IPv6 twin, so that both
families change). A real SIGINT reaches the program at that exact point: the only stand-in is
for timing, a wrapper ip6tables*-restore first on PATH that, on the IPv6 commit (-n, not
--test), sends SIGINT to its parent (the program) and then runs the real tool. Then:
  - exit 130, and the last line says the previous rules were restored;
  - iptables-save of both families is what it was before the run;
  - 192.168.1.1:8080 is blocked, as before the run.
Control: the same run without the interrupt opens 192.168.1.1:8080 (the probe can see the
path the allow opens).
"""

import os
import stat

import pytest

from lab import fwlab, netlab
from lab.netlab import Lab, Probe

pytestmark = pytest.mark.usefixtures("_lab_possible")

EXIT_INTERRUPTED = 130
LAN, LAN_V6 = "192.168.1.1", netlab.LAN_V6
ALLOWS = ["--allow", "%s:%d" % (LAN, netlab.TCP_PORT),
          "--allow", "[%s]:%d" % (LAN_V6, netlab.TCP_PORT)]

INTERRUPTER = """#!/bin/sh
# stand-in for timing only: on the IPv6 commit, Ctrl-C the program, then run the real tool
case " $* " in
  *" --test "*) ;;
  *" -n "*)
    if [ ! -e "%(dir)s/sent" ]; then
        : > "%(dir)s/sent"
        kill -INT "$PPID"
        sleep 0.3
    fi ;;
esac
exec %(real)s "$@"
"""


@pytest.fixture
def _lab_possible():
    netlab.require_lab()


def interrupter(directory):
    os.makedirs(directory, exist_ok=True)
    for flavour in ("", "-nft", "-legacy"):
        name = "ip6tables%s-restore" % flavour
        real = "/usr/sbin/" + name
        if not os.path.exists(real):
            continue
        path = os.path.join(directory, name)
        with open(path, "w") as f:
            f.write(INTERRUPTER % {"dir": directory, "real": real})
        os.chmod(path, stat.S_IRWXU | stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH)
    return directory


def run_with(lab, pyz, wrappers, *args):
    argv = ["env", "PATH=%s:%s" % (wrappers, os.environ.get("PATH", "/usr/sbin:/usr/bin")),
            netlab.PY, pyz, "--firewall", "--dir", lab.compose_dir] + list(args)
    return lab.run_program(argv)


def saves(lab):
    return fwlab.settled(lab.save(4)), fwlab.settled(lab.save(6))


def test_ctrl_c_between_the_commits_rolls_back(pyz, tmp_path):
    with Lab() as lab:
        lan = Probe("LAN %s:%d" % (LAN, netlab.TCP_PORT), lab.ctr, "tcp", LAN, netlab.TCP_PORT)
        netlab.ok(lab.firewall(pyz, "--no-persist"))
        assert not lab.probe([lan])[lan], "the cage does not block the LAN to begin with"
        before = saves(lab)
        wrappers = interrupter(str(tmp_path / "bin"))
        proc = run_with(lab, pyz, wrappers, "--no-persist", *ALLOWS)
        print(proc.returncode, proc.stdout, proc.stderr)
        assert os.path.exists(os.path.join(wrappers, "sent")), "the IPv6 commit never ran"
        # packets first: they decide
        assert not lab.probe([lan])[lan], "LAN reachable after an interrupted run"
        assert saves(lab) == before, "the interrupted run left rules changed"
        last = proc.stderr.strip().splitlines()[-1]
        assert proc.returncode == EXIT_INTERRUPTED, (proc.returncode, proc.stderr)
        assert "interrupted" in last and "IPv4 and IPv6 rules were restored" in last, last
        assert "nothing was left half-done" not in proc.stderr
        # control: the same allow list, not interrupted, opens exactly that path
        netlab.ok(lab.firewall(pyz, "--no-persist", *ALLOWS))
        assert lab.probe([lan], retry=[lan])[lan], "control: the allow did not open the LAN path"
