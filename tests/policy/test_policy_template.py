"""deploy/openclaw.json and deploy/openclaw.local-only.json against OpenClaw's own key list.

The key list (openclaw-2026.7.1-config-keys.json, beside this file) is data vendored from the
pinned release's documentation, with its source noted in the file. Every leaf of each template
must be a documented key with a documented value; the settings of the hardening guide (step 7,
OpenClaw policy) and of OpenClaw's own hardened deployment (step 5, local models) must all be
there; and
--verify's policy rows must pass on the template and catch each single setting flipped back.
"""

import copy
import json
import os
import re
import sys

import pytest

from conftest import ROOT

sys.path.insert(0, os.path.join(ROOT, "bootstrap"))

from claw_cage.verify import openclaw_policy  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
KEYS = json.load(open(os.path.join(HERE, "openclaw-2026.7.1-config-keys.json")))
TEMPLATES = {"internet": os.path.join(ROOT, "deploy", "openclaw.json"),
             "local-only": os.path.join(ROOT, "deploy", "openclaw.local-only.json")}
MAPS = ("models.providers",)  # objects keyed by a name of the user's choice


def load(profile):
    with open(TEMPLATES[profile], encoding="utf-8") as f:
        return json.load(f)  # plain JSON: Python's parser, no JSON5 needed


def leaves(node, path=""):
    """(key path, value) of every leaf: `[]` for list items that are objects, `*` for map keys."""
    if isinstance(node, dict):
        for k, v in node.items():
            key = "*" if path in MAPS else k
            yield from leaves(v, path + "." + key if path else key)
    elif isinstance(node, list) and all(isinstance(v, dict) for v in node):
        for v in node:
            yield from leaves(v, path + "[]")
    else:
        yield path, node


def tool_names():
    groups = dict((k, v) for k, v in KEYS["tool_groups"].items() if k.startswith("group:"))
    return set(groups) | set(n for members in groups.values() for n in members)


def problems(cfg):
    """Every leaf that is not a documented key with a documented value."""
    found = []
    for path, value in leaves(cfg):
        spec = KEYS["keys"].get(path)
        if spec is None:
            found.append("%s: not a documented key" % path)
        elif "enum" in spec and value not in spec["enum"]:
            found.append("%s: %r not in %r" % (path, value, spec["enum"]))
        elif spec.get("type") == "boolean" and not isinstance(value, bool):
            found.append("%s: %r is not a boolean" % (path, value))
        elif spec.get("type") == "integer" and (not isinstance(value, int) or
                                                isinstance(value, bool)):
            found.append("%s: %r is not an integer" % (path, value))
        elif spec.get("type") == "string" and not isinstance(value, str):
            found.append("%s: %r is not a string" % (path, value))
        elif spec.get("type") == "string[]" and not (
                isinstance(value, list) and all(isinstance(v, str) for v in value)):
            found.append("%s: %r is not a list of strings" % (path, value))
        elif spec.get("type") == "tool[]":
            unknown = [v for v in value if v not in tool_names()]
            if not isinstance(value, list) or unknown:
                found.append("%s: unknown tools %r" % (path, unknown or value))
    return found


@pytest.mark.parametrize("profile", sorted(TEMPLATES))
def test_every_key_and_value_is_documented_by_the_pinned_release(profile):
    assert problems(load(profile)) == []


def test_the_key_check_itself_catches_undocumented_keys_and_values():
    cfg = load("internet")
    cfg["gateway"]["bind"] = "0.0.0.0"          # a host alias, not a bind mode
    cfg["tools"]["browser"] = {"enabled": False}  # OpenClaw's hardened-deployment wording, no such key
    cfg["agents"]["list"][1]["tools"]["deny"].append("shell")
    found = problems(cfg)
    assert any(p.startswith("gateway.bind:") for p in found)
    assert "tools.browser.enabled: not a documented key" in found
    assert any("unknown tools ['shell']" in p for p in found)


def test_the_key_list_names_its_source_and_release():
    assert "v2026.7.1" in KEYS["release"] and "2d2ddc43" in KEYS["release"]
    assert "openclaw/docs@" in KEYS["source"]["docs"]
    assert all(spec.get("doc", "").startswith("docs/") for spec in KEYS["keys"].values())


def test_the_templates_hold_no_secret():
    for path in TEMPLATES.values():
        text = open(path, encoding="utf-8").read()
        assert not re.search(r'"(token|password|botToken)"\s*:', text), path


@pytest.mark.parametrize("profile", sorted(TEMPLATES))
def test_hardening_guide_step_7_openclaw_policy(profile):
    cfg = load(profile)
    assert cfg["gateway"]["mode"] == "local"       # no --allow-unconfigured needed
    assert cfg["gateway"]["bind"] == "lan"         # inside the container only (docs/layers.md)
    assert cfg["gateway"]["auth"]["mode"] == "token"
    assert cfg["discovery"]["mdns"]["mode"] == "off"
    assert cfg["browser"]["ssrfPolicy"]["dangerouslyAllowPrivateNetwork"] is False
    assert cfg["tools"]["elevated"]["enabled"] is False
    telegram = [b["agentId"] for b in cfg["bindings"] if b["match"]["channel"] == "telegram"]
    agent = [a for a in cfg["agents"]["list"] if a["id"] == telegram[0]][0]
    assert {"group:runtime", "group:fs"} <= set(agent["tools"]["deny"])
    assert cfg["channels"]["telegram"]["dmPolicy"] == "pairing"
    assert cfg["logging"]["redactSensitive"] == "tools"


