"""End to end on the real Docker engine: OpenClaw's policy file as the deployment ships it.

The stand-in image (tests/e2e/, its node answers `config file` and `security audit --json` in
the release's documented format and refuses to start the gateway unless gateway.mode is
"local") runs the SHIPPED docker-compose.yml after a real install (the built program through a
pipe, as root). Then:
  - the gateway starts without --allow-unconfigured, on the install dir's openclaw.json,
    mounted read-only at OpenClaw's config path (owned by uid 1000, mode 600);
  - the "OpenClaw policy" rows of --verify (the same code, called in-process: the full matrix
    would also send its LAN and internet probes, which this lab does not fence in) pass on the
    hardened file, and each single setting flipped back in the file is caught, by its own row
    and, where the release's audit checks it, by an `audit <checkId>` row;
  - the local-only variant, copied over it, passes the local-only rows too;
  - with gateway.mode flipped the gateway refuses to start, and starts again once restored.
The rows of each case are written to tests/output/e2e-policy.txt. Everything created
(containers, volumes, network, image tags) is removed afterwards, also on failure.
Run under /work/docker.lock: flock /work/docker.lock bash tests/run tests/e2e/test_e2e_policy.py
"""

import json
import os
import shutil
import sys
import time

import pytest

from conftest import ROOT, run_file
from lab import e2e_support as e2e
from lab.e2e_support import sh

sys.path.insert(0, os.path.join(ROOT, "bootstrap"))

from claw_cage.verify import openclaw_policy, report  # noqa: E402

CONFIG_IN_CONTAINER = "/home/node/.openclaw/openclaw.json"
OUTPUT = os.path.join(ROOT, "tests", "output", "e2e-policy.txt")
SERVING_WITHIN = 60


class Deployment:
    def __init__(self, home):
        self.dir = os.path.join(home, "claw-cage")
        self.source = os.path.join(home, "source")
        shutil.copytree(os.path.join(ROOT, "deploy"), self.source)
        self.policy = os.path.join(self.dir, "openclaw.json")

    def compose(self, *args, check=True, timeout=180):
        return sh(["docker", "compose"] + list(args), cwd=self.dir, check=check,
                  timeout=timeout)

    def container_id(self):
        return e2e.gateway_container()

    def serving(self):
        """The gateway answers /healthz inside its container (the stand-in's probe protocol)."""
        cid = self.container_id()
        if not cid:
            return False
        res = sh(["docker", "exec", cid, "node", "-e", "0", "http",
                  "http://127.0.0.1:18789/healthz", "2000"], check=False, timeout=20)
        return res.returncode == 0

    def wait_serving(self):
        if not e2e.wait_for(self.serving, SERVING_WITHIN, interval=1):
            logs = self.compose("logs", "--no-color", "--tail", "20", check=False)
            raise AssertionError("the gateway does not serve within %ds:\n%s%s"
                                 % (SERVING_WITHIN, logs.stdout, logs.stderr))

    def write_policy(self, cfg):
        # In place (same inode): the read-only bind mount shows the new bytes at once.
        with open(self.policy, "r+", encoding="utf-8") as f:
            f.seek(0)
            f.truncate()
            f.write(json.dumps(cfg, indent=2) + "\n")


@pytest.fixture(scope="module")
def dep(pyz, tmp_path_factory):
    with e2e.deployment("the e2e test installs as root and drives the system Docker engine",
                        "the e2e test runs the stack on the real Docker engine") as cleanup:
        d = Deployment(str(tmp_path_factory.mktemp("policy-home")))
        try:
            image = e2e.StandIn(cleanup)
            image.build()
            res = run_file(pyz, ["--dir", d.dir, "--source", d.source], how="pipe",
                           timeout=120)
            assert res.returncode == 0, res.stderr.decode()
            d.install_out = res.stdout.decode()
            cfg = json.loads(d.compose("config", "--format", "json").stdout)
            repo, tag, digest = e2e.split_image_ref(cfg["services"]["openclaw"]["image"])
            name = "%s:%s" % (repo, tag or "latest")
            if digest:  # a local image carries no registry digest: the .env override users have
                with open(os.path.join(d.dir, ".env"), "a") as f:
                    f.write("\nOPENCLAW_IMAGE=%s\n" % name)
            image.tag_as(name)
            d.config = json.loads(d.compose("config", "--format", "json").stdout)
            cleanup.push("docker compose down -v", d.compose, "down", "-v", "--remove-orphans",
                         "--timeout", "5")
            d.compose("up", "-d", "--pull", "never")
            d.wait_serving()
            with open(d.policy, encoding="utf-8") as f:
                d.hardened = json.load(f)
            d.log = []
            yield d
        finally:
            if getattr(d, "log", None):
                os.makedirs(os.path.dirname(OUTPUT), exist_ok=True)
                with open(OUTPUT, "w", encoding="utf-8") as f:
                    f.write("\n\n".join(d.log) + "\n")


def policy_rows(d, title, local_only=False):
    rows = openclaw_policy.rows(local_only=local_only)
    d.log.append("== %s\n%s" % (title, report.render_table(rows)))
    return rows


