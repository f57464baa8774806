"""--firewall --profile api-only and --firewall --remove, run as users run them: the BUILT
program, as root, in the namespace lab's host namespace, with /etc and /usr/local/lib as
private overlays (tests/egress/support.py). No systemd runs here, so the service is written and
enabled (its link), not started, and the program says so.
"""

import json
import os
import shutil
import socket
import stat
import subprocess
import sys
import time

import pytest

from conftest import PYTHON, ROOT
from lab import netlab
from support import SECRETS, digest, install_dir, run, upper

sys.path.insert(0, os.path.join(ROOT, "bootstrap"))
from claw_cage import deployment  # noqa: E402
from claw_cage.egress import config, domains, envfile, keys, unit  # noqa: E402

PROXY_JSON = "/etc/claw-cage/proxy.json"
UNIT = "/etc/systemd/system/claw-cage-proxy.service"
WANTS = "/etc/systemd/system/multi-user.target.wants/claw-cage-proxy.service"
COPY = "/usr/local/lib/claw-cage/claw-cage.pyz"
OWNER = 1234   # the user's uid: .env must keep it


@pytest.fixture
def lab():
    netlab.require_lab()
    with netlab.Lab() as lab:
        yield lab


def firewall(pyz, base, lab, *args):
    return run(base, [PYTHON, pyz, "--firewall"] + list(args), netns=lab.host)


def written(base):
    """Every file the runs wrote under the overlaid folders."""
    out = []
    for top in os.listdir(base):
        up = os.path.join(base, top, "upper")
        if os.path.isdir(up):
            out += [os.path.relpath(os.path.join(d, n), up) for d, _, files in os.walk(up)
                    for n in files]
    return sorted(out)


# ---- the domain list, from real files ------------------------------------------------------

def test_defaults_come_from_env_keys_and_openclaw_channels(tmp_path):
    d = install_dir(tmp_path, channels=("telegram", "discord", "matrix"))
    names, why, unknown = domains.default_list(d, ["*.example.com", "api.anthropic.com"])
    # ANTHROPIC set, OPENAI empty (not counted), GROQ set with export and quotes
    assert names == ["api.anthropic.com", "api.groq.com", "discord.com", "gateway.discord.gg",
                     "cdn.discordapp.com", "api.telegram.org", "*.example.com"]
    assert why["api.anthropic.com"] == "ANTHROPIC_API_KEY"
    assert why["api.telegram.org"] == "channel telegram"
    assert unknown == ["matrix"]


def test_a_key_alone_on_a_line_is_unset_even_when_roots_environment_has_it(tmp_path,
                                                                         monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "from-the-environment")
    d = install_dir(tmp_path, env_text="OPENAI_API_KEY\n", channels=())
    assert domains.default_list(d)[0] == []


def test_a_disabled_channel_and_json_comments(tmp_path):
    d = install_dir(tmp_path, env_text="", channels=())
    with open(os.path.join(d, "openclaw.json"), "w") as f:
        f.write('{ // a comment\n "channels": {"telegram": {"enabled": false},'
                ' "slack": {"note": "http://x // not a comment"}} /* end */ }')
    assert domains.default_list(d)[0] == ["slack.com", "*.slack.com"]


@pytest.mark.parametrize("bad", ["foo bar", "*", "*.com.", "localhost", "10.0.0.1", "a..b",
                                 "-a.example.com", "é.example.com", "*.*.example.com",
                                 "a" * 64 + ".com", "example.com:443", "http://example.com"])
def test_check_name_refuses(bad):
    with pytest.raises(ValueError):
        domains.check_name(bad)


@pytest.mark.parametrize("suffix", ["co.uk", "github.io", "workers.dev", "com.au",
                                    "herokuapp.com", "pages.dev"])
def test_a_wildcard_on_a_public_suffix_is_refused(suffix):
    """*.co.uk would open every stranger's name under it (the built-in list's common ones)."""
    with pytest.raises(ValueError, match="public suffix"):
        domains.check_name("*." + suffix.upper() + ".")
    assert domains.check_name("*.mine." + suffix) == "*.mine." + suffix    # one owner's names
    assert domains.check_name("api." + suffix) == "api." + suffix          # one exact name


def test_check_name_normalises():
    assert domains.check_name("API.Example.COM.") == "api.example.com"
    assert domains.check_name("*.telegram.org") == "*.telegram.org"


