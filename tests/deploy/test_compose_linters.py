"""Two outside linters on deploy/docker-compose.yml. compose-lint: zero unsuppressed findings (two
per-service exclusions in tests/deploy/compose-lint.yml, each shown to hide nothing else);
compose-harden: 100/100 (docs/design.md, "Linter findings we suppress": why `--skip tmpfs`)."""

import json
import re
import subprocess

import pytest

from compose_support import (COMPOSE_PATH, INIT, LINT_CONFIG, SERVICES, _clean_env, project, read,
                             run_lint, shipped_env, venv_tool)


def suppressed_set(report):
    return {(f["rule_id"], f["service"], f.get("source_file")) for f in report["findings"]
            if f.get("suppressed")}


def test_compose_lint_shipped_state_has_zero_findings(tmp_path):
    # .env exactly as the installer first creates it (every secret empty).
    d = project(tmp_path, shipped_env())
    rc, report = run_lint(d, "--config", LINT_CONFIG, "--strict-config")
    unsuppressed = [f for f in report["findings"] if not f.get("suppressed")]
    assert unsuppressed == [], json.dumps(unsuppressed, indent=1)
    assert not report.get("errors"), report.get("errors")
    assert rc == 0
    # The one suppression in force: volumes-init runs as root (see tests/deploy/compose-lint.yml).
    assert suppressed_set(report) == {("CL-0018", INIT, None)}


def test_compose_lint_without_config_finds_exactly_the_suppressed_one(tmp_path):
    # Proof that the config hides nothing else: without it, CL-0018 on volumes-init is all.
    rc, report = run_lint(project(tmp_path, shipped_env()))
    assert {(f["rule_id"], f["service"]) for f in report["findings"]} == {("CL-0018", INIT)}
    assert rc != 0


def test_compose_lint_installed_state_only_env_credentials_suppressed(tmp_path):
    # .env as it is after install + editing: token filled in, a provider key added. Besides
    # volumes-init, no finding: no service reads .env (env_file) since the keys left the
    # agent (issue 29), so CL-0020 on .env is gone.
    d = project(tmp_path, "ANTHROPIC_API_KEY=sk-ant-sample\nOPENCLAW_GATEWAY_TOKEN=0123abcd\n")
    rc, report = run_lint(d, "--config", LINT_CONFIG, "--strict-config")
    unsuppressed = [f for f in report["findings"] if not f.get("suppressed")]
    assert unsuppressed == [], json.dumps(unsuppressed, indent=1)
    assert suppressed_set(report) == {("CL-0018", INIT, None)}
    assert rc == 0


LINT_MUTATIONS = [
    # a tag without its digest
    ("CL-0019", lambda t: re.sub(r"@sha256:[0-9a-f]{64}", "", t)),
    # the gateway published on every interface
    ("CL-0005", lambda t: t.replace("\"127.0.0.1:18789:18789\"", "\"18789:18789\"")),
    ("CL-0002", lambda t: t.replace("init: true", "init: true\n    privileged: true")),
]


@pytest.mark.parametrize("rule,mutate", LINT_MUTATIONS, ids=[m[0] for m in LINT_MUTATIONS])
def test_compose_lint_would_catch_a_weakened_file(tmp_path, rule, mutate):
    text = mutate(read(COMPOSE_PATH))
    assert text != read(COMPOSE_PATH)
    rc, report = run_lint(project(tmp_path, shipped_env(), text), "--config", LINT_CONFIG)
    assert rule in {f["rule_id"] for f in report["findings"] if not f.get("suppressed")}, \
        report["findings"]
    assert rc != 0


def harden_scan(d, *extra):
    r = subprocess.run([venv_tool("compose-harden"), "scan", "--json", "--min-score", "0"]
                       + list(extra) + [str(d / "docker-compose.yml")],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=str(d), timeout=120)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def failed_checks(report):
    return sorted({c["check"] for checks in report["services"].values() for c in checks
                   if not c["passed"]})


def test_compose_harden_scores_100(tmp_path):
    d = project(tmp_path, shipped_env())
    # `--skip tmpfs`, the documented way to leave a check out: compose-harden wants the bare
    # string "/tmp" in every read-only service's tmpfs list, so it fails our size-capped
    # "/tmp:size=..." and volumes-init (a chown that writes no file). The tests below prove
    # that is all it fails; docs/design.md "Linter findings we suppress" says so.
    report = harden_scan(d, "--skip", "tmpfs")
    assert report["score"] == 100, failed_checks(report)
    assert report["applicable"] == report["passed"] == 32   # 8 checks x 4 services
    assert failed_checks(harden_scan(d)) == ["tmpfs"]


def test_compose_harden_tmpfs_miss_is_only_the_size_option(tmp_path):
    text = re.sub(r"- /tmp:size=[^\n]*", "- /tmp", read(COMPOSE_PATH))
    assert text != read(COMPOSE_PATH)
    report = harden_scan(project(tmp_path, shipped_env(), text))
    for name in SERVICES:
        assert all(c["passed"] for c in report["services"][name]), report["services"][name]


def test_compose_harden_would_catch_a_weakened_file(tmp_path):
    text = read(COMPOSE_PATH).replace("      - no-new-privileges:true\n", "      - label=x\n", 1)
    report = harden_scan(project(tmp_path, shipped_env(), text), "--skip", "tmpfs")
    assert report["score"] < 100
    assert failed_checks(report) == ["no_new_privileges"]
