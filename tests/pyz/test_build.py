"""build.py and the file it builds: runs the same by path, from stdin and from a pipe; a cut
download never runs; the current directory never shadows the standard library; old Pythons
get one clear line; two builds are byte-identical; build facts are embedded."""

import hashlib
import importlib.util
import os
import re
import shutil
import subprocess

import pytest

from conftest import PYTHON, ROOT, build_pyz, find_python, run_file

HOWS = ("path", "stdin", "pipe")


def load_build():
    spec = importlib.util.spec_from_file_location("build_under_test", os.path.join(ROOT, "build.py"))
    build = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build)
    return build


def payload_modules(path):
    """{"claw_cage/x.py": source} carried inside a built file."""
    text = open(path, encoding="utf-8").read()
    return load_build().unpack(text.rsplit('"""', 2)[-2][1:-1])


def git(*args):
    return subprocess.run(["git", "-C", ROOT] + list(args), stdout=subprocess.PIPE,
                          check=True).stdout.decode().strip()


@pytest.mark.parametrize("args", [["--version"], ["--help"], ["--bogus"],
                                  ["--verify", "--source", "x"]])
def test_the_three_ways_to_run_behave_identically(pyz, args):
    results = [run_file(pyz, args, how=how) for how in HOWS]
    assert len({(r.returncode, r.stdout, r.stderr) for r in results}) == 1, results
    assert results[0].stdout or results[0].stderr


def test_version_and_help(pyz):
    r = run_file(pyz, ["--version"])
    assert r.returncode == 0
    # a tree with uncommitted changes says so ("+dirty"); a tagged release build is checked in
    # test_reproducible.py
    dirty = git("status", "--porcelain", "--untracked-files=all", "--", "build.py",
                "bootstrap", "deploy")
    assert r.stdout.decode().strip() == "claw-cage %s%s (VelocityPulse/claw-cage@%s)" % (
        re.search(r'__version__ = "(.*)"',
                  open(os.path.join(ROOT, "bootstrap/claw_cage/__init__.py")).read()).group(1),
        "+dirty" if dirty else "", git("rev-parse", "HEAD"))
    help_text = run_file(pyz, ["--help"]).stdout.decode()
    for needle in ("--firewall", "--verify", "--dir", "--source", "--dry-run", "--yes",
                   "CLAW_CAGE_DIR", "CLAW_CAGE_SOURCE", "NO_COLOR", "exit status"):
        assert needle in help_text


def test_usage_errors_are_one_line_and_exit_2(pyz):
    for args in (["--bogus"], ["--firewall", "--verify"], ["--json", "--remove"], ["--remove"],
                 ["--firewall", "--remove", "--allow", "host:1"]):
        r = run_file(pyz, args)
        assert r.returncode == 2, args
        assert len(r.stderr.decode().strip().splitlines()) == 1, r.stderr
        assert r.stdout == b""


