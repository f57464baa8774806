"""Issue 17, the transaction: all or nothing across both families, for real.

A failing iptables*-save/-restore is put first on PATH (tests/lab/fwlab.py: wrappers that pass
every call to the real tool except the Nth of one name), call by call, and the kernel state is
compared with `iptables-save`/`ip6tables-save` before and after:
  a failure before the first commit      exit 6, "nothing was changed", saves identical
  a failure after the first commit       exit 6, the message says the previous rules were
                                         restored, saves identical (tables left empty by the
                                         kernel aside: fwlab.settled)
  the read-back after a good commit      exit 8 "applied, but could not be checked", the rules
                                         applied and whole
  a neighbour changing the rules between commit and read-back: the self-check sees it, exit 6,
                                         restored
  re-applying on a caged host whatever read fails: never a second jump
"""

import os
import sys

import pytest

from lab import fwlab, netlab
from lab.netlab import ROOT, Lab

sys.path.insert(0, os.path.join(ROOT, "bootstrap"))
from claw_cage.firewall import rules  # noqa: E402

pytestmark = pytest.mark.usefixtures("_lab_possible")

EXIT_FIREWALL, EXIT_UNCHECKED = 6, 8


def run_with(lab, pyz, wrappers, *args, **kw):
    argv = ["env", "PATH=%s:%s" % (wrappers, os.environ.get("PATH", "/usr/sbin:/usr/bin")),
            netlab.PY, pyz, "--firewall", "--dir", lab.compose_dir] + list(args)
    return lab.run_program(argv, **kw)


def saves(lab):
    return lab.save(4), lab.save(6)


def settled(pair):
    return tuple(fwlab.settled(t) for t in pair)


def one_line(proc):
    assert proc.stderr.count("\n") == 1, proc.stderr
    return proc.stderr


# (tool, call number, what failed): the order of calls for one --firewall on an nf_tables host
# is: iptables-nft-save, ip6tables-nft-save (read); iptables-nft-restore --test, ip6tables-...
# --test; iptables-nft-restore, ip6tables-nft-restore (commit); the two saves (read-back).
AFTER_FIRST_COMMIT = [
    ("iptables-nft-restore", 2, "the IPv4 commit itself"),
    ("ip6tables-nft-restore", 2, "the IPv6 commit, IPv4 already committed"),
]
BEFORE_ANY_COMMIT = [
    ("iptables-nft-save", 1, "reading IPv4"),
    ("ip6tables-nft-save", 1, "reading IPv6"),
    ("iptables-nft-restore", 1, "--test of IPv4"),
    ("ip6tables-nft-restore", 1, "--test of IPv6"),
]


@pytest.mark.parametrize("tool, call, what", AFTER_FIRST_COMMIT)
@pytest.mark.parametrize("caged", [False, True], ids=["fresh", "re-apply"])
def test_failure_after_the_first_commit_restores_both_families_exactly(
        pyz, tmp_path, tool, call, what, caged):
    with Lab(docker_return=True) as lab:
        lab.add_user_rules()
        if caged:   # a caged host re-applied with another allow list
            netlab.ok(lab.firewall(pyz, "--no-persist"))
        before = saves(lab)
        wrappers = fwlab.failing_tools(str(tmp_path / "bin"), tool, call)
        # host:8081 changes both families (INPUT and mangle PREROUTING of IPv4 and IPv6)
        proc = run_with(lab, pyz, wrappers, "--no-persist", "--allow", "host:8081")
        assert proc.returncode == EXIT_FIREWALL, (what, proc.stderr)
        assert "restored" in one_line(proc), proc.stderr
        assert "internal error" not in proc.stderr
        assert settled(saves(lab)) == settled(before), what
        # the IPv4 rollback ran: a whole-table restore (no -n) after the failure
        assert "iptables-nft-restore -w" in fwlab.calls(wrappers)


@pytest.mark.parametrize("tool, call, what", BEFORE_ANY_COMMIT)
def test_failure_before_any_commit_changes_nothing(pyz, tmp_path, tool, call, what):
    with Lab() as lab:
        lab.add_user_rules()
        before = saves(lab)
        wrappers = fwlab.failing_tools(str(tmp_path / "bin"), tool, call)
        proc = run_with(lab, pyz, wrappers, "--no-persist")
        assert proc.returncode == EXIT_FIREWALL, (what, proc.stderr)
        assert "nothing was changed" in one_line(proc)
        assert saves(lab) == before, what
        assert not [l for l in fwlab.calls(wrappers) if l.endswith("-restore -w -n")], \
            "a commit ran although %s failed" % what


@pytest.mark.parametrize("tool", ["iptables-nft-save", "ip6tables-nft-save"])
def test_a_failed_read_back_is_applied_but_unchecked(pyz, tmp_path, tool):
    with Lab() as lab, Lab() as reference:
        netlab.ok(reference.firewall(pyz, "--no-persist"))
        wrappers = fwlab.failing_tools(str(tmp_path / "bin"), tool, 2)
        proc = run_with(lab, pyz, wrappers, "--no-persist")
        assert proc.returncode == EXIT_UNCHECKED, proc.stderr
        assert "applied, but could not be checked" in one_line(proc)
        assert "could not be applied" not in proc.stderr
        assert "ok: firewall applied" not in proc.stdout + proc.stderr   # never an unchecked "ok"
        assert saves(lab) == saves(reference)      # applied, whole


