"""openclaw.json in the install directory: created once from deploy/openclaw.json (mode 600),
then never overwritten. An upgrade keeps the user's file byte for byte and offers this
release's template beside it as openclaw.json.new. Run as users run it: the built program
through a pipe, against the artifact server."""

import os
import stat

from conftest import require_root
from test_install import DEPLOY, USER_ENV, env, server, snapshot, stub_docker  # noqa: F401

POLICY, NEW = "openclaw.json", "openclaw.json.new"
EDITED = b'{\n  // mine: JSON5, comments kept\n  gateway: { mode: "local", bind: "lan" },\n}\n'


def template():
    with open(os.path.join(DEPLOY, POLICY), "rb") as f:
        return f.read()


def install(run_pyz, env, server, target, *extra):  # noqa: F811
    r = run_pyz(["--dir", str(target), "--source", server.url] + list(extra), env=env)
    assert r.returncode == 0, r.stderr.decode()
    return r.stdout.decode()


def test_fresh_install_creates_it_mode_600_for_the_gateways_uid(tmp_path, run_pyz, env,
                                                                  server):
    require_root("a root install hands openclaw.json to uid 1000 (the gateway's user)")
    target = tmp_path / "c"
    out = install(run_pyz, env, server, target)
    assert (target / POLICY).read_bytes() == template()
    st = (target / POLICY).stat()
    assert stat.S_IMODE(st.st_mode) == 0o600 and st.st_uid == 1000
    assert "openclaw.json created (mode 600)" in out
    assert not (target / NEW).exists()
    # The local-only variant is a reference copy, replaced like the other deploy files.
    with open(os.path.join(DEPLOY, "openclaw.local-only.json"), "rb") as f:
        assert (target / "openclaw.local-only.json").read_bytes() == f.read()
    assert stat.S_IMODE((target / "openclaw.local-only.json").stat().st_mode) == 0o600


def test_the_gateways_other_configs_go_to_its_uid_like_openclaw_json(tmp_path, run_pyz, env,
                                                                     server):
    """openclaw.api-only.json (the config the gateway loads under api-only and local-only,
    mode 600) and openclaw.local-only.json (copied over openclaw.json): a root install hands
    them to uid 1000 as it does openclaw.json, and a re-run hands back one an older release
    left root's (same bytes and mode: only the owner was wrong)."""
    require_root("a root install hands the gateway's files to uid 1000")
    target = tmp_path / "c"
    install(run_pyz, env, server, target)
    for name in ("openclaw.api-only.json", "openclaw.local-only.json", POLICY):
        st = (target / name).stat()
        assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (1000, 0o600), name
    os.chown(str(target / "openclaw.api-only.json"), 0, 0)   # what the older release left
    out = install(run_pyz, env, server, target)
    assert (target / "openclaw.api-only.json").stat().st_uid == 1000
    assert "openclaw.api-only.json updated" in out
    assert "openclaw.local-only.json unchanged" in out


def test_upgrade_keeps_an_edited_file_byte_for_byte_and_offers_the_template(
        tmp_path, run_pyz, env, server):
    target = tmp_path / "c"
    install(run_pyz, env, server, target)
    (target / POLICY).write_bytes(EDITED)
    os.chmod(str(target / POLICY), 0o640)
    before = os.stat(str(target / POLICY))
    out = install(run_pyz, env, server, target)
    after = os.stat(str(target / POLICY))
    assert (target / POLICY).read_bytes() == EDITED
    assert (before.st_ino, before.st_mode, before.st_uid, before.st_mtime_ns) == \
        (after.st_ino, after.st_mode, after.st_uid, after.st_mtime_ns)
    assert (target / NEW).read_bytes() == template()
    assert stat.S_IMODE((target / NEW).stat().st_mode) == 0o600
    assert "openclaw.json kept as it is (never overwritten)" in out
    assert "diff openclaw.json openclaw.json.new" in out and "openclaw.json.new created" in out
    # A third run: the offer is already there and stays as it is; the user's file too.
    out = install(run_pyz, env, server, target)
    assert "openclaw.json.new unchanged" in out
    assert (target / POLICY).read_bytes() == EDITED


def test_an_unedited_file_is_kept_and_nothing_is_offered(tmp_path, run_pyz, env, server):
    target = tmp_path / "c"
    install(run_pyz, env, server, target)
    out = install(run_pyz, env, server, target)
    assert "same as this release's template" in out
    assert not (target / NEW).exists()


def test_dry_run_says_what_it_would_do_and_changes_nothing(tmp_path, run_pyz, env, server):
    target = tmp_path / "c"
    install(run_pyz, env, server, target)
    (target / POLICY).write_bytes(EDITED)
    before = snapshot(str(target))
    out = install(run_pyz, env, server, target, "--dry-run")
    assert snapshot(str(target)) == before
    assert "would create openclaw.json.new" in out
    os.unlink(str(target / POLICY))
    out = install(run_pyz, env, server, target, "--dry-run")
    assert "would create openclaw.json" in out and not (target / POLICY).exists()


def test_a_symlinked_openclaw_json_stops_the_install_untouched(tmp_path, run_pyz, env,
                                                               server):
    target = tmp_path / "c"
    install(run_pyz, env, server, target)
    elsewhere = tmp_path / "elsewhere.json"
    elsewhere.write_bytes(EDITED)
    os.unlink(str(target / POLICY))
    os.symlink(str(elsewhere), str(target / POLICY))
    (target / "docker-compose.yml").write_text("# old\n")
    before = snapshot(str(target))
    r = run_pyz(["--dir", str(target), "--source", server.url], env=env)
    assert r.returncode == 5
    assert "symlink" in r.stderr.decode() and "openclaw.json" in r.stderr.decode()
    assert snapshot(str(target)) == before and elsewhere.read_bytes() == EDITED


def test_a_user_not_uid_1000_is_told_how_the_gateway_can_read_it(tmp_path, run_pyz, server):
    require_root("acting as another user through sudo")
    import pathlib
    import shutil
    import tempfile
    home = pathlib.Path(tempfile.mkdtemp(prefix="claw-home-"))
    try:
        home.chmod(0o755)
        os.chown(str(home), 65534, 65534)
        env = stub_docker(home)  # noqa: F811
        r = run_pyz(["--dir", str(home / "c"), "--source", DEPLOY],
                    env=dict(env, SUDO_UID="65534", SUDO_GID="65534", SUDO_USER="nobody"))
        assert r.returncode == 0, r.stderr.decode()
        assert "sudo chown 1000 %s" % (home / "c" / POLICY) in r.stdout.decode()
        assert os.stat(str(home / "c" / POLICY)).st_uid == 65534
    finally:
        shutil.rmtree(str(home))


def test_a_tampered_openclaw_json_is_refused_and_nothing_changes(tmp_path, run_pyz, env,
                                                                 server):
    """openclaw.json is one of the deploy files whose sha256 the build embeds."""
    target = tmp_path / "c"
    install(run_pyz, env, server, target)
    (target / POLICY).write_bytes(EDITED)
    before = snapshot(str(target))
    server.fault(POLICY, "tamper")
    r = run_pyz(["--dir", str(target), "--source", server.url], env=env)
    assert r.returncode == 4 and "sha256" in r.stderr.decode()
    assert snapshot(str(target)) == before
