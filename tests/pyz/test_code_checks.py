"""The source tree itself: the layout table of docs/design.md matches it, imports point one way, bandit
finds nothing at medium severity. Each check reads the real tree, so moving a module without
updating that table, or importing `verify` from `firewall`, fails here."""

import ast
import os
import re
import shutil
import subprocess

import pytest

from conftest import ROOT

PKG = os.path.join(ROOT, "bootstrap", "claw_cage")
MODES = ("install", "firewall", "verify", "proxmox", "harden")
# Which subpackage may import which other one (through its __init__ names): the user's flow.
MAY_IMPORT = {"install": (), "firewall": (), "verify": ("firewall", "install"),
              "proxmox": ("firewall",), "harden": ()}


def _layout_rows():
    text = open(os.path.join(ROOT, "docs", "design.md"), encoding="utf-8").read()
    return re.findall(r"^\| `(bootstrap/claw_cage/[^`]*)` \|", text, re.M)


def _package_paths():
    found = []
    for folder, dirs, names in os.walk(PKG):
        dirs[:] = [d for d in dirs if d != "__pycache__"]
        rel = os.path.relpath(folder, ROOT).replace(os.sep, "/")
        if folder != PKG:
            found.append(rel + "/")
        found += [rel + "/" + n for n in names if n.endswith(".py") and n not in
                  ("__init__.py", "__main__.py")]
    return sorted(found)


def test_design_layout_table_lists_exactly_the_package():
    listed = sorted(_layout_rows())
    assert listed, "docs/design.md has no layout table rows for bootstrap/claw_cage/"
    assert listed == _package_paths()


def _imports(path):
    """(level, module, names) of every import statement in a file."""
    tree = ast.parse(open(path, encoding="utf-8").read(), path)
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            yield node.level, node.module or "", [a.name for a in node.names]
        elif isinstance(node, ast.Import):
            for a in node.names:
                yield 0, a.name, []


def _targets(sub, level, module, names):
    """Top-level parts of claw_cage a relative import in subpackage `sub` reaches."""
    if level == 0:
        parts = module.split(".")
        return [parts[1]] if parts[0] == "claw_cage" and len(parts) > 1 else []
    if sub is None or level == 2:          # from the package root (or from .. in a subpackage)
        return [module.split(".")[0]] if module else list(names)
    return [sub]                           # within the same subpackage


@pytest.mark.parametrize("sub", (None,) + MODES, ids=("plumbing",) + MODES)
def test_imports_point_one_way(sub):
    folder = PKG if sub is None else os.path.join(PKG, sub)
    bad = []
    for name in sorted(os.listdir(folder)):
        if not name.endswith(".py") or (sub is None and name in ("cli.py", "__main__.py")):
            continue  # cli picks the mode: the one place that imports the subpackages
        for level, module, names in _imports(os.path.join(folder, name)):
            for target in _targets(sub, level, module, names):
                if target in MODES and target != sub and target not in MAY_IMPORT.get(sub, ()):
                    bad.append("%s imports %s" % (os.path.join(sub or "", name), target))
    assert not bad


def test_cross_mode_imports_use_the_subpackage_names():
    """verify reaches firewall and install only through what their __init__ exposes."""
    exposed = {}
    for mode in ("firewall", "install"):
        init = ast.parse(open(os.path.join(PKG, mode, "__init__.py")).read())
        names = set()
        for node in ast.walk(init):
            if isinstance(node, ast.ImportFrom):
                names.update(a.asname or a.name for a in node.names)
            elif isinstance(node, ast.FunctionDef):
                names.add(node.name)
        exposed[mode] = names
    bad = []
    for sub, name in [(s, n) for s in ("verify", "proxmox")
                      for n in sorted(os.listdir(os.path.join(PKG, s)))]:
        if not name.endswith(".py"):
            continue
        for level, module, names in _imports(os.path.join(PKG, sub, name)):
            if level == 2 and module in exposed:
                bad += ["%s/%s: %s.%s" % (sub, name, module, n) for n in names
                        if n not in exposed[module]]
            elif level == 2 and module.split(".")[0] in exposed:
                bad.append("%s/%s imports %s directly" % (sub, name, module))
    assert not bad


def test_bandit_finds_nothing_at_medium_severity():
    bandit = shutil.which("bandit")
    assert bandit, "bandit is installed by tests/run (tests/requirements.txt)"
    r = subprocess.run([bandit, "-q", "-r", "-ll", os.path.join(ROOT, "bootstrap"),
                        os.path.join(ROOT, "build.py")], stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, universal_newlines=True, cwd=ROOT)
    assert r.returncode == 0, r.stdout