def test_a_change_between_commit_and_read_back_is_rolled_back(pyz, tmp_path):
    """Something deletes one of the cage's DROP rules right after the IPv4 commit: the
    self-check sees the kernel does not hold the table, and both families go back."""
    with Lab() as lab:
        before = saves(lab)
        tamper = "%s -w -D CLAW-CAGE-FWD -d 10.0.0.0/8 -j DROP" % "/usr/sbin/iptables-nft"
        wrappers = fwlab.failing_tools(str(tmp_path / "bin"), "iptables-nft-restore", 2,
                                       after=tamper)
        proc = run_with(lab, pyz, wrappers, "--no-persist")
        assert proc.returncode == EXIT_FIREWALL, proc.stderr
        err = one_line(proc)
        assert "does not hold the expected rules" in err and "restored" in err
        assert settled(saves(lab)) == settled(before)


def _jumps(lab):
    """Every rule jumping into a claw-cage chain, per family: (parent, rule) lines."""
    return [[l for l in lab.save(f).splitlines() if l.startswith("-A ")
             and " -j CLAW-CAGE-" in l and not l.startswith("-A CLAW-CAGE-")] for f in (4, 6)]


@pytest.mark.parametrize("tool, call", [("iptables-nft-save", 1), ("ip6tables-nft-save", 1),
                                        ("iptables-nft-save", 2), ("ip6tables-nft-save", 2),
                                        ("iptables-nft-restore", 1),
                                        ("iptables-nft-restore", 2),
                                        ("ip6tables-nft-restore", 2)])
def test_reapplying_never_duplicates_a_jump_whatever_read_fails(pyz, tmp_path, tool, call):
    """A caged host where a neighbour inserted its rules above claw-cage's jumps (so the
    re-run has jumps to move): whichever read or write fails, every jump exists once."""
    with Lab() as lab:
        netlab.ok(lab.firewall(pyz, "--no-persist"))
        for ipt in (lab.backend, lab.ip6tables):
            lab.sh(lab.host, "%s -w -I INPUT 1 -i lan0 -j RETURN; %s -w -I DOCKER-USER 1 -i lan0 "
                             "-j RETURN; %s -w -t mangle -I PREROUTING 1 -i lan0 -j RETURN"
                   % (ipt, ipt, ipt))
        moved = saves(lab)
        wrappers = fwlab.failing_tools(str(tmp_path / "bin"), tool, call)
        proc = run_with(lab, pyz, wrappers, "--no-persist")
        assert proc.returncode in (EXIT_FIREWALL, EXIT_UNCHECKED), proc.stderr
        once = [sorted(set(j)) for j in _jumps(lab)]
        for family, found in zip((4, 6), _jumps(lab)):
            assert len(found) == len(set(found)) == len(rules.jumps(rules.default_config())), \
                (family, found)
        if proc.returncode == EXIT_FIREWALL:
            assert settled(saves(lab)) == settled(moved)     # nothing, or rolled back
        netlab.ok(lab.firewall(pyz, "--no-persist"))      # and a clean run after it
        for parent in ("PREROUTING", "DOCKER-USER", "INPUT"):
            for family in (4, 6):
                lines = [l for l in lab.save(family).splitlines() if l.startswith("-A " + parent)]
                assert " -j CLAW-CAGE-" in lines[0], lines
        assert [sorted(set(j)) for j in _jumps(lab)] == once


def test_persistence_failing_after_the_commit_rolls_back_rules_and_files(pyz, tmp_path):
    """The boot unit cannot be enabled (its wants link is taken by a directory): the rules
    already committed go back, and so do the persistence files already written."""
    with Lab() as lab:
        lab.add_user_rules()
        before = saves(lab)
        etc = tmp_path / "etc"
        blocker = etc / "upper" / "systemd" / "system" / "multi-user.target.wants" / \
            "claw-cage-firewall.service"
        blocker.mkdir(parents=True)
        (blocker / "keep").write_text("x")
        proc = lab.firewall(pyz, etc_overlay=str(etc))
        assert proc.returncode == EXIT_FIREWALL, proc.stderr
        err = one_line(proc)
        assert "restored" in err and "persistence" in err
        assert "firewall applied" not in proc.stdout   # no "ok" before the rollback
        assert settled(saves(lab)) == settled(before)
        upper = etc / "upper"
        assert not (upper / "claw-cage" / "firewall.sh").exists()
        assert not (upper / "systemd" / "system" / "claw-cage-firewall.service").exists()


@pytest.mark.skipif(not os.path.exists("/usr/sbin/iptables-legacy"), reason="no iptables-legacy")
def test_rollback_on_the_legacy_backend(pyz, tmp_path):
    """iptables-legacy commits table by table: a failed IPv6 run after the IPv4 commit still
    leaves both families exactly as they were."""
    with Lab(backend="iptables-legacy", docker_return=True) as lab:
        lab.add_user_rules()
        before = saves(lab)
        wrappers = fwlab.failing_tools(str(tmp_path / "bin"), "ip6tables-legacy-restore", 2)
        proc = run_with(lab, pyz, wrappers, "--no-persist")
        assert proc.returncode == EXIT_FIREWALL, proc.stderr
        assert "restored" in one_line(proc)
        assert settled(saves(lab)) == settled(before)