def test_a_symlinked_env_is_refused_and_not_followed(tmp_path):
    d = install_dir(tmp_path)
    secret = tmp_path / "root-only"
    secret.write_text("ANTHROPIC_API_KEY=x\n")
    os.unlink(os.path.join(d, ".env"))
    os.symlink(str(secret), os.path.join(d, ".env"))
    with pytest.raises(Exception, match="symlink"):
        domains.default_list(d)


# ---- .env: only COMPOSE_FILE changes -------------------------------------------------------

def test_compose_file_line_set_and_removed_keeps_every_other_line():
    text = "A=1\r\nCOMPOSE_FILE=mine.yml\n# c\nexport COMPOSE_FILE=x\nB='2'"
    once = envfile.with_compose_file(text)
    assert once == "A=1\r\nCOMPOSE_FILE=docker-compose.api-only.yml\n# c\nB='2'"
    assert envfile.with_compose_file(once) == once
    assert envfile.chosen(once)
    plain = "A=1\nB=2"
    added = envfile.with_compose_file(plain)
    assert added == "A=1\nB=2\nCOMPOSE_FILE=docker-compose.api-only.yml\n"
    assert envfile.without_compose_file(added) == "A=1\nB=2\n"
    # a user's own COMPOSE_FILE is theirs: --remove leaves it
    assert envfile.without_compose_file("COMPOSE_FILE=mine.yml\n") == "COMPOSE_FILE=mine.yml\n"


# ---- the unit and proxy.json ---------------------------------------------------------------

def test_unit_text_is_hardened_and_runs_the_root_owned_copy():
    import configparser
    parsed = configparser.ConfigParser(interpolation=None, strict=False)
    parsed.optionxform = str
    parsed.read_string(unit.text())
    svc = parsed["Service"]
    assert svc["ExecStart"] == ("/usr/bin/python3 /usr/local/lib/claw-cage/claw-cage.pyz "
                                "--proxy --config /etc/claw-cage/proxy.json")
    for key, value in (("DynamicUser", "yes"), ("ProtectSystem", "strict"),
                       ("ProtectHome", "yes"), ("NoNewPrivileges", "yes"),
                       ("PrivateTmp", "yes"), ("Restart", "on-failure"),
                       ("RestrictAddressFamilies", "AF_UNIX AF_INET AF_INET6"),
                       ("RuntimeDirectory", "claw-cage/egress"),
                       ("RuntimeDirectoryPreserve", "yes")):
        assert svc[key] == value, key
    assert svc["MemoryMax"] and svc["TasksMax"]
    assert "docker.service" in parsed["Unit"]["Before"]


@pytest.mark.skipif(not shutil.which("systemd-analyze"),
                    reason="NOT RUN: systemd-analyze is missing (apt-get install systemd)")
@pytest.mark.parametrize("names", [(), ("ANTHROPIC_API_KEY", "TELEGRAM_BOT_TOKEN")])
def test_systemd_analyze_verify_accepts_the_unit(tmp_path, names):
    path = tmp_path / unit.UNIT_NAME
    text = unit.text(names, keys.STORE)
    # one LoadCredential= per key (systemd 252's folder form would name them ID_FILE)
    assert [l for l in text.splitlines() if l.startswith("LoadCredential=")] == [
        "LoadCredential=%s:/etc/claw-cage/keys/%s" % (n, n) for n in names]
    path.write_text(text)
    # verify also checks that ExecStart's program exists: /usr/bin/python3 does; the pyz is
    # an argument. --man=no: no man pages in the image.
    proc = subprocess.run(["systemd-analyze", "verify", "--man=no", str(path)],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, timeout=60)
    problems = [l for l in proc.stderr.splitlines() if unit.UNIT_NAME in l]
    assert proc.returncode == 0 and not problems, proc.stderr


def test_proxy_json_is_the_contract():
    cfg = json.loads(config.render(["api.anthropic.com", "*.telegram.org"]))
    assert cfg == {"listen": ["unix:/run/claw-cage/egress/proxy.sock"],
                   "allow": ["api.anthropic.com", "*.telegram.org"], "ports": [443],
                   "forward": [{"listen": "127.0.0.1:18789",
                                "to": "unix:/run/claw-cage/gateway/gateway.sock"}],
                   "log": "-", "max_conns": 256, "header_timeout": 10, "idle_timeout": 300,
                   "connect_timeout": 10, "max_header": 16384, "expires": {}, "routes": [],
                   "routes_listen": [], "routes_clients": [], "keys_dir": None,
                   "max_body": 64 << 20}
    assert config.parse(config.render([])).allow == []
    route = {"name": "openai", "upstream": "https://api.openai.com", "key": "OPENAI_API_KEY",
             "auth": "bearer", "paths": None, "budget": None}
    cfg = json.loads(config.render([], (), routes=[route],
                                    routes_listen=["172.30.0.1:18790"], namespace=False,
                                    routes_clients=["172.30.0.0/24"]))
    assert (cfg["listen"], cfg["forward"], cfg["routes"], cfg["routes_listen"],
            cfg["routes_clients"]) == ([], [], [route], ["172.30.0.1:18790"], ["172.30.0.0/24"])
    with pytest.raises(ValueError, match="needs routes_clients"):   # never a TCP listener
        config.render([], (), routes=[route], routes_listen=["172.30.0.1:18790"],   # for all
                      namespace=False)
    assert cfg["keys_dir"] is None


