"""verify/openclaw_policy.py without Docker: the audit report mapped to rows (critical = fail,
warn = warn), the JSON5 OpenClaw also reads, the mount row, and `skip` (never `pass`) when the
gateway cannot be looked at."""

import json
import os
import sys

from conftest import ROOT

sys.path.insert(0, os.path.join(ROOT, "bootstrap"))

from claw_cage.verify import openclaw_policy as op  # noqa: E402

# Shaped as docs/cli/security.md and src/security/audit.ts (v2026.7.1) describe the report.
REPORT = {"ts": 1783900000000, "summary": {"critical": 1, "warn": 1, "info": 1},
          "findings": [
              {"checkId": "channels.telegram.dm.open", "severity": "critical",
               "title": "Telegram DMs are open", "detail": "dmPolicy=open",
               "remediation": "set dmPolicy to pairing"},
              {"checkId": "logging.redact_off", "severity": "warn", "title": "Redaction off",
               "detail": "logging.redactSensitive=off"},
              {"checkId": "summary.attack_surface", "severity": "info", "title": "Summary",
               "detail": "..."}]}


def test_audit_findings_become_rows_critical_fail_warn_warn_info_counted():
    rows = op.audit_rows(REPORT)
    got = [(r.check, r.status) for r in rows]
    assert got == [("policy security audit", "fail"),
                   ("audit channels.telegram.dm.open", "fail"),
                   ("audit logging.redact_off", "warn")]
    assert "1 critical, 1 warn, 1 info" in rows[0].detail
    assert all(r.section == op.SECTION for r in rows)


def test_a_clean_audit_passes_and_a_warn_only_audit_warns():
    clean = {"findings": [REPORT["findings"][2]]}
    assert [(r.check, r.status) for r in op.audit_rows(clean)] == \
        [("policy security audit", "pass")]
    warn = {"findings": REPORT["findings"][1:]}
    assert [r.status for r in op.audit_rows(warn)] == ["warn", "warn"]


def test_the_report_is_found_after_other_output_and_garbage_is_no_report():
    text = "Doctor warnings:\n  something {odd}\n" + json.dumps(REPORT) + "\n"
    assert op.parse_audit(text) == REPORT
    assert op.parse_audit("Error: unknown command security") is None
    assert op.parse_audit('{"ok": true}') is None
    assert op.parse_audit("") is None


def test_json5_as_openclaw_reads_it():
    text = """// openclaw.json
    {
      gateway: { mode: 'local', bind: "lan", },   /* inline */
      channels: { telegram: { dmPolicy: "pairing" } },
      url: "http://host//path", "quoted:key": [1, 2,],
    }"""
    cfg = op.loads(text)
    assert cfg == {"gateway": {"mode": "local", "bind": "lan"},
                   "channels": {"telegram": {"dmPolicy": "pairing"}},
                   "url": "http://host//path", "quoted:key": [1, 2]}
    try:
        op.loads("{ gateway: ")
    except ValueError:
        pass
    else:
        raise AssertionError("broken JSON5 must not parse")


def test_mount_row_read_only_bind_passes_anything_else_warns():
    path = "/home/node/.openclaw/openclaw.json"
    ro = {"Mounts": [{"Type": "bind", "Source": "/home/u/claw-cage/openclaw.json",
                      "Destination": path, "RW": False}]}
    rw = {"Mounts": [dict(ro["Mounts"][0], RW=True)]}
    none = {"Mounts": [{"Type": "volume", "Destination": "/home/node/.openclaw", "RW": True}]}
    assert op.mount_row(ro, path).status == "pass"
    assert op.mount_row(rw, path).status == "warn"
    assert op.mount_row(none, path).status == "warn"


def test_without_docker_the_group_is_one_skip_with_the_reason(monkeypatch):
    """One reason, one row (as the container group), never a pass."""
    monkeypatch.setenv("PATH", "/nonexistent")
    rows = op.rows(local_only=True)
    assert [(r.check, r.status) for r in rows] == [("policy", "skip")]
    count = len(op.CHECKS + op.LOCAL_ONLY_CHECKS)
    assert rows[0].detail == ("docker is not installed: none of the %d policy checks could "
                              "run" % count)


def test_test_mode_namespace_skips():
    rows = op.rows(netns="cc-test")
    assert {r.status for r in rows} == {"skip"} and "cc-test" in rows[0].detail


def test_a_gateway_whose_exec_fails_is_never_a_pass(monkeypatch):
    """docker exec itself failing (a stopped container, no sh): warn/skip, no pass anywhere."""
    from claw_cage import runner

    def fake_run(argv, **kw):
        return runner.Result(argv, 126, "", "OCI runtime exec failed: no such file")
    monkeypatch.setattr(runner, "run", fake_run)
    rows = op.rows(info={"Id": "abc", "Mounts": []})
    assert rows[0].status == "warn" and "OCI runtime exec failed" in rows[0].detail
    assert [r.status for r in rows[1:]] == ["skip"] * (len(op.CHECKS) - 1)
    assert "pass" not in {r.status for r in rows}


def test_an_unreadable_config_fails_the_config_row(monkeypatch):
    from claw_cage import runner

    def fake_run(argv, **kw):
        if "audit" in argv:
            return runner.Result(argv, 0, json.dumps({"findings": []}), "")
        return runner.Result(argv, 1, "/home/node/.openclaw/openclaw.json\n",
                             "cat: can't open '/home/node/.openclaw/openclaw.json': "
                             "Permission denied")
    monkeypatch.setattr(runner, "run", fake_run)
    rows = op.rows(info={"Id": "abc", "Mounts": []})
    assert (rows[1].check, rows[1].status) == ("policy config file", "fail")
    assert "Permission denied" in rows[1].detail


def test_the_effective_config_is_checked(monkeypatch):
    from claw_cage import runner
    cfg = json.load(open(os.path.join(ROOT, "deploy", "openclaw.json")))
    cfg["channels"]["telegram"]["dmPolicy"] = "open"
    path = "/home/node/.openclaw/openclaw.json"

    def fake_run(argv, **kw):
        if "audit" in argv:
            return runner.Result(argv, 0, json.dumps({"findings": []}), "")
        return runner.Result(argv, 0, path + "\n" + json.dumps(cfg, indent=2), "")
    monkeypatch.setattr(runner, "run", fake_run)
    info = {"Id": "abc", "Mounts": [{"Type": "bind", "Source": "/x/openclaw.json",
                                     "Destination": path, "RW": False}]}
    rows = dict((r.check, r.status) for r in op.rows(info=info))
    assert rows.pop("policy channels.telegram.dmPolicy") == "fail"
    assert set(rows.values()) == {"pass"}