def test_the_gateway_runs_on_the_read_only_policy_without_allow_unconfigured(dep):
    command = dep.config["services"]["openclaw"]["command"]
    assert "--allow-unconfigured" not in command and command[2] == "gateway"
    info = e2e.docker_json(["inspect", dep.container_id()])[0]
    mounts = [m for m in info["Mounts"] if m["Destination"] == CONFIG_IN_CONTAINER]
    assert len(mounts) == 1 and mounts[0]["Type"] == "bind" and mounts[0]["RW"] is False
    assert mounts[0]["Source"] == dep.policy
    st = sh(["docker", "exec", dep.container_id(), "stat", "-c", "%u %a",
             CONFIG_IN_CONTAINER]).stdout.split()
    assert st == ["1000", "600"]
    # OpenClaw (and an agent with a shell) cannot write it: the mount is read-only.
    res = sh(["docker", "exec", dep.container_id(), "sh", "-c",
              "echo x >> " + CONFIG_IN_CONTAINER], check=False)
    assert res.returncode != 0 and "Read-only file system" in res.stderr
    assert "openclaw.json created (mode 600)" in dep.install_out


def test_hardened_configuration_every_policy_row_passes(dep):
    rows = policy_rows(dep, "hardened (as installed)")
    assert [(r.check, r.status) for r in rows if r.status != "pass"] == []
    checks = [r.check for r in rows]
    assert checks == ["policy " + n for n in openclaw_policy.CHECKS]


FLIPS = [  # path, weak value, the policy row that must fail, the audit finding (or None)
    ("discovery.mdns.mode", "full", "discovery.mdns.mode", "discovery.mdns_full_mode"),
    ("browser.ssrfPolicy.dangerouslyAllowPrivateNetwork", True, "browser.ssrfPolicy",
     "config.insecure_or_dangerous_flags"),
    ("tools.elevated.enabled", True, "tools.elevated", None),
    ("agents.list.1.tools.deny", ["group:fs"], "telegram agent tools", None),
    ("channels.telegram.dmPolicy", "open", "channels.telegram.dmPolicy",
     "channels.telegram.dm.open"),
    ("logging.redactSensitive", "off", "logging.redactSensitive", "logging.redact_off"),
    ("gateway.auth.mode", "none", "gateway.auth.mode", "gateway.bind_no_auth"),
]


def _flip(cfg, path, value):
    cfg = json.loads(json.dumps(cfg))
    node = cfg
    parts = path.split(".")
    for p in parts[:-1]:
        node = node[int(p)] if isinstance(node, list) else node[p]
    node[parts[-1]] = value
    return cfg


@pytest.mark.parametrize("path,value,check,finding", FLIPS, ids=[f[0] for f in FLIPS])
def test_each_weakened_setting_is_caught(dep, path, value, check, finding):
    dep.write_policy(_flip(dep.hardened, path, value))
    try:
        rows = policy_rows(dep, "weakened: %s = %s" % (path, json.dumps(value)))
    finally:
        dep.write_policy(dep.hardened)
    bad = dict((r.check, r.status) for r in rows if r.status != "pass")
    assert bad.pop("policy " + check) == "fail"
    if finding:
        assert bad.pop("audit " + finding) in ("fail", "warn")
        assert bad.pop("policy security audit") in ("fail", "warn")
    assert bad == {}


def test_a_readable_policy_file_is_an_audit_finding(dep):
    # the file the gateway loads (OPENCLAW_CONFIG_PATH) is openclaw.routes.json, which
    # includes openclaw.json: OpenClaw's audit judges the loaded file's mode
    files = [dep.policy, os.path.join(os.path.dirname(dep.policy), "openclaw.routes.json")]
    for f in files:
        os.chmod(f, 0o644)
    try:
        rows = policy_rows(dep, "weakened: openclaw.json and openclaw.routes.json mode 644")
    finally:
        for f in files:
            os.chmod(f, 0o600)
    bad = dict((r.check, r.status) for r in rows if r.status != "pass")
    assert bad == {"policy security audit": "fail",
                   "audit fs.config.perms_world_readable": "fail",
                   "audit fs.config.perms_group_readable": "warn"}


def test_the_local_only_variant_passes_the_local_only_rows(dep):
    shutil.copyfile(os.path.join(dep.dir, "openclaw.local-only.json"), dep.policy)  # same inode
    try:
        rows = policy_rows(dep, "local-only variant (cp openclaw.local-only.json openclaw.json)",
                           local_only=True)
    finally:
        dep.write_policy(dep.hardened)
    assert [(r.check, r.status) for r in rows if r.status != "pass"] == []
    assert [r.check for r in rows] == ["policy " + n for n in openclaw_policy.CHECKS +
                                       openclaw_policy.LOCAL_ONLY_CHECKS]


def test_without_gateway_mode_local_the_gateway_refuses_to_start(dep):
    dep.write_policy(_flip(dep.hardened, "gateway.mode", "remote"))
    try:
        dep.compose("restart", "--timeout", "5", "openclaw")
        time.sleep(3)
        assert not dep.serving()
        logs = dep.compose("logs", "--no-color", "--tail", "20", "openclaw").stdout
        assert 'gateway.mode is not "local"' in logs
        rows = policy_rows(dep, "weakened: gateway.mode = remote (gateway refuses to start)")
        assert "pass" not in {r.status for r in rows}
    finally:
        dep.write_policy(dep.hardened)
        dep.compose("restart", "--timeout", "5", "openclaw")
    dep.wait_serving()
    rows = policy_rows(dep, "restored")
    assert {r.status for r in rows} == {"pass"}