# ---- the program, end to end ---------------------------------------------------------------

@pytest.mark.parametrize("args", [
    ["--allow-domain", "not a name"],
    ["--allow-domain", "10.0.0.1"],
    ["--allow-domain", "*"],
    ["--profile", "internet", "--allow-domain", "example.com"],
])
def test_usage_errors_change_nothing(pyz, tmp_path, lab, args):
    d = install_dir(tmp_path / "home", owner=OWNER)
    if "--profile" not in args:
        args = ["--profile", "api-only"] + args
    before = digest(os.path.join(d, ".env")), lab.save(4), lab.save(6)
    base = str(tmp_path / "ov")
    proc = firewall(pyz, base, lab, "--dir", d, *args)
    assert proc.returncode == 2, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and not proc.stdout
    assert (digest(os.path.join(d, ".env")), lab.save(4), lab.save(6)) == before
    assert written(base) == []


def test_a_failed_systemctl_in_the_egress_step_exits_6_with_one_line(pyz, tmp_path, lab):
    """systemd running (its marker folder, in the /run overlay) and a stand-in systemctl that
    fails the proxy's restart as systemctl does: the firewall mode's code (6) and one line
    saying what is left (was exit 1, "internal error")."""
    d = install_dir(tmp_path / "home", owner=OWNER)
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "systemctl").write_text(
        '#!/bin/sh\n[ "$1" = restart ] || exit 0\n'
        'echo "Job for $2 failed because the control process exited with error code." >&2\n'
        'exit 1\n')
    (bindir / "systemctl").chmod(0o755)
    proc = run(str(tmp_path / "ov"), ["sh", "-c", 'mkdir -p /run/systemd/system && exec "$@"',
                                      "sh", PYTHON, pyz, "--firewall", "--profile", "api-only",
                                      "--dir", d], netns=lab.host,
               env={"PATH": "%s:%s" % (bindir, os.environ["PATH"])})
    assert proc.returncode == 6, proc.stderr
    assert proc.stderr.count("claw-cage: error:") == 1, proc.stderr
    line = proc.stderr.strip().splitlines()[-1]
    assert line.startswith("claw-cage: error: systemctl restart claw-cage-proxy.service: exit "
                           "status 1: Job for") and "proxy (keys, routes) is not complete" in line, line


