"""examples/ansible/playbook.yml run for real against this machine (issue 14), twice.

ansible-playbook (ansible-core from tests/requirements.txt) with ansible_connection=local, the
playbook exactly as shipped, and an inventory of one host standing for a user's:
  - the "release" is the built claw-cage.pyz served with the deploy files by a real HTTP
    server on 127.0.0.1 (tests/lab/artifact_server.py); the inventory pins its sha256;
  - OPENCLAW_IMAGE in .env (through the playbook's claw_cage_env) names the e2e stand-in image
    (tests/e2e/), and `--pull never`: nothing can be pulled here;
  - the egress guard of the e2e tests (tests/lab/e2e_support.py) is in DOCKER-USER before the
    playbook runs, and --verify's internet probe aims at the WAN peer namespace, so no probe
    leaves the machine;
  - the playbook runs inside a private mount namespace whose /etc is an overlay, so the
    firewall's boot persistence is real (and --verify's persistence row passes) while the
    machine's /etc never changes.
The first run must report changes, the second none (changed=0), both must pass --verify with
every row gathered, and everything is removed afterwards: iptables-save must equal the one
taken before. Hold /work/docker.lock (or CI's machine to itself) while this runs.
"""

import hashlib
import json
import os
import re
import shutil
import subprocess


from conftest import PYTHON, ROOT, require_tool
from lab import e2e_support as e2e
from lab.artifact_server import ArtifactServer
from lab.e2e_support import PEER_PORT, WAN_CANDIDATES, sh

PLAYBOOK = os.path.join(ROOT, "examples", "ansible", "playbook.yml")
RECAP = re.compile(r"^localhost\s+:\s+ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+"
                   r"failed=(\d+)", re.M)


def run_playbook(home, inventory, etc):
    """ansible-playbook in a private mount namespace with /etc as an overlay (see above)."""
    upper, work = os.path.join(etc, "upper"), os.path.join(etc, "work")
    mount = ("mount --make-rprivate / && mount -t overlay overlay -o "
             "lowerdir=/etc,upperdir=%s,workdir=%s /etc && exec \"$@\"" % (upper, work))
    argv = ["unshare", "-m", "sh", "-c", mount, "sh", require_tool("ansible-playbook"),
            "-i", inventory, PLAYBOOK]
    env = dict(os.environ, ANSIBLE_HOME=os.path.join(home, "ansible"),
               ANSIBLE_LOCAL_TEMP=os.path.join(home, "ansible", "tmp"),
               ANSIBLE_REMOTE_TEMP=os.path.join(home, "ansible", "rtmp"),
               ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0", ANSIBLE_RETRY_FILES_ENABLED="0",
               ANSIBLE_DEPRECATION_WARNINGS="0")
    for name in ("CLAW_CAGE_DIR", "CLAW_CAGE_SOURCE", "CLAW_CAGE_INTERNET_PROBE"):
        env.pop(name, None)
    res = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, universal_newlines=True, env=env,
                         timeout=600)
    recap = RECAP.search(res.stdout)
    assert recap, "no PLAY RECAP (exit %d):\n%s" % (res.returncode, res.stdout[-4000:])
    return res, tuple(int(n) for n in recap.groups())


def verify_rows(output):
    """The rows the playbook's "Show the --verify rows" task printed: [(status, check)]."""
    block = output.split("TASK [Show the --verify rows]", 1)[1].split("TASK [", 1)[0]
    return re.findall(r'^\s+"(pass|fail|warn|skip)  ([^"]+)",?$', block, re.M)


