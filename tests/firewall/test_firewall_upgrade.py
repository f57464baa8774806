"""Upgrade from claw-cage 0.1's layout (CLAW-CAGE-FWD/CLAW-CAGE-IN in filter only, its boot
script and unit: tests/firewall/data/) to the two anchors, with no moment without a cage.

While --firewall rewrites the rules, a bounded loop in the container keeps knocking on LAN
targets and the host (TCP, 50 ms each); not one may get through, before, during or after. The
order that makes this hold: one restore per family, mangle (the new first anchor) committed
before the filter chains are rewritten in place (each table atomically: legacy commits table by
table, nf_tables the whole input), and the boot files replaced by rename.
"""

import os
import subprocess
import time

import pytest

from lab import netlab
from lab.netlab import Lab, blocked_probes, open_probes

pytestmark = pytest.mark.usefixtures("_lab_possible")

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")
OLD_SCRIPT = os.path.join(DATA, "iptables-rules-0.1.sh")
OLD_UNIT = os.path.join(DATA, "claw-cage-firewall-0.1.service")

KNOCK = r'''
import socket, sys, time
end = time.monotonic() + float(sys.argv[1])
targets = [("10.1.2.3", 8080), ("192.168.1.1", 8080), ("100.100.100.100", 8080),
           ("172.30.0.1", 8080), ("10.255.0.1", 8080)]
tries, hits = 0, []
print("start", flush=True)
while time.monotonic() < end:
    for addr in targets:
        s = socket.socket()
        s.settimeout(0.05)
        tries += 1
        try:
            s.connect(addr)
            hits.append(addr[0])
        except OSError:
            pass
        s.close()
print(tries, " ".join(hits))
'''


@pytest.mark.parametrize("backend", ["iptables-nft", "iptables-legacy"])
def test_upgrade_from_0_1_never_opens_the_cage(pyz, tmp_path, backend):
    etc = tmp_path / "etc"
    upper = etc / "upper"
    (upper / "claw-cage").mkdir(parents=True)
    (upper / "systemd" / "system" / "multi-user.target.wants").mkdir(parents=True)
    with open(OLD_SCRIPT) as f:
        old = f.read().replace("IPTABLES=iptables\n", "IPTABLES=%s\n" % backend).replace(
            "IP6TABLES=ip6tables\n", "IP6TABLES=%s\n" % backend.replace("ip", "ip6", 1))
    (upper / "claw-cage" / "firewall.sh").write_text(old)
    (upper / "systemd" / "system" / "claw-cage-firewall.service").write_text(open(OLD_UNIT).read())
    os.symlink("/etc/systemd/system/claw-cage-firewall.service",
               str(upper / "systemd" / "system" / "multi-user.target.wants" /
                   "claw-cage-firewall.service"))
    with Lab(backend=backend, docker_return=True) as lab:
        netlab.ok(lab.run_program(["bash", "/etc/claw-cage/firewall.sh"], etc_overlay=str(etc)))
        assert "CLAW-CAGE-PRE" not in lab.save(4) and "CLAW-CAGE-FWD" in lab.save(4)
        knock = subprocess.Popen(["ip", "netns", "exec", lab.ctr, netlab.PY, "-c", KNOCK, "8"],
                                 stdout=subprocess.PIPE, universal_newlines=True)
        try:
            assert knock.stdout.readline().strip() == "start"
            time.sleep(0.5)
            started = time.monotonic()
            netlab.ok(lab.firewall(pyz, etc_overlay=str(etc)))
            took = time.monotonic() - started
            out, _ = knock.communicate(timeout=30)
        finally:
            if knock.poll() is None:
                knock.kill()
        tries, *hits = out.split()
        assert not hits, "reached during the upgrade: %s" % hits
        # the loop overlapped the upgrade (8 s of knocking, started 0.5 s before it; the run
        # asks Docker Compose for the network, slow on a loaded machine)
        assert int(tries) > 20 and took < 7.5, (tries, took)
        # the new layout, whole: both anchors, each jump once; the new boot files
        for family in (4, 6):
            saved = lab.save(family).splitlines()
            for line in ("-A PREROUTING -i claw-cage0 -j CLAW-CAGE-PRE",
                         "-A DOCKER-USER -i claw-cage0 -j CLAW-CAGE-FWD",
                         "-A INPUT -i claw-cage0 -j CLAW-CAGE-IN"):
                assert saved.count(line) == 1, (family, line)
        assert "CLAW-CAGE-PRE" in (upper / "claw-cage" / "firewall.sh").read_text()
        assert "nftables.service" in \
            (upper / "systemd" / "system" / "claw-cage-firewall.service").read_text()
        got = lab.probe(blocked_probes(lab) + open_probes(lab), retry=open_probes(lab))
        assert not [p.name for p in blocked_probes(lab) if got[p]]
        assert all(got[p] for p in open_probes(lab))