def test_apply_then_remove(pyz, tmp_path, lab):
    d = install_dir(tmp_path / "home", owner=OWNER)
    env = os.path.join(d, ".env")
    original = open(env, "rb").read()
    base = str(tmp_path / "ov")
    proc = firewall(pyz, base, lab, "--profile", "api-only", "--allow-domain", "*.Example.com",
                    "--dir", d)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    for secret in SECRETS:
        assert secret not in out
    for name in ("api.telegram.org", "*.example.com"):
        assert "  %s  (" % name in proc.stdout
    assert "api.openai.com" not in out      # its key is empty
    assert "SYSTEMD IS NOT RUNNING" in out and unit.foreground_command() in out
    # issue 29: the keys moved, named, never shown; their providers are routes, not CONNECT
    assert "ANTHROPIC_API_KEY, GROQ_API_KEY moved to /etc/claw-cage/keys" in proc.stdout

    cfg = json.loads(open(upper(base, PROXY_JSON)).read())
    assert cfg["allow"] == ["api.telegram.org", "*.example.com"]   # no TELEGRAM_BOT_TOKEN
    assert cfg["listen"] == ["unix:/run/claw-cage/egress/proxy.sock"]
    assert [(r["name"], r["upstream"], r["key"], r["auth"], r["budget"])
            for r in cfg["routes"]] == [
        ("anthropic", "https://api.anthropic.com", "ANTHROPIC_API_KEY", "x-api-key",
         {"hour": 600, "day": 6000}),
        ("groq", "https://api.groq.com", "GROQ_API_KEY", "bearer", {"hour": 600, "day": 6000})]
    assert cfg["routes_listen"] == ["unix:/run/claw-cage/egress/routes.sock"]
    assert cfg["keys_dir"] == "/etc/claw-cage/keys"   # no systemd: the proxy reads them
    store = upper(base, keys.STORE)
    st = os.lstat(store)
    assert st.st_uid == 0 and stat.S_IMODE(st.st_mode) == 0o700
    assert sorted(os.listdir(store)) == ["ANTHROPIC_API_KEY", "GROQ_API_KEY"]
    for name, value in (("ANTHROPIC_API_KEY", b"sk-ant-secret-value-123"),
                        ("GROQ_API_KEY", b"gsk-secret-value-456")):
        st = os.lstat(os.path.join(store, name))
        assert st.st_uid == 0 and stat.S_IMODE(st.st_mode) == 0o600
        assert open(os.path.join(store, name), "rb").read() == value
    routed = open(os.path.join(d, keys.CONFIG)).read()
    assert not any(secret in routed for secret in SECRETS)
    routed = json.loads(routed)
    assert routed["$include"] == "./openclaw.json"   # openclaw.api-only.json includes it
    assert routed["models"]["providers"] == {
        "anthropic": {"baseUrl": "http://127.0.0.1:18790/anthropic",
                      "apiKey": "claw-cage-placeholder"},
        "groq": {"baseUrl": "http://127.0.0.1:18790/groq/openai/v1",
                 "apiKey": "claw-cage-placeholder"}}
    # owned like openclaw.json (the installer gives both to the gateway's uid): it must read them
    assert os.stat(os.path.join(d, keys.CONFIG)).st_uid == os.stat(
        os.path.join(d, "openclaw.json")).st_uid
    for path, mode in ((PROXY_JSON, 0o644), (UNIT, 0o644), (COPY, 0o644)):
        st = os.lstat(upper(base, path))
        assert stat.S_ISREG(st.st_mode) and st.st_uid == 0 and stat.S_IMODE(st.st_mode) == mode
    st = os.lstat(upper(base, "/usr/local/lib/claw-cage"))
    assert st.st_uid == 0 and stat.S_IMODE(st.st_mode) == 0o755
    assert digest(upper(base, COPY)) == digest(pyz)
    # no systemd: the socket folders the unit would make, for the foreground command
    for sub, owner in (("egress", 0), ("gateway", deployment.RELAY_UID)):
        st = os.lstat(upper(base, "/run/claw-cage/" + sub))
        assert stat.S_ISDIR(st.st_mode) and st.st_uid == owner and \
            stat.S_IMODE(st.st_mode) == 0o755
    assert open(upper(base, UNIT)).read() == unit.text(["ANTHROPIC_API_KEY", "GROQ_API_KEY"],
                                                       keys.STORE)
    assert os.readlink(upper(base, WANTS)) == UNIT
    # the firewall's own persistence is there too: the bridge keeps its rules
    assert "claw-cage/firewall.sh" in written(base)
    assert any("CLAW-CAGE" in l for l in lab.save(4).splitlines())

    st = os.lstat(env)
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (OWNER, OWNER, 0o600)
    now = open(env, "rb").read()
    assert now == original + b"COMPOSE_FILE=docker-compose.api-only.yml\n"
    assert not [n for n in os.listdir(d) if n.startswith(".env.")]   # no temporary left

    # again: the same files, .env unchanged
    proc = firewall(pyz, base, lab, "--profile", "api-only", "--allow-domain", "*.example.com",
                    "--dir", d)
    assert proc.returncode == 0, proc.stderr
    assert open(env, "rb").read() == now

    # the internet profile: the proxy serves the routes alone, on the bridge's address
    proc = firewall(pyz, base, lab, "--dir", d, "--budget", "anthropic:5/50")
    assert proc.returncode == 0, proc.stderr
    cfg = json.loads(open(upper(base, PROXY_JSON)).read())
    assert (cfg["listen"], cfg["forward"], cfg["allow"]) == ([], [], [])
    assert cfg["routes_listen"] == ["172.30.0.1:18790"]
    assert cfg["routes_clients"] == ["172.30.0.0/24"]   # the compose file's subnet alone
    assert [r["budget"] for r in cfg["routes"]] == [{"hour": 5, "day": 50},
                                                    {"hour": 600, "day": 6000}]
    routed = json.loads(open(os.path.join(d, keys.CONFIG)).read())
    assert routed["$include"] == "./openclaw.json"
    assert routed["models"]["providers"]["anthropic"]["baseUrl"] == \
        "http://172.30.0.1:18790/anthropic"
    assert open(env, "rb").read() == original   # COMPOSE_FILE: the internet stack again

    # what the running proxy and relay leave in the run folders: their sockets
    for path in ("/run/claw-cage/egress/proxy.sock", "/run/claw-cage/gateway/gateway.sock"):
        socket.socket(socket.AF_UNIX).bind(upper(base, path))
    proc = firewall(pyz, base, lab, "--remove", "--dir", d)
    assert proc.returncode == 0, proc.stderr
    assert "egress proxy removed" in proc.stdout
    for path in (PROXY_JSON, UNIT, WANTS, COPY, "/usr/local/lib/claw-cage", "/etc/claw-cage",
                 "/run/claw-cage/egress", "/run/claw-cage/gateway", "/run/claw-cage", keys.STORE):
        assert not os.path.lexists(upper(base, path)), path
    assert json.loads(open(os.path.join(d, keys.CONFIG)).read()) == {
        "$include": "./openclaw.json"}
    assert open(env, "rb").read() == original
    st = os.lstat(env)
    assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (OWNER, 0o600)
    assert not any("CLAW-CAGE" in l for l in lab.save(4).splitlines())
    proc = firewall(pyz, base, lab, "--remove", "--dir", d)   # twice: nothing to do, exit 0
    assert proc.returncode == 0, proc.stderr