def test_the_ansible_playbook_installs_cages_starts_and_verifies_then_changes_nothing(
        pyz, tmp_path):
    require_tool("ansible-playbook")
    home = str(tmp_path)
    install_dir = os.path.join(home, "claw-cage")
    etc = os.path.join(home, "etc-overlay")
    os.makedirs(os.path.join(etc, "upper"))
    os.makedirs(os.path.join(etc, "work"))
    # the "release": the built pyz beside the deploy files, on an HTTP server on 127.0.0.1
    served = os.path.join(home, "release")
    shutil.copytree(os.path.join(ROOT, "deploy"), served)
    shutil.copy(pyz, os.path.join(served, "claw-cage.pyz"))
    with open(pyz, "rb") as f:
        sha256 = hashlib.sha256(f.read()).hexdigest()

    with e2e.deployment("the playbook runs --firewall (iptables) and creates network namespaces",
                        "the playbook starts the stack on the real Docker engine",
                        rules=True) as cleanup:
        rules_before = cleanup.rules_before
        standin = e2e.StandIn(cleanup)
        standin.build()
        # the compose file's image name, without its digest: the stand-in is tagged so
        ref = _shipped_image()
        repo, tag, _digest = e2e.split_image_ref(ref)
        image = "%s:%s" % (repo, tag or "latest")
        standin.tag_as(image)
        wan_net = e2e.pick_subnet(WAN_CANDIDATES, e2e.used_ipv4_networks())
        wan = e2e.Peer(cleanup, "wan", wan_net, PEER_PORT, PYTHON)
        lan_nets = e2e.connected_networks({wan.host_if, e2e.BRIDGE})
        e2e.EgressGuard(cleanup, [wan_net], lan_nets)
        server = ArtifactServer(served)
        server.__enter__()
        cleanup.push("artifact server", server.__exit__, None, None, None)
        cleanup.push("firewall --remove", _firewall_remove, install_dir, etc, rules_before)
        cleanup.push("docker compose down -v", _compose_down, install_dir)

        inventory = os.path.join(home, "inventory.yml")
        with open(inventory, "w") as f:
            json.dump({"claw_cage": {"hosts": {"localhost": {
                "ansible_connection": "local",
                "ansible_python_interpreter": PYTHON,
                "ansible_become": False,           # root already; this machine has no sudo
                "claw_cage_version": "v0.0.0-test",
                "claw_cage_sha256": sha256,
                "claw_cage_url": server.url + "/claw-cage.pyz",
                "claw_cage_source": server.url,
                "claw_cage_user": "root",
                "claw_cage_dir": install_dir,
                "claw_cage_download_dir": os.path.join(home, "download"),
                "claw_cage_allow": ["%s:%d" % (wan.addr, PEER_PORT)],
                "claw_cage_env": {"OPENCLAW_IMAGE": image},
                "claw_cage_pull": "never",
                "claw_cage_verify_env": {
                    "CLAW_CAGE_INTERNET_PROBE": "%s:%d" % (wan.addr, PEER_PORT)},
            }}}}, f, indent=2)

        first, (ok1, changed1, unreach1, failed1) = run_playbook(home, inventory, etc)
        e2e.write_output("ansible-first-run.txt", first.stdout)
        assert first.returncode == 0 and failed1 == 0 and unreach1 == 0, first.stdout[-6000:]
        assert changed1 >= 5, "the first run should install, set .env, cage, start: %s" % (
            first.stdout[-3000:])
        rows1 = verify_rows(first.stdout)

        second, (ok2, changed2, unreach2, failed2) = run_playbook(home, inventory, etc)
        e2e.write_output("ansible-second-run.txt", second.stdout)
        assert second.returncode == 0 and failed2 == 0, second.stdout[-6000:]
        assert changed2 == 0, "the second run changed something:\n%s" % second.stdout[-6000:]
        assert "TASK [Start the stack" in second.stdout and "skipping: [localhost]" in \
            second.stdout.split("TASK [Start the stack", 1)[1].split("TASK [", 1)[0]
        rows2 = verify_rows(second.stdout)

        for rows in (rows1, rows2):
            checks = dict((check, status) for status, check in rows)
            assert len(rows) >= 15, rows
            assert not [c for c, s in checks.items() if s == "fail"], rows
            for needed in ("firewall rules IPv4", "DOCKER-USER jump", "persistence",
                           "container"):
                assert any(c.startswith(needed) and s == "pass" for c, s in checks.items()), \
                    (needed, rows)
            assert any(c.startswith("probe internet") and s == "pass"
                       for c, s in checks.items()), rows
        # what a reviewer wants to see
        e2e.write_output("ansible-verify-rows.txt", "\n".join("%-5s %s" % r for r in rows2) + "\n")
        # the control for "fail the host on a failing row": a DNAT of the gateway port that
        # the playbook does not manage (on an interface that does not exist, so it forwards
        # nothing) fails --verify's port row, and the playbook fails the host
        dnat = ["-t", "nat", "-A", "PREROUTING", "-i", "ccnoif0", "-p", "tcp", "--dport",
                "18789", "-j", "DNAT", "--to-destination", "127.0.0.1:18789"]
        sh(["iptables", "-w", "10"] + dnat)
        cleanup.push("delete the test DNAT", sh, ["iptables", "-w", "10", "-t", "nat", "-D"]
                     + dnat[3:])
        third, (_, changed3, _, failed3) = run_playbook(home, inventory, etc)
        e2e.write_output("ansible-third-run.txt", third.stdout)
        assert third.returncode != 0 and failed3 == 1 and changed3 == 0, third.stdout[-4000:]
        assert "--verify failed: gateway port 18789" in third.stdout, third.stdout[-4000:]


def _shipped_image():
    """The image the shipped compose file runs when OPENCLAW_IMAGE is unset."""
    with open(os.path.join(ROOT, "deploy", "docker-compose.yml"), encoding="utf-8") as f:
        found = set(re.findall(r"image: \$\{OPENCLAW_IMAGE:-([^}]+)\}", f.read()))
    assert len(found) == 1, found
    return found.pop()


def _compose_down(install_dir):
    if os.path.exists(os.path.join(install_dir, "docker-compose.yml")):
        sh(["docker", "compose", "down", "-v", "--remove-orphans", "--timeout", "5"],
           cwd=install_dir, timeout=120)


def _firewall_remove(install_dir, etc, rules_before):
    """--firewall --remove, then the DOCKER-USER chain --firewall created where Docker had none
    (IPv6 on this Docker): --remove leaves it, as Docker owns it (docs/testing.md, "End-to-end tests")."""
    pyz = os.path.join(install_dir, "claw-cage.pyz")
    if os.path.exists(pyz):
        _run_remove(pyz, install_dir, etc)
    for save, ipt in (("iptables-save", "iptables"), ("ip6tables-save", "ip6tables")):
        had = any(l.startswith(":DOCKER-USER ") for l in rules_before.get(save, []))
        now = sh([save], check=False).stdout.splitlines()
        if not had and any(l.startswith(":DOCKER-USER ") for l in now) and \
                not any(l.startswith("-A DOCKER-USER ") for l in now):
            sh([ipt, "-w", "10", "-X", "DOCKER-USER"])


def _run_remove(pyz, install_dir, etc):
    upper, work = os.path.join(etc, "upper"), os.path.join(etc, "work")
    mount = ("mount --make-rprivate / && mount -t overlay overlay -o "
             "lowerdir=/etc,upperdir=%s,workdir=%s /etc && exec \"$@\"" % (upper, work))
    sh(["unshare", "-m", "sh", "-c", mount, "sh", PYTHON, pyz, "--firewall", "--remove",
        "--dir", install_dir], timeout=120)
