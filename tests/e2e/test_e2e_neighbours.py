"""Issue 10 on the real Docker engine: the e2e matrix holds with a neighbour in the firewall.

Same deployment as tests/e2e/test_e2e_docker.py (the `stack` fixture of tests/lab/stack.py:
install, --firewall --no-persist, the stack up, a LAN peer, a WAN peer, host services, the
egress guard), then:
  - Tailscale-style ts-forward / ts-input chains jumped to at FORWARD 1 and INPUT 1, accepting
    what goes to (comes from) the LAN peer's link - tailscale0 stands in for it;
  - DOCKER-USER flushed, as ufw-docker's `ufw reload` does (the egress guard's own jump is put
    back at once: it keeps every probe on this machine, see e2e_support.EgressGuard).
For each: the matrix from inside the container (LAN host blocked, WAN host reached, the host's
services blocked), with controls: without claw-cage's rules the neighbour's host reaches
everything, and with only the filter layer (claw-cage 0.1's design: the first anchor deleted)
the neighbour opens the LAN. Packets go only to 127.0.0.0/8 and namespaces the test made.
"""

import os

import pytest

from lab import e2e_support as e2e
from lab import fwlab
from lab.e2e_support import sh
from lab.stack import stack, standin  # noqa: F401 (fixtures)

PRE_JUMP = ["PREROUTING", "-i", e2e.BRIDGE, "-j", "CLAW-CAGE-PRE"]


def _run(argv, input=None):
    return sh(argv, input=input, timeout=60)


def _refuse_if_present(chains):
    present = [c for c in chains if sh(["iptables", "-w", "10", "-S", c], check=False)
               .returncode == 0]
    if present:
        pytest.skip("E2E NEIGHBOUR TEST NOT RUN: this machine already has %s (a real "
                    "Tailscale?): the test will not touch it" % present)


def _matrices(stack, label):
    """{column: matrix}: claw-cage applied; first anchor deleted (filter layer alone); no
    claw-cage rules at all. The cage is re-applied afterwards whatever happens."""
    out = {"claw-cage": stack.matrix()}
    try:
        for ipt in ("iptables", "ip6tables"):
            sh([ipt, "-w", "10", "-t", "mangle", "-D"] + PRE_JUMP)
        out["filter layer alone"] = stack.matrix()
        stack.firewall_off()
        out["no rules"] = stack.matrix()
    finally:
        stack.firewall_on()
    rows = ["%-44s %-12s %-20s %s" % ("from the container to (%s)" % label, "claw-cage",
                                       "filter layer alone", "no rules")]
    for name in out["claw-cage"]:
        rows.append("%-44s %-12s %-20s %s" % (name, *("reached" if out[c][name] else "blocked"
                                                      for c in ("claw-cage", "filter layer alone",
                                                                "no rules"))))
    return out, "\n".join(rows)


def _check(out, table):
    expected = {name: name.startswith("WAN") for name in out["claw-cage"]}
    assert out["claw-cage"] == expected, table
    assert all(out["no rules"].values()), "control: without the rules all must be reached\n" \
        + table
    lan = [n for n in out["claw-cage"] if n.startswith("LAN")]
    assert all(out["filter layer alone"][n] for n in lan), \
        "control: the neighbour must open a filter-only cage, or this proves nothing\n" + table


def test_matrix_holds_with_tailscale_at_forward_1(stack):
    stack.ensure_up()
    _refuse_if_present(["ts-forward", "ts-input"])
    try:
        fwlab.tailscale(_run, "iptables", "ip6tables", via=stack.lan.host_if)
        first = sh(["iptables", "-w", "10", "-S", "FORWARD"]).stdout.splitlines()[1]
        assert first == "-A FORWARD -j ts-forward", first
        out, table = _matrices(stack, "Tailscale at FORWARD 1")
        # firewall_on() re-applied the cage: ts-forward stays first in FORWARD (claw-cage
        # never reorders others' chains), and the cage holds all the same
        again = stack.matrix()
    finally:
        fwlab.tailscale_undo(_run, "iptables", "ip6tables")
    e2e.write_output("e2e-neighbour-tailscale.txt", table + "\n")
    _check(out, table)
    assert again == out["claw-cage"], table


def _docker_user():
    """{tool: rules} of DOCKER-USER now, as `-S` prints them."""
    return {ipt: [l for l in sh([ipt, "-w", "10", "-S", "DOCKER-USER"]).stdout.splitlines()
                  if l.startswith("-A ")] for ipt in ("iptables", "ip6tables")}


def _flush_docker_user():
    """What `ufw reload` with ufw-docker does to DOCKER-USER, the egress guard kept."""
    for ipt in ("iptables", "ip6tables"):
        sh([ipt, "-w", "10", "-F", "DOCKER-USER"])
    sh(["iptables", "-w", "10", "-I", "DOCKER-USER", "1"] + e2e.EgressGuard.JUMP)


def _put_back(before):
    """After the cage is re-applied: Docker's own rules of DOCKER-USER (its trailing RETURN up to
    28.2.1) appended again in their order, so the machine ends as it began."""
    now = _docker_user()
    for ipt, rules in before.items():
        for rule in rules:
            if rule not in now[ipt]:
                sh([ipt, "-w", "10"] + rule.split())


def test_matrix_holds_after_a_docker_user_flush(stack):
    stack.ensure_up()
    before = _docker_user()
    try:
        _flush_docker_user()
        caged = stack.matrix()
        for ipt in ("iptables", "ip6tables"):
            sh([ipt, "-w", "10", "-t", "mangle", "-D"] + PRE_JUMP)
        alone = stack.matrix()          # neither anchor left for forwarded traffic: LAN open
    finally:
        stack.firewall_on()
        _put_back(before)
    assert _docker_user() == before
    again = stack.matrix()
    rows = ["%-44s %-22s %-30s %s" % ("from the container to", "DOCKER-USER flushed",
                                       "flushed, first anchor deleted", "re-applied")]
    for name in caged:
        rows.append("%-44s %-22s %-30s %s" % (name, *("reached" if m[name] else "blocked"
                                                      for m in (caged, alone, again))))
    table = "\n".join(rows)
    e2e.write_output("e2e-neighbour-docker-user-flush.txt", table + "\n")
    expected = {name: name.startswith("WAN") for name in caged}
    assert caged == expected, table
    assert again == expected, table
    assert all(alone[n] for n in caged if n.startswith("LAN")), \
        "control: with the flush and no first anchor the LAN must be open\n" + table
    # the host's own services stay closed in every column: INPUT's jump was never flushed
    assert not any(alone[n] for n in caged if n.startswith("host")), table


def test_no_neighbour_leftovers():
    """The chains the neighbour tests made are gone again (the module's cleanup compares the
    whole iptables-save with the one from before as well)."""
    for chain in ("ts-forward", "ts-input"):
        assert sh(["iptables", "-w", "10", "-S", chain], check=False).returncode != 0
    assert os.path.isdir(e2e.E2E_DIR)
