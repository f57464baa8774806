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
# The package graph of docs/design.md, modes over services over plumbing: which subpackage may
# import which other one, always through its face (the __init__ names). Every subpackage has an
# entry (a new one without its place in the graph fails), and the graph has no loop.
MAY_IMPORT = {
    # modes only cli imports
    "verify": ("firewall", "install", "egress", "proxy", "backup"),   # reads what they made
    "profiles": ("firewall", "egress"),     # --firewall: the rules, and the proxy's service
    "proxmox": ("firewall",),               # the rule table, rendered for the VM
    "harden": (),
    # modes that are also services of the ones above
    "install": ("backup", "egress"),        # the guard around an upgrade; keys --firewall moves
    "backup": ("egress",),                  # the program copy the units share; which .env
                                            # variables are keys (left out)
    "egress": ("proxy",),                   # proxy.json's format, owned by its reader
    "proxy": ("firewall",),                 # the blocked ranges of the rule table
    "firewall": (),
}
MODES = tuple(sorted(MAY_IMPORT))


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


def _subpackages(pkg=PKG):
    return sorted(d for d in os.listdir(pkg) if os.path.isfile(os.path.join(pkg, d, "__init__.py")))


def test_every_subpackage_has_its_place_in_the_graph():
    assert _subpackages() == sorted(MAY_IMPORT)


def _loop(graph):
    """A package that reaches itself through the allowed edges, or None."""
    def reach(start, seen):
        for nxt in graph[start]:
            if nxt not in seen:
                seen.add(nxt)
                reach(nxt, seen)
        return seen
    return next((p for p in sorted(graph) if p in reach(p, set())), None)


def test_the_graph_has_no_loop():
    assert _loop(MAY_IMPORT) is None
    assert _loop(dict(MAY_IMPORT, firewall=("profiles",))) is not None   # the check can fail


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


def test_cross_package_imports_use_the_faces():
    """A package reaches another only through what that one's __init__ exposes."""
    exposed = {}
    for mode in MODES:
        init = ast.parse(open(os.path.join(PKG, mode, "__init__.py")).read())
        names = set()
        for node in ast.walk(init):
            if isinstance(node, ast.ImportFrom):
                names.update(a.asname or a.name for a in node.names)
            elif isinstance(node, ast.FunctionDef):
                names.add(node.name)
        exposed[mode] = names
    bad = []
    for sub, name in [(s, n) for s in MODES for n in sorted(os.listdir(os.path.join(PKG, s)))]:
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


# ---- no import loops, and package faces stay faces ------------------------------------------

def _module_names(pkg_dir):
    """{dotted name: path} of every module under pkg_dir (a package's own name for its
    __init__.py)."""
    base = os.path.basename(pkg_dir)
    found = {}
    for folder, dirs, names in os.walk(pkg_dir):
        dirs[:] = [d for d in dirs if d != "__pycache__"]
        rel = os.path.relpath(folder, os.path.dirname(pkg_dir)).replace(os.sep, ".")
        for n in names:
            if n.endswith(".py") and n != "__main__.py":
                found[rel if n == "__init__.py" else rel + "." + n[:-3]] = os.path.join(folder, n)
    assert base in found
    return found


def _import_graph(pkg_dir):
    """{module: set of modules it imports}, every import statement counted (a deferred import
    inside a function closes a loop as surely as one at the top). A module's own parent
    packages are left out: Python has them initialised before the module runs."""
    modules = _module_names(pkg_dir)
    graph = {}
    for name, path in modules.items():
        is_pkg = path.endswith("__init__.py")
        here = name.split(".") if is_pkg else name.split(".")[:-1]
        edges = set()
        for level, module, names in _imports(path):
            if level:
                base = here[:len(here) - (level - 1)]
                target = ".".join(base + ([module] if module else []))
            else:
                target = module
            if target not in modules:
                continue
            edges.add(target)
            edges.update(target + "." + n for n in names if target + "." + n in modules)
        parents = {".".join(name.split(".")[:i]) for i in range(1, len(name.split(".")))}
        graph[name] = edges - parents - {name}
    return graph


def import_cycles(pkg_dir):
    """Every import loop, each as [a, b, ..., a] (one per strongly connected group)."""
    graph = _import_graph(pkg_dir)
    index, low, stack, on, loops = {}, {}, [], set(), []

    def visit(v):   # Tarjan's algorithm; the package is small, recursion depth stays low
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                loops.append(sorted(group) + [sorted(group)[0]])

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return loops


