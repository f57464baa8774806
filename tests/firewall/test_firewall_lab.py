"""--firewall proven with packets, in a namespace lab that looks like a Docker host (netlab.py).

Every "blocked" verdict stands next to a control run: the same probe, from the same container
namespace, reaching its target before the rules are applied. The BUILT program runs inside the
lab's host namespace; the root namespace's firewall is never touched.
"""

import os
import shlex
import shutil
import subprocess
import sys
import tempfile

import pytest

from lab import netlab
from lab.netlab import Lab, Probe, blocked_probes, open_probes
from lab.fwlab import settled

sys.path.insert(0, os.path.join(netlab.ROOT, "bootstrap"))
from claw_cage.firewall import readback  # noqa: E402


pytestmark = pytest.mark.usefixtures("_lab_possible")


def matrix(lab, rows, should_reach=()):
    """{row: reached}, printed as a table for the log and the closing note."""
    got = lab.probe(rows, retry=should_reach)
    for row in rows:
        print("  %-7s %s" % ("REACHED" if got[row] else "blocked", row.name))
    return got


def assert_control(lab, rows):
    """Without claw-cage's rules every row reaches its target: else a block proves nothing."""
    got = matrix(lab, rows, should_reach=rows)
    failed = [r.name for r in rows if not got[r]]
    assert not failed, "control run: these targets are unreachable even WITHOUT the rules, " \
                       "so blocking them proves nothing: %s" % failed


def assert_verdicts(lab, blocked, reachable):
    got = matrix(lab, blocked + reachable, should_reach=reachable)
    leaks = [r.name for r in blocked if got[r]]
    broken = [r.name for r in reachable if not got[r]]
    assert not leaks, "reached although the firewall must block them: %s" % leaks
    assert not broken, "blocked although they must stay reachable: %s" % broken


@pytest.mark.parametrize("docker_return", [False, True], ids=["docker-29", "docker-28.2.1"])
def test_packet_matrix(pyz, docker_return):
    with Lab(docker_return=docker_return) as lab:
        blocked, reachable = blocked_probes(lab), open_probes(lab)
        assert_control(lab, blocked + reachable)
        netlab.ok(lab.firewall(pyz, "--no-persist"))
        assert_verdicts(lab, blocked, reachable)


def test_allow_list_opens_exactly_that_port(pyz):
    with Lab() as lab:
        c = lab.ctr
        allowed = [Probe("192.168.1.1:8080 allowed", c, "tcp", "192.168.1.1", 8080),
                   Probe("host:8081 allowed", c, "tcp", "172.30.0.1", 8081),
                   Probe("[fd00:1::5]:8080 allowed", c, "tcp", netlab.LAN_V6, 8080),
                   Probe("10.1.2.3 any port (10.1.2.0/25)", c, "tcp", "10.1.2.3", 8081),
                   Probe("10.1.2.3 udp (10.1.2.0/25)", c, "udp", "10.1.2.3", 8053)]
        others = [Probe("192.168.1.1:8081 other port", c, "tcp", "192.168.1.1", 8081),
                  Probe("192.168.1.1 udp 8053 other port", c, "udp", "192.168.1.1", 8053),
                  Probe("host:8080 other port", c, "tcp", "172.30.0.1", 8080),
                  Probe("host udp 8053 other port", c, "udp", "172.30.0.1", 8053),
                  Probe("[fd00:1::5]:8081 other port", c, "tcp", netlab.LAN_V6, 8081),
                  Probe("169.254.169.254 still blocked", c, "tcp", "169.254.169.254", 8080)]
        assert_control(lab, allowed + others)
        netlab.ok(lab.firewall(pyz, "--no-persist", "--allow", "192.168.1.1:8080", "--allow",
                         "host:8081", "--allow", "[fd00:1::5]:8080", "--allow", "10.1.2.0/25"))
        # (a /25: with a /24 the list would open 257 LAN addresses, refused without
        # --unsafe-wide-allow since issue 17)
        assert_verdicts(lab, others, allowed)


def test_local_only_blocks_the_internet_too(pyz):
    with Lab() as lab:
        c = lab.ctr
        wan = [Probe("internet tcp", c, "tcp", netlab.WAN_V4, 8080),
               Probe("internet udp", c, "udp", netlab.WAN_V4, 8053)]
        keep = [Probe("192.168.1.1:8080 allowed", c, "tcp", "192.168.1.1", 8080)]
        keep += [r for r in open_probes(lab) if "internet" not in r.name]
        assert_control(lab, wan + keep)
        netlab.ok(lab.firewall(pyz, "--no-persist", "--profile", "local-only",
                         "--allow", "192.168.1.1:8080"))
        assert_verdicts(lab, wan + [r for r in blocked_probes(lab) if "udp" in r.name], keep)