def test_temporary_entries_kept_until_their_time_then_dropped_and_marked(pyz, tmp_path, lab):
    """--firewall keeps a temporary entry still running (its time unchanged), drops an ended
    one, makes this run's --allow-domain temporary with --for, and marks them in the summary;
    without systemd the proxy logs to a file (--refused reads it)."""
    d = install_dir(tmp_path / "home", env_text="", channels=())
    base = str(tmp_path / "ov")
    assert firewall(pyz, base, lab, "--profile", "api-only", "--no-persist",
                    "--dir", d).returncode == 0
    now = time.time()
    cfg = json.loads(open(upper(base, PROXY_JSON)).read())
    assert cfg["log"] == "/var/log/claw-cage-proxy.log" and cfg["expires"] == {}
    cfg.update(allow=["ended.example.com", "running.example.com"],
               expires={"ended.example.com": config.owner().stamp(now - 5),
                        "running.example.com": config.owner().stamp(now + 3600)})
    with open(upper(base, PROXY_JSON), "w") as f:
        json.dump(cfg, f)
    proc = firewall(pyz, base, lab, "--profile", "api-only", "--no-persist", "--dir", d,
                    "--allow-domain", "new.example.com", "--for", "2h")
    assert proc.returncode == 0, proc.stderr
    got = json.loads(open(upper(base, PROXY_JSON)).read())
    assert got["allow"] == ["new.example.com", "running.example.com"]
    assert got["expires"]["running.example.com"] == cfg["expires"]["running.example.com"]
    assert 7190 <= config.owner().when(got["expires"]["new.example.com"]) - now <= 7210
    assert "  running.example.com  (--allow-domain, until " in proc.stdout
    assert "  new.example.com  (--allow-domain, until " in proc.stdout
    assert "ended.example.com: its temporary entry ended, removed from the list" in proc.stdout
    proc = firewall(pyz, base, lab, "--profile", "api-only", "--no-persist", "--dir", d,
                    "--allow-domain", "running.example.com")   # now for good
    got = json.loads(open(upper(base, PROXY_JSON)).read())
    assert got["expires"] == {"new.example.com": got["expires"]["new.example.com"]}
    assert "  running.example.com  (--allow-domain)" in proc.stdout


def test_json_names_the_list(pyz, tmp_path, lab):
    d = install_dir(tmp_path / "home", env_text="OPENROUTER_API_KEY=or-secret\n", channels=())
    proc = firewall(pyz, str(tmp_path / "ov"), lab, "--profile", "api-only", "--json",
                    "--no-persist", "--dir", d)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["egress"]["allow"] == []   # a routed provider: never by CONNECT
    assert result["egress"]["routes"] == ["openrouter"]
    assert result["egress"]["keys"] == ["OPENROUTER_API_KEY"]
    assert result["egress"]["service"] == "not started: no systemd"
    assert "or-secret" not in proc.stdout + proc.stderr


def test_a_users_own_compose_file_is_refused_before_any_change(pyz, tmp_path, lab):
    d = install_dir(tmp_path / "home", env_text="COMPOSE_FILE=mine.yml:other.yml\n")
    before = lab.save(4), digest(os.path.join(d, ".env"))
    base = str(tmp_path / "ov")
    proc = firewall(pyz, base, lab, "--profile", "api-only", "--dir", d)
    assert proc.returncode == 5, proc.stderr
    assert "already chooses mine.yml:other.yml" in proc.stderr
    assert (lab.save(4), digest(os.path.join(d, ".env"))) == before
    assert written(base) == []


