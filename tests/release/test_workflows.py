"""The GitHub workflows (issue 14): actionlint passes them (with shellcheck on every `run:`),
every action is pinned by a full commit SHA, and each job asks for the least permissions:
ci.yml reads the code, release.yml writes only what publishing and attesting need.

The pinned SHAs were read from the actions' own repositories (git tags), see the table below
and docs/testing.md "Releases"; moving a pin means updating both."""

import os
import re
import subprocess

import pytest
import yaml

from conftest import ROOT, require_tool

WORKFLOWS = os.path.join(ROOT, ".github", "workflows")
# action -> (commit, the tag it carries upstream). Source: each repository's tags
# (git rev-parse TAG^{commit} in a clone of github.com/ACTION).
PINS = {
    "actions/checkout": ("3d3c42e5aac5ba805825da76410c181273ba90b1", "v7.0.1"),
    "actions/setup-python": ("5fda3b95a4ea91299a34e894583c3862153e4b97", "v7.0.0"),
    "actions/attest-build-provenance": ("a2bbfa25375fe432b6a289bc6b6cd05ecd0c4c32", "v4.1.0"),
}


def actionlint(folder):
    """actionlint on every workflow of `folder`, shellcheck forced on (it is in the test venv)."""
    files = sorted(os.path.join(folder, f) for f in os.listdir(folder) if f.endswith(".yml"))
    return subprocess.run([require_tool("actionlint"), "-shellcheck", require_tool("shellcheck"),
                           "-no-color"] + files, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, cwd=ROOT)


def load(name):
    with open(os.path.join(WORKFLOWS, name), encoding="utf-8") as f:
        text = f.read()
    return text, yaml.safe_load(text)


def steps(doc):
    for job in doc["jobs"].values():
        for step in job.get("steps", []):
            yield step


def test_actionlint_passes_both_workflows():
    assert sorted(os.listdir(WORKFLOWS)) == ["ci.yml", "release.yml"]
    r = actionlint(WORKFLOWS)
    assert r.returncode == 0, r.stdout.decode()


def test_actionlint_fails_a_broken_workflow(tmp_path):
    """The control: the same check on a copy with an unquoted variable in a script (shellcheck)
    and an unknown permission scope fails."""
    bad = tmp_path / "wf"
    bad.mkdir()
    text = open(os.path.join(WORKFLOWS, "release.yml"), encoding="utf-8").read()
    text = text.replace('cmp "$GITHUB_WORKSPACE/dist/claw-cage.pyz"',
                        'cmp $GITHUB_WORKSPACE/dist/claw-cage.pyz')
    text = text.replace("attestations: write", "attestation: write")
    (bad / "release.yml").write_text(text)
    out = actionlint(str(bad)).stdout.decode()
    assert "SC2086" in out and '"attestation"' in out, out


@pytest.mark.parametrize("name", ["ci.yml", "release.yml"])
def test_every_action_is_pinned_by_commit_sha(name):
    text, doc = load(name)
    uses = [s["uses"] for s in steps(doc) if "uses" in s]
    assert uses
    for ref in uses:
        action, _, sha = ref.partition("@")
        assert action in PINS, "%s: %s is not in the reviewed pin table" % (name, action)
        assert sha == PINS[action][0], "%s: %s not pinned to %s" % (name, ref, PINS[action][0])
        # the tag the SHA stands for is said on the same line
        assert re.search(r"uses: %s # %s$" % (re.escape(ref), re.escape(PINS[action][1])),
                         text, re.M), ref


def test_ci_runs_the_readme_test_command_on_push_and_pull_request():
    _, doc = load("ci.yml")
    assert set(doc[True]) == {"push", "pull_request"}  # YAML 1.1 reads `on:` as True
    runs = [s["run"] for s in steps(doc) if "run" in s]
    readme = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    assert "\nbash tests/run\n" in readme
    assert any(r.strip().endswith("bash tests/run") for r in runs), runs
    assert doc["permissions"] == {"contents": "read"}
    assert all("permissions" not in job for job in doc["jobs"].values())


def test_release_runs_on_v_tags_with_least_permissions():
    _, doc = load("release.yml")
    assert doc[True] == {"push": {"tags": ["v*"]}}
    assert doc["permissions"] == {}
    (job,) = doc["jobs"].values()
    assert job["permissions"] == {"contents": "write", "id-token": "write",
                                  "attestations": "write"}
    for step in steps(doc):
        if step.get("uses", "").startswith("actions/checkout@"):
            assert step["with"]["persist-credentials"] is False


def test_release_builds_twice_compares_checks_version_publishes_and_attests():
    text, doc = load("release.yml")
    runs = "\n".join(s.get("run", "") for s in steps(doc))
    assert runs.count("python3 build.py --out") == 2 and "git clone" in runs and "cmp " in runs
    assert "umask 077" in runs and "LC_ALL=" in runs
    assert '"release $TAG, "*"@$GITHUB_SHA)"' in runs  # --version names tag and commit
    assert "sha256sum claw-cage.pyz > SHA256SUMS" in runs
    assert re.search(r"gh release create \"\$TAG\" dist/claw-cage.pyz dist/SHA256SUMS", runs)
    attest = [s for s in steps(doc) if s.get("uses", "").startswith(
        "actions/attest-build-provenance@")]
    assert attest and attest[0]["with"] == {"subject-path": "dist/claw-cage.pyz"}
    # order: build, compare, check, sums, attest, publish
    names = [s.get("name", s.get("uses", "")) for s in steps(doc)]
    assert names.index("Attest build provenance") < names.index("Publish the release")