def test_legacy_backend_where_docker_chains_are(pyz):
    """dockerd wrote its chains with iptables-legacy: rules written with nf_tables would never
    be jumped to, so the program must find and use the legacy flavour."""
    if not shutil.which("iptables-legacy"):
        pytest.skip("no iptables-legacy on this host")
    with Lab(backend="iptables-legacy") as lab:
        rows = [r for r in blocked_probes(lab) if not r.name.startswith("IPv6")][:6]
        assert_control(lab, rows + open_probes(lab))
        netlab.ok(lab.firewall(pyz, "--no-persist"))
        assert lab.exec(lab.host, ["iptables-legacy", "-S", "CLAW-CAGE-FWD"]).stdout
        nft = lab.exec(lab.host, ["iptables-nft", "-S"], check=False).stdout
        assert "CLAW-CAGE" not in nft
        assert_verdicts(lab, rows, open_probes(lab))


def test_twenty_runs_change_nothing_and_remove_restores_exactly(pyz):
    with Lab(docker_return=True) as lab:
        lab.add_user_rules()
        before = (lab.save(4), lab.save(6))
        netlab.ok(lab.firewall(pyz, "--no-persist"))
        first = (lab.save(4), lab.save(6))
        assert first != before
        assert "-A DOCKER-USER -i lan0 -p tcp -m tcp --dport 9999 -j DROP" in first[0]
        for run in range(20):
            netlab.ok(lab.firewall(pyz, "--no-persist"))
            assert (lab.save(4), lab.save(6)) == first, "run %d changed iptables-save" % (run + 2)
        for family in (4, 6):
            tables = readback.parse_tables(lab.save(family))
            for table, parent, own in (("mangle", "PREROUTING", "PRE"), ("mangle", "INPUT", "ROUTES"),
                                       ("filter", "DOCKER-USER", "FWD"), ("filter", "INPUT", "IN")):
                lines = ["-A %s %s" % (parent, l) for l in tables[table][parent]]
                assert lines[0].endswith("-j CLAW-CAGE-" + own)
                assert sum("CLAW-CAGE" in l for l in lines) == 1
        # a Docker restart (dockerd re-inserts FORWARD's jump, keeps DOCKER-USER) keeps the cage
        lab.dockerd_start()
        assert (lab.save(4), lab.save(6)) == first
        netlab.ok(lab.firewall(pyz, "--remove"))
        # the mangle table the cage created stays, empty: the kernel cannot unload it
        assert (settled(lab.save(4)), settled(lab.save(6))) == (settled(before[0]),
                                                                settled(before[1]))
        after = (lab.save(4), lab.save(6))
        again = netlab.ok(lab.firewall(pyz, "--remove"))
        assert "nothing to remove" in again.stdout
        assert (lab.save(4), lab.save(6)) == after


def test_moved_jump_is_put_back_first_and_once(pyz):
    """Something (Tailscale, a user) inserted its rule above ours, and a stray copy exists."""
    with Lab() as lab:
        netlab.ok(lab.firewall(pyz, "--no-persist"))
        good = lab.save()
        lab.sh(lab.host, "iptables -I DOCKER-USER 1 -i lan0 -j RETURN; "
                         "iptables -A DOCKER-USER -i claw-cage0 -j CLAW-CAGE-FWD")
        netlab.ok(lab.firewall(pyz, "--no-persist"))
        lines = [l for l in lab.save().splitlines() if l.startswith("-A DOCKER-USER")]
        assert lines == ["-A DOCKER-USER -i claw-cage0 -j CLAW-CAGE-FWD",
                         "-A DOCKER-USER -i lan0 -j RETURN"]
        assert good != lab.save()


def test_firewall_before_docker_starts(pyz):
    """Seed 000's order: --firewall, then `docker compose up` starts dockerd's chains."""
    with Lab(docker=False, docker_return=True) as lab:
        rows = blocked_probes(lab)
        netlab.ok(lab.firewall(pyz, "--no-persist"))
        lab.dockerd_start()
        assert_verdicts(lab, rows, open_probes(lab))