def test_run_from_a_pipe_is_refused_before_any_change(pyz, tmp_path, lab):
    d = install_dir(tmp_path / "home")
    before = lab.save(4), digest(os.path.join(d, ".env"))
    base = str(tmp_path / "ov")
    with open(pyz, "rb") as f:
        data = f.read()
    proc = subprocess.run(["unshare", "-m", "sh", "-c", "exec \"$@\"", "sh", "ip", "netns",
                           "exec", lab.host, PYTHON, "-", "--firewall", "--profile", "api-only",
                           "--dir", d], input=data, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, timeout=120)
    assert proc.returncode == 3, proc.stderr
    assert b"not a pipe" in proc.stderr
    assert (lab.save(4), digest(os.path.join(d, ".env"))) == before


def test_a_failure_after_the_firewall_says_what_is_left(pyz, tmp_path, lab):
    d = install_dir(tmp_path / "home")
    base = str(tmp_path / "ov")
    os.makedirs(upper(base, PROXY_JSON))   # a folder where proxy.json goes: the write fails
    proc = firewall(pyz, base, lab, "--profile", "api-only", "--no-persist", "--dir", d)
    assert proc.returncode == 5, proc.stderr
    line = proc.stderr.strip().splitlines()[-1]
    assert PROXY_JSON in line and "the firewall rules are applied" in line
    assert b"COMPOSE_FILE" not in open(os.path.join(d, ".env"), "rb").read()


CLIENT = r"""
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.settimeout(5)
s.connect("/run/claw-cage/egress/proxy.sock")
s.sendall(b"CONNECT %s:443 HTTP/1.1\r\nHost: x\r\n\r\n" % sys.argv[1].encode())
print(s.recv(64).split(b"\r\n")[0].decode())
"""


def test_the_foreground_command_serves_the_container_uid(pyz, tmp_path, lab):
    """What a host without systemd runs: the printed command, as root, on the files the run
    wrote; the relay's uid connects to its socket and gets the list's verdicts."""
    d = install_dir(tmp_path / "home", env_text="", channels=())
    base = str(tmp_path / "ov")
    proc = firewall(pyz, base, lab, "--profile", "api-only", "--allow-domain", "allowed.test",
                    "--no-persist", "--dir", d)
    assert proc.returncode == 0, proc.stderr
    script = """
        %s 2>"$1" & pid=$!
        i=0; while [ ! -S /run/claw-cage/egress/proxy.sock ] && [ $i -lt 100 ]; do
            sleep 0.1; i=$((i+1)); done
        setpriv --reuid=%d --regid=%d --clear-groups %s -c '%s' off-list.test
        kill $pid; wait $pid
    """ % (unit.foreground_command(), deployment.RELAY_UID, deployment.RELAY_UID, PYTHON, CLIENT)
    log = str(tmp_path / "proxy.log")
    proc = run(base, ["sh", "-c", script, "sh", log], netns=lab.host)
    assert proc.stdout.strip().startswith("HTTP/1.1 403"), (proc.stdout, proc.stderr,
                                                             open(log).read())
    assert "listening on unix:/run/claw-cage/egress/proxy.sock" in open(log).read()


# ---- local-only: the same design, the Ollama endpoints only -------------------------------

def local_only_dir(tmp, base_url="http://127.0.0.1:11434", owner=None):
    """An install folder whose openclaw.json is the local-only template (what the user copies
    over it), with base_url as its Ollama baseUrl (None: the key left out)."""
    d = install_dir(tmp, env_text="ANTHROPIC_API_KEY=sk-ant-secret-value-123\n", owner=owner)
    with open(os.path.join(ROOT, "deploy", "openclaw.local-only.json")) as f:
        cfg = json.load(f)
    if base_url is None:
        del cfg["models"]["providers"]["ollama"]["baseUrl"]
    else:
        cfg["models"]["providers"]["ollama"]["baseUrl"] = base_url
    with open(os.path.join(d, "openclaw.json"), "w") as f:
        json.dump(cfg, f)
    return d


