"""The Proxmox firewall-file parser the --proxmox tests rely on, checked against every example
form of the document it was written from (pve_docs_examples.txt), and against lines it must
refuse."""

import os

import pytest

import pvefw_grammar as grammar

HERE = os.path.dirname(os.path.abspath(__file__))


def example_blocks():
    """[(env, name, text)] of pve_docs_examples.txt, split at its "=== ENV NAME" lines."""
    with open(os.path.join(HERE, "pve_docs_examples.txt")) as f:
        text = f.read()
    blocks, current = [], None
    for line in text.splitlines():
        if line.startswith("=== "):
            _, env, name = line.split()
            current = [env, name, []]
            blocks.append(current)
        elif current is not None:
            current[2].append(line)
    return [(env, name, "\n".join(lines) + "\n") for env, name, lines in blocks]


def test_every_example_of_the_document_parses():
    parsed = {name: grammar.parse(text, env) for env, name, text in example_blocks()}
    assert set(parsed) == {"cluster.fw", "100.fw", "vnet0.fw"}
    vm = parsed["100.fw"]
    assert len(vm.rules) == 14 and sum(not r["enabled"] for r in vm.rules) == 1
    assert vm.rules[0]["macro"] == "SSH" and vm.rules[0]["opts"] == {"-i": "net0"}
    assert vm.rules[5]["opts"]["-source"] == "+admins" and vm.rules[2]["comment"] == "one address"
    assert vm.options == {"ips": "1", "ips_queues": "0"}
    assert set(parsed["cluster.fw"].ipsets) == {"management", "blacklist"}
    assert parsed["cluster.fw"].groups["webfront"][1]["opts"]["-dport"] == "8443"
    assert [r["direction"] for r in parsed["vnet0.fw"].rules] == ["FORWARD", "FORWARD"]


@pytest.mark.parametrize("text, reason", [
    ("[RULES]\nOUT DROP -dest !10.0.0.0/8", "no `!`"),
    ("[RULES]\nOUT DROP -dest 10.0.0.0/8,fd00::/8", "mixed"),
    ("[RULES]\nIN ACCEPT -source 10.0.0.1 -dest fd00::1", "different families"),
    ("[RULES]\nOUT DROP -dest 10.0.0.1-10.0.0.9,10.1.0.1", "range cannot be in a list"),
    ("[RULES]\nOUT DROP -dest +nope", "no such IP set"),
    ("[RULES]\nOUT DROP -dest nosuchalias", "no such alias"),
    ("[RULES]\nOUT DROP -foo 1", "unknown rule option"),
    ("[RULES]\nOUT DROP -p", "without a value"),
    ("[RULES]\nIN ACCEPT -p tcp -dport 70000", "port out of range"),
    ("[RULES]\nIN ALLOW", "bad action"),
    ("[RULES]\nFORWARD ACCEPT", "not allowed here"),
    ("[RULES]\nIN ACCEPT -i eth0", "net<N>"),
    ("[RULES]\nIN ACCEPT -log loud", "bad log level"),
    ("[OPTIONS]\nenable: yes", "bad value"),
    ("[OPTIONS]\npolicy_forward: DROP", "unknown option"),
    ("[IPSET a1]\n0.0.0.0/0", "zero prefix"),
    ("[IPSET a1]\n10.0.0.0/8\n10.0.0.0/8", "duplicate"),
    ("[IPSET 1a]\n10.0.0.0/8", "bad name"),
    ("[group web]\nIN ACCEPT", "cluster.fw"),
    ("[NETWORK]", "unknown section"),
    ("OUT DROP", "outside any section"),
])
def test_lines_the_document_does_not_allow_are_refused(text, reason):
    with pytest.raises(grammar.GrammarError, match=reason.replace("`", ".")):
        grammar.parse(text)
