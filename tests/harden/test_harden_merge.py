"""The pure part of --harden-docker: what the merge adds, keeps, reports and leaves out."""

import os
import sys

from conftest import ROOT

sys.path.insert(0, os.path.join(ROOT, "bootstrap"))

from claw_cage.harden import merge  # noqa: E402

V20, V24 = (20, 10), (24, 0)


def test_empty_config_gets_every_setting_the_engine_knows():
    merged, notes = merge.merge({}, V20)
    assert merged == {"icc": False, "no-new-privileges": True, "ipv6": False,
                      "log-driver": "json-file", "log-opts": {"max-size": "10m", "max-file": "3"},
                      "live-restore": True}
    assert ("skip", "default-network-opts: this engine does not know it (Docker 24.0+)") in notes
    assert any(t.startswith("userland-proxy: left as it is") for _, t in notes)
    merged24, _ = merge.merge({}, V24)
    assert merged24["default-network-opts"] == {
        "bridge": {"com.docker.network.bridge.host_binding_ipv4": "127.0.0.1"}}
    assert "userland-proxy" not in merged24


def test_user_values_are_kept_and_conflicts_reported():
    user = {"icc": True, "debug": True, "log-opts": {"max-size": "50m"},
            "default-network-opts": {"bridge": {
                "com.docker.network.bridge.host_binding_ipv4": "0.0.0.0"}}}
    merged, notes = merge.merge(user, V24)
    assert merged["icc"] is True and merged["debug"] is True
    assert merged["log-opts"] == {"max-size": "50m", "max-file": "3"}
    assert merged["default-network-opts"] == user["default-network-opts"]
    conflicts = [t for kind, t in notes if kind == "conflict"]
    assert conflicts == [
        'icc is true in daemon.json, hardened is false: kept yours',
        'log-opts.max-size is "50m" in daemon.json, hardened is "10m": kept yours',
        'default-network-opts.bridge.com.docker.network.bridge.host_binding_ipv4 is "0.0.0.0" '
        'in daemon.json, hardened is "127.0.0.1": kept yours']
    assert user["log-opts"] == {"max-size": "50m"}      # the input is not modified


def test_merging_the_result_again_changes_nothing():
    once, _ = merge.merge({"mtu": 1400}, V24)
    twice, _ = merge.merge(once, V24)
    assert twice == once
    assert merge.render(twice) == merge.render(once)


def test_flags_on_dockerd_command_line_are_not_repeated():
    merged, notes = merge.merge({}, V20, flags={"--live-restore", "--log-opt", "--host"})
    assert "live-restore" not in merged and "log-opts" not in merged
    assert merged["log-driver"] == "json-file"
    assert any("command line sets --log-opt" in t for _, t in notes)


def test_swarm_and_other_log_drivers():
    merged, notes = merge.merge({"log-driver": "journald"}, V20, swarm=True)
    assert "live-restore" not in merged and "log-opts" not in merged
    assert merged["log-driver"] == "journald"
    assert any("swarm" in t for _, t in notes)
    merged, _ = merge.merge({"log-driver": "local"}, V20)
    assert merged["log-opts"] == {"max-size": "10m", "max-file": "3"}


def test_version_and_known_keys():
    assert merge.version_tuple("20.10.24+dfsg1") == (20, 10)
    assert merge.version_tuple("28.5.2") == (28, 5)
    assert merge.version_tuple("garbage") == (0, 0)
    help_text = ("  --icc  Enable\n  --insecure-registry list\n  --log-opt map\n"
                 "  -H, --host list\n  --live-restore\n")
    keys = merge.known_keys(help_text)
    for key in ("icc", "insecure-registries", "log-opts", "hosts", "live-restore", "runtimes"):
        assert key in keys
    assert "no-such-daemon-key" not in keys


def test_diff_shows_only_the_change():
    text = merge.diff('{\n  "mtu": 1400\n}\n', '{\n  "mtu": 1400,\n  "icc": false\n}\n')
    assert '+  "icc": false' in text and '-  "mtu": 1400\n' in text
    assert text.startswith("--- /etc/docker/daemon.json\n+++ /etc/docker/daemon.json (hardened)")


def test_verify_daemon_row_passes_on_what_harden_writes():
    """--verify's audit row asks for exactly what --harden-docker sets (issue 12: the row
    passes after it), and still warns on Docker's defaults."""
    from claw_cage.verify import audit
    for version in (V20, V24):
        merged, _ = merge.merge({}, version)
        assert audit.daemon_findings(merged) == []
    assert audit.daemon_findings({}) != []