@pytest.mark.parametrize("url, entry", [
    ("http://127.0.0.1:11434", "127.0.0.1:11434"),        # the template: the host's own Ollama
    ("http://host.docker.internal:11434", "host.docker.internal:11434"),   # an older template
    ("http://localhost:11434/", "localhost:11434"),
    ("http://192.168.1.50:11434", "192.168.1.50:11434"),   # an Ollama box on the LAN
    ("http://[fd00::50]:8080", "[fd00::50]:8080"),
    ("http://192.168.1.50", "192.168.1.50:80"),            # the URL's own default port
    ("https://10.0.0.5", "10.0.0.5:443"),
])
def test_local_only_lists_the_ollama_endpoint_of_openclaw_json(tmp_path, url, entry):
    d = local_only_dir(tmp_path, url)
    assert domains.endpoints(d) == ([entry], {entry: "models.providers.ollama.baseUrl"}, [])


def test_local_only_adds_each_allow_of_one_address_and_port(tmp_path):
    d = local_only_dir(tmp_path)
    names, why, _ = domains.endpoints(d, ["host:11434", "192.168.1.60:8080", "[fd00::7]:53",
                                          "10.0.0.0/24", "192.168.1.70", "10.1.0.0/16:80"])
    # host:PORT is the host's 127.0.0.1 (already listed: once); networks and every-port
    # openings stay firewall rules only; provider keys in .env count for nothing here
    assert names == ["127.0.0.1:11434", "192.168.1.60:8080", "[fd00::7]:53"]
    assert why["192.168.1.60:8080"] == "--allow 192.168.1.60:8080"
    assert domains.endpoints(local_only_dir(tmp_path / "n", None))[0] == []


@pytest.mark.parametrize("url", ["http://ollama.lan:11434", "http://:11434", "not a url",
                                 "http://127.0.0.1:99999"])
def test_local_only_refuses_a_base_url_it_cannot_list(tmp_path, url):
    d = local_only_dir(tmp_path, url)
    with pytest.raises(domains.TargetError, match="needs an IP address there"):
        domains.endpoints(d)


OLD_RELEASE = "93db80b"   # the last commit whose local-only was the address cage alone


