"""The deployment's facts (project, volumes, uid, gateway port, health URL, token variable)
have one home in the program, bootstrap/claw_cage/deployment.py: they match what
deploy/docker-compose.yml says, and no other module of bootstrap/ writes them out again (a
literal 18789, "1000:1000", "OPENCLAW_GATEWAY_TOKEN", a volume name, or a fact's name given a
literal of its own). A literal planted in a copy of the tree is found."""

import ast
import os
import re
import shutil
import sys

from conftest import ROOT

sys.path.insert(0, os.path.join(ROOT, "bootstrap"))
from claw_cage import deployment  # noqa: E402

BOOTSTRAP = os.path.join(ROOT, "bootstrap")
LITERAL = re.compile(r"18789|\b1000:1000\b|OPENCLAW_GATEWAY_TOKEN|claw-data|claw-secrets|"
                     r"/healthz|claw-cage_")
FACT_NAMES = re.compile(r"^(CONTAINER_)?(UID|USER|PROJECT|GATEWAY_PORT|GATEWAY_ADDRESS|TOKEN_VAR|"
                        r"HEALTH_URL|STATE|SECRETS)$")


def _docstrings(tree):
    return {id(n.body[0].value) for n in ast.walk(tree)
            if isinstance(n, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
            and n.body and isinstance(n.body[0], ast.Expr)
            and isinstance(n.body[0].value, ast.Constant)}


def copies(root):
    """file:line of every fact written out outside deployment.py (docstrings and comments are
    prose, left out)."""
    found = []
    for folder, dirs, names in os.walk(root):
        dirs[:] = [d for d in dirs if d != "__pycache__"]
        for n in sorted(names):
            path = os.path.join(folder, n)
            if not n.endswith(".py") or n == "deployment.py":
                continue
            tree = ast.parse(open(path, encoding="utf-8").read(), path)
            docs = _docstrings(tree)
            where = "%s:%%d" % os.path.relpath(path, root)
            for node in ast.walk(tree):
                if isinstance(node, ast.Constant) and id(node) not in docs and (
                        node.value == 18789 or isinstance(node.value, str) and
                        LITERAL.search(node.value)):
                    found.append(where % node.lineno)
                elif isinstance(node, ast.Assign) and any(
                        isinstance(t, ast.Name) and FACT_NAMES.search(t.id)
                        for t in node.targets) and isinstance(node.value, ast.Constant):
                    found.append(where % node.lineno)
                elif isinstance(node, ast.Compare) and any(
                        isinstance(c, ast.Constant) and c.value in (1000, "1000")
                        for c in node.comparators):
                    found.append(where % node.lineno)
    return found


def test_no_fact_is_written_out_twice():
    assert copies(BOOTSTRAP) == []


def test_a_planted_copy_is_found(tmp_path):
    copy = str(tmp_path / "bootstrap")
    shutil.copytree(BOOTSTRAP, copy, ignore=shutil.ignore_patterns("__pycache__"))
    with open(os.path.join(copy, "claw_cage", "verify", "exposure.py"), "a") as f:
        f.write('\nPORT = "127.0.0.1:18789"\nCONTAINER_UID = 1000\n\n\ndef mine(uid):\n'
                '    """uid 1000 and 18789 in prose are fine."""\n    return uid == "1000"\n')
    lines = open(os.path.join(copy, "claw_cage", "verify", "exposure.py")).read().splitlines()
    found = sorted(int(w.rsplit(":", 1)[1]) for w in copies(copy))
    assert [lines[n - 1].strip() for n in found] == [
        'PORT = "127.0.0.1:18789"', "CONTAINER_UID = 1000", 'return uid == "1000"']


def test_the_facts_are_those_of_the_compose_file():
    for name in ("docker-compose.yml", "docker-compose.api-only.yml"):
        text = open(os.path.join(ROOT, "deploy", name), encoding="utf-8").read()
        assert re.search(r"^name: %s$" % deployment.PROJECT, text, re.M), name
        assert re.search(r'^    user: "%s"$' % deployment.USER, text, re.M), name
        assert "${%s:?" % deployment.TOKEN_VAR in text, name
        for volume in (deployment.STATE, deployment.SECRETS):
            assert re.search(r"^  %s:$" % volume, text, re.M), (name, volume)
    text = open(os.path.join(ROOT, "deploy", "docker-compose.yml"), encoding="utf-8").read()
    assert '"%s:%d"' % (deployment.GATEWAY_ADDRESS, deployment.GATEWAY_PORT) in text
    assert "- " + deployment.HEALTH_URL + "\n" in text