def test_dry_run_prints_exactly_what_a_run_does_and_changes_nothing(pyz, tmp_path):
    with Lab() as lab:
        lab.add_user_rules()
        before = (lab.save(4), lab.save(6))
        etc = str(tmp_path / "etc")
        dry = netlab.ok(lab.firewall(pyz, "--dry-run", etc_overlay=etc))
        assert (lab.save(4), lab.save(6)) == before
        assert os.listdir(os.path.join(etc, "upper")) == [], "dry run wrote into /etc"
        assert "/etc/systemd/system/claw-cage-firewall.service" in dry.stdout
        # the printed commands, run by hand, give exactly what a real run gives
        for argv, stdin in _commands(dry.stdout):
            assert argv[0].startswith(("iptables", "ip6tables")), argv
            lab.exec(lab.host, argv, input=stdin)
        by_hand = (lab.save(4), lab.save(6))
        assert by_hand != before
        netlab.ok(lab.firewall(pyz, "--no-persist"))
        assert (lab.save(4), lab.save(6)) == by_hand
        dry_remove = netlab.ok(lab.firewall(pyz, "--remove", "--dry-run"))
        assert "-X CLAW-CAGE-FWD" in dry_remove.stdout
        assert (lab.save(4), lab.save(6)) == by_hand


def _commands(text):
    """($ argv, heredoc stdin) pairs from --dry-run output."""
    lines, out, i = text.splitlines(), [], 0
    while i < len(lines):
        line = lines[i]
        i += 1
        if not line.startswith("$ "):
            continue
        stdin = None
        if line.endswith("<<'EOF'"):
            line = line[:-len("<<'EOF'")]
            body = []
            while lines[i] != "EOF":
                body.append(lines[i])
                i += 1
            i += 1
            stdin = "\n".join(body) + "\n"
        out.append((shlex.split(line[2:]), stdin))
    return out


def test_not_root_refuses_in_one_line_and_changes_nothing(pyz):
    python = "/usr/bin/python3"
    if not os.access(python, os.X_OK):
        pytest.skip("needs a system python3 that an unprivileged user can run")
    shared = tempfile.mkdtemp(prefix="claw-cage-nonroot-")   # pytest's tmp is root-only
    try:
        os.chmod(shared, 0o755)
        copy = os.path.join(shared, "claw-cage.pyz")
        shutil.copy(pyz, copy)
        os.chmod(copy, 0o644)
        _not_root(python, copy)
    finally:
        shutil.rmtree(shared)


def _not_root(python, copy):
    with Lab() as lab:
        before = (lab.save(4), lab.save(6))
        proc = lab.run_program([python, copy, "--firewall", "--dir", lab.compose_dir],
                               user=65534)
        assert proc.returncode == 3, proc.stderr
        assert proc.stdout == ""
        assert proc.stderr.count("\n") == 1 and "run it with sudo" in proc.stderr, proc.stderr
        assert (lab.save(4), lab.save(6)) == before


@pytest.mark.parametrize("spec", ["nonsense", "192.168.1.5/24", "host", "10.0.0.1:70000",
                                  "example.com:443"])
def test_bad_allow_is_one_line_and_changes_nothing(pyz, spec):
    with Lab() as lab:
        before = (lab.save(4), lab.save(6))
        proc = lab.firewall(pyz, "--allow", spec)
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.count("\n") == 1 and spec in proc.stderr, proc.stderr
        assert (lab.save(4), lab.save(6)) == before


def test_dockers_nftables_backend_is_caged_through_forward(pyz, tmp_path):
    """Docker 29's nftables backend makes no DOCKER-USER (claw-cage 0.1 refused to run): the
    second anchor hangs off FORWARD itself, and nothing creates a DOCKER-USER nobody jumps to.
    The engine here is not Docker 29, so `docker info` cannot say it: daemon.json does."""
    with Lab(docker=False) as lab:
        etc = tmp_path / "etc"
        (etc / "upper" / "docker").mkdir(parents=True)
        (etc / "upper" / "docker" / "daemon.json").write_text(
            '{"firewall-backend": "nftables", "log-driver": "json-file"}')
        proc = netlab.ok(lab.firewall(pyz, "--no-persist", etc_overlay=str(etc)))
        assert "FORWARD" in proc.stdout
        for family in (4, 6):
            saved = lab.save(family)
            assert "-A FORWARD -i claw-cage0 -j CLAW-CAGE-FWD" in saved.splitlines()
            assert "-A PREROUTING -i claw-cage0 -j CLAW-CAGE-PRE" in saved.splitlines()
            assert "DOCKER-USER" not in saved
        assert sorted(os.listdir(str(etc / "upper"))) == ["docker"]