def _copy_of_the_package(tmp_path):
    copy = str(tmp_path / "claw_cage")
    shutil.copytree(PKG, copy, ignore=shutil.ignore_patterns("__pycache__"))
    return copy


def test_no_import_cycles():
    assert import_cycles(PKG) == []


def test_a_planted_import_loop_is_found(tmp_path):
    copy = _copy_of_the_package(tmp_path)
    assert import_cycles(copy) == []            # control: the copy is as clean as the tree
    with open(os.path.join(copy, "firewall", "rules.py"), "a") as f:
        f.write("\n\ndef _late():\n    from . import allow  # deferred: still a loop\n")
    assert import_cycles(copy) == [["claw_cage.firewall.allow", "claw_cage.firewall.rules",
                                    "claw_cage.firewall.allow"]]


def init_logic(pkg_dir):
    """Statements in a package's __init__.py other than its docstring, imports and constant
    assignments (__all__, __version__): logic belongs in a named module."""
    found = []
    for folder, dirs, names in os.walk(pkg_dir):
        dirs[:] = [d for d in dirs if d != "__pycache__"]
        if "__init__.py" not in names:
            continue
        path = os.path.join(folder, "__init__.py")
        tree = ast.parse(open(path, encoding="utf-8").read(), path)
        for i, node in enumerate(tree.body):
            if i == 0 and isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
                continue
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                continue
            if isinstance(node, ast.Assign):
                try:
                    ast.literal_eval(node.value)
                    continue
                except ValueError:
                    pass
            found.append("%s:%d %s" % (os.path.relpath(path, pkg_dir), node.lineno,
                                       type(node).__name__))
    return found


def test_package_faces_hold_no_logic():
    assert init_logic(PKG) == []


def test_a_planted_def_in_a_face_is_found(tmp_path):
    copy = _copy_of_the_package(tmp_path)
    assert init_logic(copy) == []
    with open(os.path.join(copy, "harden", "__init__.py"), "a") as f:
        f.write("\n\ndef helper():\n    return 1\n")
    assert init_logic(copy) == [os.path.join("harden", "__init__.py") + ":%d FunctionDef"
                                % (len(open(os.path.join(copy, "harden", "__init__.py"))
                                       .read().splitlines()) - 1)]


# `$` also matches before a final "\n": re.match(r"^[a-z]+$", "x\n") accepts a newline that
# then splits a log line or a config file. A pattern that guards input uses fullmatch (or
# \Z); `$` at the end stays only with re.M, where lines are meant.
_RE_CALLS = ("compile", "match", "search", "fullmatch", "sub", "findall", "split")


def dollar_anchored(pkg_dir):
    """["path:line"] of re calls whose literal pattern ends with `$` and has no re.M."""
    found = []
    for folder, dirs, names in os.walk(pkg_dir):
        dirs[:] = [d for d in dirs if d != "__pycache__"]
        for name in (n for n in names if n.endswith(".py")):
            path = os.path.join(folder, name)
            for node in ast.walk(ast.parse(open(path, encoding="utf-8").read(), path)):
                if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                        and isinstance(node.func.value, ast.Name)
                        and node.func.value.id == "re" and node.func.attr in _RE_CALLS
                        and node.args):
                    continue
                pat = node.args[0]
                pat = pat.left if isinstance(pat, ast.BinOp) else pat
                if not (isinstance(pat, ast.Constant) and isinstance(pat.value, str)):
                    continue
                multiline = any(isinstance(n, ast.Attribute) and n.attr in ("M", "MULTILINE")
                                for a in node.args[1:] + [k.value for k in node.keywords]
                                for n in ast.walk(a))
                if re.search(r"(?<!\\)\$\)*\Z", pat.value) and not multiline:
                    found.append("%s:%d" % (os.path.relpath(path, pkg_dir), node.lineno))
    return found


def test_no_pattern_guards_input_with_a_final_dollar():
    assert dollar_anchored(PKG) == []


def test_a_planted_dollar_anchor_is_found(tmp_path):
    copy = _copy_of_the_package(tmp_path)
    path = os.path.join(copy, "proxy", "policy.py")
    with open(path, "a") as f:
        f.write('\n_BAD = re.compile(r"^[a-z]+$")\n_OK = re.compile(r"^x$", re.M)\n')
    lines = len(open(path).read().splitlines())
    assert dollar_anchored(copy) == [os.path.join("proxy", "policy.py") + ":%d" % (lines - 1)]