def test_openclaw_hardened_deployment_step_5_local_models_and_tools():
    cfg = load("local-only")
    assert cfg["models"]["mode"] == "replace"
    assert list(cfg["models"]["providers"]) == ["ollama"]
    ollama = cfg["models"]["providers"]["ollama"]
    assert ollama["api"] == "ollama" and not ollama["baseUrl"].endswith("/v1")
    # the host's own Ollama, through the proxy (local-only lists 127.0.0.1:11434); its
    # memory embeddings go direct to a loopback baseUrl: the relay carries 127.0.0.1:11434
    assert ollama["baseUrl"] == "http://127.0.0.1:11434"
    assert cfg["agents"]["defaults"]["model"]["primary"] == \
        "ollama/" + ollama["models"][0]["id"]
    assert cfg["browser"]["enabled"] is False
    assert cfg["tools"]["allow"] == ["read", "write", "edit"]
    assert cfg["tools"]["deny"] == ["exec", "process", "browser", "canvas", "nodes", "cron",
                                    "gateway"]


def test_local_only_is_the_internet_template_plus_the_hardened_deployment():
    base, local = load("internet"), load("local-only")
    for path, value in leaves(base):
        assert dict(leaves(local)).get(path, "absent") == value or path.startswith("agents.list"), path
    assert base["agents"]["list"] == local["agents"]["list"]


@pytest.mark.parametrize("profile", sorted(TEMPLATES))
def test_verify_rows_pass_on_the_template(profile):
    rows = openclaw_policy.config_rows(load(profile), profile == "local-only")
    assert [(r.check, r.status) for r in rows if r.status != "pass"] == []
    names = openclaw_policy.CHECKS[2:] + (openclaw_policy.LOCAL_ONLY_CHECKS
                                          if profile == "local-only" else ())
    assert [r.check for r in rows] == ["policy " + n for n in names]


def _set(cfg, path, value):
    node = cfg
    parts = path.split(".")
    for part in parts[:-1]:
        node = node[int(part)] if isinstance(node, list) else node[part]
    if value is DELETE:
        del node[parts[-1]]
    else:
        node[parts[-1]] = value


DELETE = object()
# One setting flipped back per case: (profile, path, weak value, the row that must not pass).
FLIPS = [
    ("internet", "gateway.mode", "remote", "gateway.mode"),
    ("internet", "gateway.bind", "loopback", "gateway.bind"),
    ("internet", "gateway.auth.mode", "none", "gateway.auth.mode"),
    ("internet", "discovery.mdns.mode", "full", "discovery.mdns.mode"),
    ("internet", "discovery.mdns.mode", "minimal", "discovery.mdns.mode"),
    ("internet", "browser.ssrfPolicy.dangerouslyAllowPrivateNetwork", True, "browser.ssrfPolicy"),
    ("internet", "tools.elevated.enabled", True, "tools.elevated"),
    ("internet", "agents.list.1.tools.deny", ["group:runtime"], "telegram agent tools"),
    ("internet", "agents.list.1.tools.deny", ["group:fs"], "telegram agent tools"),
    ("internet", "bindings", [], "telegram agent tools"),
    ("internet", "channels.telegram.dmPolicy", "open", "channels.telegram.dmPolicy"),
    ("internet", "logging.redactSensitive", "off", "logging.redactSensitive"),
    ("local-only", "models.mode", "merge", "models.mode"),
    ("local-only", "models.providers", {}, "models.providers.ollama"),
    ("local-only", "browser.enabled", True, "browser.enabled"),
    ("local-only", "tools.deny", ["exec", "browser", "canvas", "nodes", "cron", "gateway"],
     "tools.allow/deny"),
    ("local-only", "tools.allow", DELETE, "tools.allow/deny"),
]


@pytest.mark.parametrize("profile,path,value,check", FLIPS)
def test_each_flip_is_caught_by_its_row(profile, path, value, check):
    cfg = copy.deepcopy(load(profile))
    _set(cfg, path, value)
    assert problems(cfg) == [], "the flip must be a value OpenClaw accepts"
    rows = openclaw_policy.config_rows(cfg, profile == "local-only")
    bad = [(r.check, r.status) for r in rows if r.status != "pass"]
    assert bad and all(c == "policy " + check for c, _ in bad), bad


def test_the_docs_section_lists_every_setting_with_its_source():
    text = open(os.path.join(ROOT, "docs", "layers.md"), encoding="utf-8").read()
    section = text.split("\n## OpenClaw policy\n", 1)[1].split("\n## ", 1)[0]
    for profile in TEMPLATES:
        for path, _ in leaves(load(profile)):
            key = re.split(r"\[\]|\.\*", path)[0]
            assert "`%s" % key in section, key
    for doc in set(spec["doc"].split(" ")[0].split("#")[0][len("docs/"):]
                   for spec in KEYS["keys"].values()):
        assert doc.rstrip(",") in section, doc


def test_verify_knows_the_release_tool_groups_it_uses():
    for group, members in openclaw_policy.GROUPS.items():
        assert list(members) == KEYS["tool_groups"][group], group


def test_the_ollama_row_names_the_endpoint():
    """local-only's proxy lists the baseUrl itself (egress/domains.endpoints): the row names
    it, and no longer an --allow the user would have to give."""
    rows = dict((r.check, r.detail) for r in
                openclaw_policy.config_rows(load("local-only"), True))
    assert rows["policy models.providers.ollama"] == "ollama at http://127.0.0.1:11434"
    cfg = load("local-only")
    cfg["models"]["providers"]["ollama"]["baseUrl"] = "http://192.168.1.50:11434"
    rows = dict((r.check, r.detail) for r in openclaw_policy.config_rows(cfg, True))
    assert rows["policy models.providers.ollama"] == "ollama at http://192.168.1.50:11434"