def test_no_iptables_and_no_apt_get_names_the_package(pyz):
    """iptables and apt-get hidden in a private mount namespace: the program must say which
    package to install, exit 3, and change nothing."""
    with Lab() as lab:
        hide = ("mount --make-rprivate / && mount -t tmpfs none /usr/sbin && "
                "mount -t tmpfs none /usr/local/sbin && mount --bind /dev/null /usr/bin/apt-get "
                "&& exec \"$@\"")
        if not os.path.exists("/usr/bin/apt-get"):
            hide = hide.replace("&& mount --bind /dev/null /usr/bin/apt-get ", "")
        argv = ["ip", "netns", "exec", lab.host, "unshare", "-m", "sh", "-c", hide, "sh",
                netlab.PY, pyz, "--firewall", "--dir", lab.compose_dir]
        proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              universal_newlines=True, timeout=60)
        assert proc.returncode == 3, proc.stderr
        assert "'iptables'" in proc.stderr and "no apt-get" in proc.stderr, proc.stderr
        assert proc.stderr.count("\n") == 1


def test_apt_get_failing_to_install_iptables_exits_3(pyz, tmp_path):
    """iptables hidden, apt-get a stand-in that fails as it does offline: a prerequisite is
    still missing, exit 3 and one line (was exit 6, the firewall's)."""
    apt = tmp_path / "apt-get"
    apt.write_text('#!/bin/sh\n[ "$1" = update ] && { echo "E: Failed to fetch '
                   'http://deb.debian.org/debian/dists/bookworm/InRelease  Temporary failure '
                   'resolving \'deb.debian.org\'" >&2; exit 100; }\n'
                   'echo "E: Unable to locate package iptables" >&2\nexit 100\n')
    apt.chmod(0o755)
    with Lab() as lab:
        hide = ("mount --make-rprivate / && mount -t tmpfs none /usr/sbin && "
                "mount -t tmpfs none /usr/local/sbin && touch /usr/local/sbin/apt-get && "
                "mount --bind %s /usr/local/sbin/apt-get && exec \"$@\"" % apt)
        argv = ["ip", "netns", "exec", lab.host, "unshare", "-m", "sh", "-c", hide, "sh",
                netlab.PY, pyz, "--firewall", "--dir", lab.compose_dir]
        proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              universal_newlines=True, timeout=60,
                              env=dict(os.environ, PATH="/usr/local/sbin:" + os.environ["PATH"]))
        assert proc.returncode == 3, proc.stderr
        assert proc.stderr.count("\n") == 1, proc.stderr
        assert "could not install 'iptables'" in proc.stderr and "apt-get update" in proc.stderr


def test_custom_bridge_name_from_the_installed_compose_file(pyz, tmp_path):
    """The jump matches the bridge named in the installed docker-compose.yml, not a default."""
    with Lab() as lab:
        d = tmp_path / "inst"
        d.mkdir()
        text = open(os.path.join(lab.compose_dir, "docker-compose.yml")).read()
        (d / "docker-compose.yml").write_text(text.replace("claw-cage0", "cc-custom0")
                                              .replace("172.30.0.0/24", "172.31.9.0/24"))
        netlab.ok(lab.firewall(pyz, "--no-persist", "--dir", str(d)))
        saved = lab.save()
        assert "-A DOCKER-USER -i cc-custom0 -j CLAW-CAGE-FWD" in saved
        assert "-A INPUT -i cc-custom0 -j CLAW-CAGE-IN" in saved
        assert "-d 172.31.9.0/24 -m conntrack --ctorigdst 172.31.9.0/24 -j RETURN" in saved
        assert not [l for l in saved.splitlines() if "CLAW-CAGE" in l and "claw-cage0" in l]
        # back to the default bridge: the old jumps go, the script does the same
        netlab.ok(lab.firewall(pyz, "--no-persist"))
        assert "cc-custom0" not in lab.save(4) + lab.save(6)
        after_program = lab.save(4), lab.save(6)
        netlab.ok(lab.firewall(pyz, "--no-persist", "--dir", str(d)))
        netlab.ok(lab.run_program(["bash", os.path.join(netlab.ROOT, "deploy", "iptables-rules.sh")]))
        assert (lab.save(4), lab.save(6)) == after_program