def test_a_cut_download_never_runs_and_never_exits_0(pyz, tmp_path):
    """Cut the file at ~300 offsets spread over its length and at each of the last 200 bytes;
    pipe each prefix into python3 as an install. None may exit 0 or create anything."""
    data = open(pyz, "rb").read()
    n = len(data)
    offsets = sorted(set(list(range(1, n, max(1, n // 300))) + list(range(n - 200, n))))
    target = tmp_path / "target"
    failures = []
    for off in offsets:
        r = run_file(pyz, ["--dir", str(target), "--source", os.path.join(ROOT, "deploy")],
                     input_bytes=data[:off], cwd=str(tmp_path), timeout=30)
        if r.returncode == 0 or target.exists() or r.stdout:
            failures.append((off, r.returncode, r.stdout[:100]))
    assert not failures, failures[:5]
    assert len(offsets) >= 450
    # The control: the uncut file, the same way, does install.
    r = run_file(pyz, ["--dir", str(target), "--source", os.path.join(ROOT, "deploy")],
                 input_bytes=data, cwd=str(tmp_path), env={"PATH": os.environ["PATH"]})
    assert r.returncode in (0, 3), r.stderr  # 3 only if this machine lacks docker compose v2


SHADOWS = ("json", "zipfile", "binascii", "base64", "argparse", "hashlib", "urllib",
           "importlib", "claw_cage", "logging", "re", "secrets", "tempfile")


def _plant_shadows(directory, marker):
    for mod in SHADOWS:
        (directory / (mod + ".py")).write_text(
            "open(%r, 'a').write(%r)\nraise SystemExit('shadowed %s')\n" % (str(marker),
                                                                         mod + "\n", mod))


@pytest.mark.parametrize("how", HOWS)
def test_the_current_directory_never_shadows_the_standard_library(pyz, tmp_path, how):
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    marker = tmp_path / "imported"
    _plant_shadows(cwd, marker)
    path = pyz
    if how == "path":  # with `python3 FILE`, FILE's own folder is the danger
        path = str(cwd / "claw-cage.pyz")
        shutil.copy(pyz, path)
    target = tmp_path / "t"
    r = run_file(path, ["--dir", str(target), "--source", os.path.join(ROOT, "deploy"),
                        "--dry-run"], how=how, cwd=str(cwd))
    assert not marker.exists(), marker.read_text()
    assert b"shadowed" not in r.stderr
    assert r.returncode in (0, 3), r.stderr
    # The control: the same planted files ARE imported by a plain `python3 -` here.
    subprocess.run([PYTHON, "-"], input=b"import json\n", cwd=str(cwd),
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert marker.exists()


@pytest.mark.parametrize("version", ["3.6", "3.7"])
def test_old_python_gets_one_clear_line(pyz, version, tmp_path):
    py = find_python(version)
    for how in HOWS:
        r = run_file(pyz, ["--dir", str(tmp_path / "t")], how=how, python=py)
        err = r.stderr.decode().strip()
        assert r.returncode == 3, err
        assert err.splitlines() == [err] and "Python 3.8 or newer is required" in err
        assert "this is Python %s" % version in err
    assert not (tmp_path / "t").exists()


def test_runs_on_python_38(pyz):
    py = find_python("3.8")
    for how in HOWS:
        r = run_file(pyz, ["--version"], how=how, python=py)
        assert r.returncode == 0 and r.stdout.startswith(b"claw-cage "), r.stderr


def test_two_builds_are_byte_identical_whatever_the_mtimes(tmp_path):
    first = build_pyz(str(tmp_path / "a.pyz"))
    stamp = 1234567890
    touched = []
    for base in ("bootstrap", "deploy"):
        for dirpath, _, files in os.walk(os.path.join(ROOT, base)):
            for f in files:
                p = os.path.join(dirpath, f)
                touched.append((p, os.stat(p)))
                os.utime(p, (stamp, stamp))
    try:
        second = build_pyz(str(tmp_path / "b.pyz"))
    finally:
        for p, st in touched:
            os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))
    a, b = open(first, "rb").read(), open(second, "rb").read()
    assert hashlib.sha256(a).hexdigest() == hashlib.sha256(b).hexdigest()
    # and the build is not trivially constant: another repo name changes it
    third = open(build_pyz(str(tmp_path / "c.pyz"), "--repo", "someone/fork"), "rb").read()
    assert third != a


def test_build_embeds_version_ref_repo_and_deploy_hashes(tmp_path):
    out = build_pyz(str(tmp_path / "x.pyz"), "--repo", "someone/fork", "--ref", "v9.9.9")
    r = run_file(out, ["--version"])
    assert r.stdout.decode().strip().endswith("(someone/fork@v9.9.9)")
    info = {}
    exec(payload_modules(out)["claw_cage/buildinfo.py"], info)
    assert info["REPO"] == "someone/fork" and info["GIT_REF"] == "v9.9.9"
    deploy = os.path.join(ROOT, "deploy")
    expected = {n: hashlib.sha256(open(os.path.join(deploy, n), "rb").read()).hexdigest()
                for n in os.listdir(deploy)}
    assert info["DEPLOY_SHA256"] == expected
    assert {"docker-compose.yml", ".env.example", "iptables-rules.sh"} <= set(expected)


def test_tracebacks_and_inspect_show_the_modules_source(pyz):
    """The modules load from memory, yet a traceback names "claw-cage.pyz/claw_cage/x.py" with
    its source lines, and inspect.getsource works (the loader's get_source)."""
    code = ("import sys, inspect, traceback\n"
            "sys.argv = ['claw-cage.pyz', '--version-not']\n"
            "try:\n"
            "    exec(compile(open(sys.argv_pyz).read(), 'x', 'exec'), {'__name__': '__main__'})\n"
            "except SystemExit:\n"
            "    pass\n"
            "import claw_cage.cli as cli\n"
            "print(cli.__file__)\n"
            "print(inspect.getsource(cli.main).splitlines()[0])\n"
            "try:\n"
            "    cli.main([object()])\n"
            "except Exception:\n"
            "    traceback.print_exc(file=sys.stdout)\n").replace("sys.argv_pyz", repr(pyz))
    out = subprocess.run([PYTHON, "-c", code], stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL).stdout.decode()
    lines = out.splitlines()
    assert lines[0] == "claw-cage.pyz/claw_cage/cli.py", out
    assert lines[1].startswith("def main("), out
    frame = out.index('File "claw-cage.pyz/claw_cage/cli.py"')
    assert out[frame:].splitlines()[1].strip(), out  # the source line under the frame


def test_a_python_without_bz2_gets_one_clear_line(pyz, tmp_path):
    """_bz2 is missing from a python3-minimal alone or a Python built without libbz2: a
    stand-in that fails to import as the real absence does."""
    (tmp_path / "_bz2.py").write_text("raise ImportError(\"No module named '_bz2'\")\n")
    for how in HOWS:
        r = run_file(pyz, ["--help"], how=how, env={"PYTHONPATH": str(tmp_path)})
        err = r.stderr.decode().strip()
        assert r.returncode == 3 and err.splitlines() == [err], err
        assert "lacks its bz2 module" in err and r.stdout == b""
    assert run_file(pyz, ["--version"], env={"PYTHONPATH": str(tmp_path)}).returncode == 0


def test_build_refuses_a_bad_repo_name(tmp_path):
    r = subprocess.run([PYTHON, os.path.join(ROOT, "build.py"), "--repo", "nope",
                        "--out", str(tmp_path / "x")], stderr=subprocess.PIPE)
    assert r.returncode == 2 and not (tmp_path / "x").exists()


# ---- the payload carries the source without comments and docstrings (build.strip_source) ----

def _without_docstrings(tree):
    """The syntax tree with every lone-string statement emptied, as strip_source does."""
    import ast
    for node in ast.walk(tree):
        if (isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
                and isinstance(node.value.value, str)):
            node.value.value = ""
    return tree


def _private_plans(build):
    """{member: the build's private_plan} for every module, as package_files decides it."""
    import re
    texts, named = {}, _shipped_named(build)
    for path, source in _modules():
        if not path.endswith("buildinfo.py"):
            member = os.path.relpath(path, os.path.join(ROOT, "bootstrap")).replace(os.sep, "/")
            texts[member] = build.strip_source(build.rename_locals(source, named))
    launcher = open(os.path.join(ROOT, "bootstrap", "launcher.py"), encoding="utf-8").read()
    plans = {}
    for member, text in texts.items():
        elsewhere = set(re.findall(r"[A-Za-z_]\w*", launcher))
        for other, t in texts.items():
            if other != member:
                elsewhere |= set(re.findall(r"[A-Za-z_]\w*", t))
        plans[member] = build.private_plan(text, elsewhere)
    return plans


def test_payload_modules_are_the_source_token_for_token(pyz):
    """Every module in the built file parses to the same syntax tree as its source, docstrings
    and the renamed locals aside: nothing but comments and docstrings was dropped, every string
    kept byte for byte."""
    import ast
    archive = payload_modules(pyz)
    privates = _private_plans(load_build())
    pkg = os.path.join(ROOT, "bootstrap")
    checked = 0
    for folder, _dirs, names in os.walk(os.path.join(pkg, "claw_cage")):
        for name in names:
            if not name.endswith(".py") or name == "buildinfo.py":
                continue
            path = os.path.join(folder, name)
            member = os.path.relpath(path, pkg).replace(os.sep, "/")
            shipped = archive[member]
            source = open(path, encoding="utf-8").read()
            # the renamings, each proven a pure respelling below
            build = load_build()
            expected = ast.parse(build.rename_locals(source, _shipped_named(build)))
            plan = privates.get(member, {})
            for node in ast.walk(expected):
                if isinstance(node, ast.Name):
                    node.id = plan.get(node.id, node.id)
            for node in expected.body:
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                    node.name = plan.get(node.name, node.name)
            assert ast.dump(ast.parse(shipped)) == ast.dump(_without_docstrings(expected)), member
            assert len(shipped) < len(source), member
            checked += 1
    assert checked >= 20


def test_strip_source_keeps_what_looks_like_a_comment_inside_strings():
    build = load_build()
    source = (
        '"""Module doc."""\n'
        "# a comment\n"
        "X = '#not a comment'  # but this is\n"
        "SCRIPT = r'''#!/bin/bash\n"
        "# kept: a bash comment inside a string\n"
        "\n"
        "echo hi\n"
        "'''\n"
        "\n"
        "def f():\n"
        '    """Only a docstring."""\n'
        "\n"
        "def g(a,\n"
        "      b):  # why\n"
        "    return (a +  # sum\n"
        "            b)\n")
    out = build.strip_source(source)
    assert "# a comment" not in out and "but this is" not in out and "# why" not in out
    assert "X='#not a comment'\n" in out
    assert "'''#!/bin/bash\n# kept: a bash comment inside a string\n\necho hi\n'''" in out
    namespace = {}
    exec(compile(out, "stripped", "exec"), namespace)
    assert namespace["f"]() is None and namespace["g"](2, 3) == 5
    assert "def g(a,b):\n return(a+b)\n" in out   # one line, one space per level
    assert namespace["SCRIPT"].startswith("#!/bin/bash\n# kept")


def test_strip_source_writes_spaces_only_where_python_needs_them():
    """Tokens written together must read as the same tokens: words, numbers, a number and a
    dot, operators that would merge; f-strings (tokenized piecewise since 3.12) stay whole.
    Compiled with every Python the build supports by test_reproducible.py's byte comparison."""
    import ast
    build = load_build()
    source = (
        "import os.path as p\n"
        "from . import x\n"
        "def f(a, *b, c=-1, **d) -> int:\n"
        "    y = 1 .real + 0x1f .bit_length() + a [0] if not a else - - a\n"
        "    z = [*b, * b], {**d}, a ** -2, a * -b if 0 else ...\n"
        "    w = f'{a!r:>{c}} {\"x\" if a else 1}' f\"{a = }\" 'x' \\\n"
        "        u'y', rb'\\\\', b'' b''\n"
        "    if (v := a) <= - 1 or a is not b and a not in b: return .5\n"
        "    lambda: (yield)\n"
        "    return x @ y, x//y, x<<1, x< -1, x<=y, x== -1, x!=y, a.b.c\n")
    out = build.strip_source(source)
    assert ast.dump(ast.parse(out)) == ast.dump(ast.parse(source))
    assert "y=1 .real+0x1f .bit_length()+a[0]if not a else--a" in out, out
    assert "return .5" in out and "[*b,*b],{**d},a**-2,a*-b" in out, out
    assert "f'{a!r:>{c}} {\"x\" if a else 1}'" in out, out


# ---- rename_locals changes spelling only: checked against the compiler's symbol tables ----

def _named():
    """This test's own reading of the names a caller could use for a parameter: every keyword
    argument and every whole-identifier string, in the program and the launcher."""
    import ast
    names = set()
    paths = [p for p, _ in _modules()] + [os.path.join(ROOT, "bootstrap", "launcher.py")]
    for path in paths:
        for node in ast.walk(ast.parse(open(path, encoding="utf-8").read())):
            if isinstance(node, ast.keyword) and node.arg:
                names.add(node.arg)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and \
                    node.value.isidentifier():
                names.add(node.value)
    return names


def _shipped_named(build):
    """The names the build keeps for parameters, as package_files computes them."""
    texts = [text for p, text in _modules() if not p.endswith("buildinfo.py")]
    texts.append(open(os.path.join(ROOT, "bootstrap", "launcher.py"), encoding="utf-8").read())
    return build.named_anywhere(texts)


def _modules():
    pkg = os.path.join(ROOT, "bootstrap", "claw_cage")
    for folder, _dirs, names in os.walk(pkg):
        for name in sorted(names):
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                yield path, open(path, encoding="utf-8").read()


def _same_but_renamed(a, b, plans, plan, where):
    """a (the source's tree) and b (the renamed one) are the same tree, except that each
    Name of a function's own scope is spelled as that function's plan says; inside a nested
    scope, the enclosing plan no longer holds (what Python evaluates in the enclosing scope,
    defaults, decorators, a comprehension's first iterable, keeps it)."""
    import ast
    assert type(a) is type(b), where
    if isinstance(a, ast.Name):
        assert b.id == plan.get(a.id, a.id), "%s line %d: %s became %s" % (
            where, a.lineno, a.id, b.id)
        return
    inner = plan
    if isinstance(a, (ast.FunctionDef, ast.AsyncFunctionDef)):
        inner = plans.get((a.name, a.lineno), {})
    elif isinstance(a, (ast.Lambda, ast.ClassDef, ast.ListComp, ast.SetComp, ast.DictComp,
                        ast.GeneratorExp)):
        inner = {}
    outer_fields = {"decorator_list", "returns", "bases", "keywords"}
    for field, va in ast.iter_fields(a):
        vb = getattr(b, field)
        if isinstance(va, list):
            assert isinstance(vb, list) and len(va) == len(vb), (where, field)
            pairs = list(zip(va, vb))
        else:
            pairs = [(va, vb)]
        for i, (x, y) in enumerate(pairs):
            if isinstance(x, ast.AST):
                here = plan if (field in outer_fields or inner is plan) else inner
                if field == "args" and isinstance(a, (ast.FunctionDef, ast.AsyncFunctionDef,
                                                       ast.Lambda)):
                    # defaults are evaluated outside: they keep the enclosing plan
                    _same_args(x, y, plans, plan, where,
                               [(a.name, a.lineno)] if hasattr(a, "name") else None)
                    continue
                if field == "generators" and i == 0:
                    _same_but_renamed(x.target, y.target, plans, {}, where)
                    _same_but_renamed(x.iter, y.iter, plans, plan, where)
                    for c, d in zip(x.ifs, y.ifs):
                        _same_but_renamed(c, d, plans, {}, where)
                    continue
                _same_but_renamed(x, y, plans, here, where)
            else:
                assert x == y, (where, field, x, y)


def _same_args(x, y, plans, plan, where, where_fn=None):
    import ast
    for d, e in zip(x.defaults + [k for k in x.kw_defaults if k],
                    y.defaults + [k for k in y.kw_defaults if k]):
        _same_but_renamed(d, e, plans, plan, where)
    inner = plans.get(where_fn[0], {}) if where_fn else {}
    assert [inner.get(a.arg, a.arg) for a in ast.walk(x) if isinstance(a, ast.arg)] == \
        [a.arg for a in ast.walk(y) if isinstance(a, ast.arg)], where


def _flags(sym):
    return (sym.is_local(), sym.is_global(), sym.is_declared_global(), sym.is_free(),
            sym.is_parameter(), sym.is_assigned(), sym.is_referenced(), sym.is_imported(),
            sym.is_namespace())


def _same_symbols(a, b, plans, where, module_plan=None):
    """The compiler's symbol tables of the source (a) and the renamed module (b) are the same
    tables, symbol for symbol with the same flags, under the renaming: a binding site the
    renaming missed (except ... as, import, def) leaves the old name bound and fails here."""
    plan = dict(module_plan or {})
    if a.get_type() == "function":
        plan.update(plans.get((a.get_name(), a.get_lineno()), {}))
    got = {s.get_name(): _flags(s) for s in b.get_symbols()}
    want = {plan.get(s.get_name(), s.get_name()): _flags(s) for s in a.get_symbols()}
    assert got == want, (where, a.get_name(), a.get_lineno(),
                         sorted(set(got.items()) ^ set(want.items())))
    ca, cb = a.get_children(), b.get_children()
    assert len(ca) == len(cb), (where, a.get_name())
    for x, y in zip(ca, cb):
        _same_symbols(x, y, plans, where, module_plan)


def test_renamed_locals_are_the_compilers_locals_and_nothing_else_changes():
    """For every function of the program and the launcher: each renamed name is, by the
    compiler's own symbol table, a local of that function (not a global, nonlocal or free
    name; a parameter only when no keyword argument and no whole string of the program holds
    its name, and never self, cls or a dunder method's), no nested scope mentions it, and its
    new name is mentioned nowhere in the function or below it; and the renamed module's
    syntax tree is the source's with exactly those names respelled."""
    import ast
    import symtable
    build = load_build()
    renamed_count = params = 0
    named, callers = _shipped_named(build), _named()
    launcher = os.path.join(ROOT, "bootstrap", "launcher.py")
    for path, source in list(_modules()) + [(launcher, open(launcher, encoding="utf-8").read())]:
        keep = named
        plans = {}
        for fn in ast.walk(ast.parse(source)):
            if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                plans[(fn.name, fn.lineno)] = build.rename_plan(fn, keep)[0]
        tables = [symtable.symtable(source, path, "exec")]
        seen = 0
        while tables:
            t = tables.pop()
            tables.extend(t.get_children())
            if t.get_type() != "function" or (t.get_name(), t.get_lineno()) not in plans:
                continue
            plan = plans[(t.get_name(), t.get_lineno())]
            below, todo = set(), list(t.get_children())
            while todo:
                c = todo.pop()
                below |= set(c.get_identifiers())
                todo.extend(c.get_children())
            for old, new in plan.items():
                sym = t.lookup(old)
                assert sym.is_local() and not (sym.is_global() or sym.is_free()
                                               or sym.is_nonlocal()), (path, old)
                if sym.is_parameter():
                    params += 1
                    assert old not in callers and old not in ("self", "cls"), (path, old)
                    assert not t.get_name().startswith("__"), (path, t.get_name(), old)
                assert old not in below and new not in below, (path, old, new)
                assert new not in t.get_identifiers(), (path, old, new)
            seen += len(plan)
        assert seen == sum(len(p) for p in plans.values()), path   # every plan was checked
        renamed_count += seen
        renamed = build.rename_locals(source, keep)
        _same_but_renamed(ast.parse(source), ast.parse(renamed), plans, {},
                          os.path.relpath(path, ROOT))
        _same_symbols(symtable.symtable(source, path, "exec"),
                      symtable.symtable(renamed, path, "exec"), plans, path)
    assert renamed_count > 500 and params > 100, (renamed_count, params)


def test_rename_locals_leaves_what_other_scopes_see():
    """The cases that would break a program: a closure's variable, a default evaluated
    outside, a comprehension reading a local, global/nonlocal, parameters, and a short name
    that a global already holds."""
    build = load_build()
    source = (
        "a = 1\n"
        "def f(param, *rest, **named):\n"
        "    counter = 0\n"
        "    shared = 2\n"
        "    listed = [3]\n"
        "    global total\n"
        "    total = 5\n"
        "    def inner(x=listed):\n"
        "        nonlocal counter\n"
        "        counter += shared\n"
        "    squares = [v * v for v in listed]\n"
        "    private_long_name = a + param\n"
        "    failure = None\n"
        "    try:\n"
        "        pass\n"
        "    except ValueError as failure:\n"
        "        return failure\n"
        "    return private_long_name, squares, inner\n")
    out = build.rename_locals(source, {"param"})   # a caller names param= somewhere
    for kept in ("counter", "shared", "listed", "total", "param", "failure"):
        assert out.count(kept) == source.count(kept), (kept, out)
    assert "rest" not in out and "named" not in out, out   # no caller can name these
    assert "private_long_name" not in out and "squares" not in out, out
    assert "a + param" in out   # the global a is not shadowed by a new local "a"
    ns = {}
    exec(compile(out, "x", "exec"), ns)
    got = ns["f"](1)
    assert got[:2] == (2, [9]) and ns["total"] == 5


def test_renamed_private_names_are_the_modules_own_and_nothing_else_changes():
    """Each module-level private name the build respells (build.private_plan) is, by the
    compiler's symbol tables, bound at module level and only read as that global below it; its
    new name appears in no scope of the module; and the respelled module is the same syntax
    tree with exactly those names changed. The shipped modules are what this yields."""
    import ast
    import re
    import symtable
    build = load_build()
    texts, named = {}, _shipped_named(build)
    for path, source in _modules():
        if not path.endswith("buildinfo.py"):
            texts[path] = build.strip_source(build.rename_locals(source, named))
    launcher = open(os.path.join(ROOT, "bootstrap", "launcher.py"), encoding="utf-8").read()
    renamed = 0
    for path, text in texts.items():
        elsewhere = set(re.findall(r"[A-Za-z_]\w*", launcher))
        for other, t in texts.items():
            if other != path:
                elsewhere |= set(re.findall(r"[A-Za-z_]\w*", t))
        plan = build.private_plan(text, elsewhere)
        out = build.rename_privates(text, elsewhere)
        top = symtable.symtable(text, path, "exec")
        tables, todo = [], list(top.get_children())
        while todo:
            t = todo.pop()
            tables.append(t)
            todo.extend(t.get_children())
        for old, new in plan.items():
            assert old not in elsewhere, (path, old)
            assert top.lookup(old).is_assigned() or top.lookup(old).is_namespace(), (path, old)
            for t in tables:
                if old in t.get_identifiers():
                    sym = t.lookup(old)
                    assert sym.is_global() and not (sym.is_local() or sym.is_parameter()), \
                        (path, t.get_name(), old)
                assert new not in t.get_identifiers(), (path, t.get_name(), new)
            assert new not in top.get_identifiers(), (path, new)
        _same_symbols(symtable.symtable(text, path, "exec"), symtable.symtable(out, path, "exec"),
                      {}, path, plan)
        a, b = ast.parse(text), ast.parse(out)
        tops = {id(n) for n in a.body}
        for x, y in zip(ast.walk(a), ast.walk(b)):
            assert type(x) is type(y), path
            for field, vx in ast.iter_fields(x):
                vy = getattr(y, field)
                if isinstance(vx, ast.AST) or (isinstance(vx, list) and vx and
                                               isinstance(vx[0], ast.AST)):
                    assert len(vx if isinstance(vx, list) else [vx]) == \
                        len(vy if isinstance(vy, list) else [vy]), (path, field)
                    continue
                if (isinstance(x, ast.Name) and field == "id") or (
                        field == "name" and id(x) in tops):
                    assert vy == plan.get(vx, vx), (path, vx, vy)
                else:
                    assert vx == vy, (path, field, vx, vy)
        renamed += len(plan)
    assert renamed > 50, renamed