@pytest.fixture
def old_pyz(tmp_path):
    """claw-cage.pyz as built from OLD_RELEASE: a host caged by it is what a user migrates."""
    src = str(tmp_path / "old-src")
    os.makedirs(src)
    archive = subprocess.run(["git", "-C", ROOT, "archive", OLD_RELEASE],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if archive.returncode != 0:
        pytest.fail("cannot read %s from git: %s" % (OLD_RELEASE, archive.stderr.decode()))
    subprocess.run(["tar", "-x", "-C", src], input=archive.stdout, check=True)
    subprocess.run([PYTHON, "build.py", "--ref", OLD_RELEASE], cwd=src, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return os.path.join(src, "dist", "claw-cage.pyz")


def test_local_only_apply_migrate_and_remove(pyz, old_pyz, tmp_path, lab):
    """A host caged with the old local-only (its rules only, openclaw.json pointing at
    host.docker.internal) runs the same command again: it gets the namespace design, with
    the proxy listing the Ollama endpoint and nothing else; the firewall rules stay the
    local-only ones (the second layer); --remove takes it all out."""
    d = local_only_dir(tmp_path / "home", "http://host.docker.internal:11434", owner=OWNER)
    env = os.path.join(d, ".env")
    original = open(env, "rb").read()
    base = str(tmp_path / "ov")
    old = firewall(old_pyz, base, lab, "--profile", "local-only", "--allow", "host:11434",
                   "--no-persist", "--dir", d)
    assert old.returncode == 0, old.stderr
    rules_before = lab.save(4)
    assert "CLAW-CAGE" in rules_before
    assert written(base) == [] and open(env, "rb").read() == original   # rules, nothing else
    proc = firewall(pyz, base, lab, "--profile", "local-only", "--allow", "host:11434",
                    "--no-persist", "--dir", d)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "the agent reaches only these endpoints (Ollama):" in proc.stdout
    # issue 29: the Ollama endpoint is the "ollama" route with its path allow-list, out of
    # the CONNECT list (an --allow the user gives stays theirs)
    assert "host.docker.internal:11434  (models" not in proc.stdout
    assert "  127.0.0.1:11434  (--allow host:11434)" in proc.stdout
    assert "api.anthropic.com" not in out and "sk-ant" not in out
    cfg = json.loads(open(upper(base, PROXY_JSON)).read())
    assert cfg["allow"] == ["127.0.0.1:11434"]
    assert cfg["ports"] == []
    assert cfg["routes"] == [{"name": "ollama", "upstream": "http://127.0.0.1:11434",
                              "key": None, "auth": None, "paths": keys.OLLAMA_PATHS,
                              "budget": None}]
    assert "/api/pull" not in keys.OLLAMA_PATHS and "/api/chat" in keys.OLLAMA_PATHS
    routed = json.loads(open(os.path.join(d, keys.CONFIG)).read())
    assert routed["models"]["providers"]["ollama"] == {
        "baseUrl": "http://127.0.0.1:18790/ollama"}
    assert open(env, "rb").read() == original + b"COMPOSE_FILE=docker-compose.api-only.yml\n"
    # the local-only rules, unchanged (the second layer), but for what this release's table
    # adds: the key routes' guard (CLAW-CAGE-ROUTES, empty under local-only) and its jump
    now = lab.save(4).splitlines()
    assert [l for l in now if "CLAW-CAGE-ROUTES" not in l] == rules_before.splitlines()
    assert "-A INPUT ! -i claw-cage0 -j CLAW-CAGE-ROUTES" in now
    assert open(upper(base, UNIT)).read() == unit.text()

    proc = firewall(pyz, base, lab, "--remove", "--dir", d)
    assert proc.returncode == 0, proc.stderr
    for path in (PROXY_JSON, UNIT, WANTS, COPY):
        assert not os.path.lexists(upper(base, path)), path
    assert open(env, "rb").read() == original
    assert "CLAW-CAGE" not in lab.save(4)


@pytest.mark.parametrize("url,words", [
    ("http://169.254.169.254:80", "--unsafe-wide-allow"),
    ("http://[::ffff:169.254.169.254]:80", "IPv4-mapped"),
    ("http://0.0.0.0:11434", "this host's own loopback"),
    ("http://[::]:11434", "this host's own loopback"),
    ("http://[64:ff9b:1::a9fe:a9fe]:80", "local-use NAT64"),
], ids=["metadata", "mapped-metadata", "unspecified", "unspecified6", "nat64-local"])
def test_local_only_baseurl_is_judged_as_allow_is(pyz, tmp_path, lab, url, words):
    """openclaw.json's Ollama endpoint goes through --allow's judgement: refused the same way,
    one line, nothing changed; the metadata one only with --unsafe-wide-allow."""
    d = local_only_dir(tmp_path / "home", url)
    before = lab.save(4), digest(os.path.join(d, ".env"))
    base = str(tmp_path / "ov")
    proc = firewall(pyz, base, lab, "--profile", "local-only", "--no-persist", "--dir", d)
    assert proc.returncode != 0, proc.stdout
    assert words in proc.stderr and "models.providers.ollama.baseUrl" in proc.stderr, \
        proc.stderr
    assert len(proc.stderr.splitlines()) == 1, proc.stderr
    assert (lab.save(4), digest(os.path.join(d, ".env"))) == before
    # at most Compose's passing reading of the network, remembered in /run (a cache keyed on
    # what Compose read, docs/firewall.md): the endpoint is judged after the network is read
    assert written(base) in ([], ["claw-cage.compose-network.json"])
    if url == "http://169.254.169.254:80":   # the flag opens it, as it does for --allow
        proc = firewall(pyz, base, lab, "--profile", "local-only", "--no-persist",
                        "--unsafe-wide-allow", "--dir", d)
        assert proc.returncode == 0, proc.stderr
        cfg = json.loads(open(upper(base, PROXY_JSON)).read())   # the Ollama route's upstream
        assert (cfg["allow"], [r["upstream"] for r in cfg["routes"]]) == (
            [], ["http://169.254.169.254:80"])


@pytest.mark.parametrize("spec", ["0.0.0.0:22", "[::]:22"])
def test_local_only_allow_of_the_unspecified_address_is_refused(pyz, tmp_path, lab, spec):
    d = local_only_dir(tmp_path / "home", "http://127.0.0.1:11434")
    proc = firewall(pyz, str(tmp_path / "ov"), lab, "--profile", "local-only", "--allow", spec,
                    "--no-persist", "--dir", d)
    assert proc.returncode != 0 and "this host's own loopback" in proc.stderr, proc.stderr


def test_local_only_with_a_named_ollama_is_refused_before_any_change(pyz, tmp_path, lab):
    d = local_only_dir(tmp_path / "home", "http://ollama.lan:11434")
    before = lab.save(4), digest(os.path.join(d, ".env"))
    base = str(tmp_path / "ov")
    proc = firewall(pyz, base, lab, "--profile", "local-only", "--dir", d)
    assert proc.returncode == 5, proc.stderr
    assert "needs an IP address there" in proc.stderr and len(proc.stderr.splitlines()) == 1
    assert (lab.save(4), digest(os.path.join(d, ".env"))) == before
    assert written(base) == []
