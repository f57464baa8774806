"""Reproducible builds (issue 14): `git checkout vX && python3 build.py` gives the release's
bytes. A build from a fresh clone at a commit equals a build from a working tree at that commit,
under every Python from 3.8 to the newest on this machine (pyenv's), under another umask and in
another locale. A release build names its tag and commit; a tree with changes never does.

The "working tree" is a scratch repository holding this tree's files as one commit (the tree
under test may itself have uncommitted changes), with the clutter a real working tree has:
__pycache__ folders, odd modification times, a dist/ folder. The clones are `git clone
--no-local`, as fresh as a clone from GitHub. When the repository under test is itself clean,
it is compared with a fresh clone of its own HEAD too (always so on CI)."""

import glob
import os
import shutil
import subprocess

import pytest

from conftest import PYTHON, ROOT, run_file

BUILD_OUT = os.path.join("dist", "claw-cage.pyz")
FIXED_ID = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.invalid",
            "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.invalid"}


def _version_of(python):
    r = subprocess.run([python, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                       stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    if r.returncode != 0:
        return None
    major, minor = r.stdout.decode().strip().split(".")
    return int(major), int(minor)


def pythons():
    """{(3, minor): interpreter} for every CPython 3.8+ here: pyenv's first, then python3.X
    on PATH, then the one running the tests."""
    cands = sorted(glob.glob("/root/.pyenv/versions/3.*/bin/python3")) + sorted(
        glob.glob(os.path.expanduser("~/.pyenv/versions/3.*/bin/python3")))
    cands += [shutil.which("python3.%d" % m) for m in range(8, 20)] + [PYTHON]
    found = {}
    for cand in cands:
        if cand and os.access(cand, os.X_OK):
            version = _version_of(cand)
            if version and version >= (3, 8):
                found.setdefault(version, cand)
    return found


PYTHONS = pythons()
NEWEST = max(PYTHONS)
# every minor from 3.8 to the newest one found: a gap is reported (skipped loudly), not hidden
WANTED = [(3, m) for m in range(8, NEWEST[1] + 1)]


def git(cwd, *args, env=None):
    full = dict(os.environ, **FIXED_ID)
    full.update(env or {})
    return subprocess.run(["git", "-C", str(cwd)] + list(args), check=True, env=full,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE).stdout.decode()


def build(tree, python=PYTHON, umask=None, env=None, out=None):
    """python3 build.py in `tree`, optionally under another umask and environment; returns
    (bytes, stderr). The command is exactly what a user types."""
    out = out or os.path.join(str(tree), BUILD_OUT)
    argv = [python, "build.py", "--out", out]
    if umask is not None:
        argv = ["sh", "-c", 'umask %s && exec "$@"' % umask, "sh"] + argv
    full = {k: v for k, v in os.environ.items() if not k.startswith(("LC_", "LANG", "PYTHON"))}
    full.update(env or {})
    r = subprocess.run(argv, cwd=str(tree), env=full, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE)
    assert r.returncode == 0, r.stderr.decode()
    with open(out, "rb") as f:
        return f.read(), r.stderr.decode()


def fresh_clone(repo, dest, commit="HEAD"):
    subprocess.run(["git", "clone", "--quiet", "--no-local", str(repo), str(dest)], check=True)
    git(dest, "checkout", "--quiet", "--detach", git(repo, "rev-parse", commit).strip())
    return dest


def make_scratch_repo(path):
    """This tree's files (tracked and untracked-not-ignored, as they are now) as one commit."""
    names = subprocess.run(["git", "-C", ROOT, "ls-files", "-co", "--exclude-standard", "-z"],
                           check=True, stdout=subprocess.PIPE).stdout.decode().split("\0")
    for name in filter(None, names):
        src = os.path.join(ROOT, name)
        if not os.path.isfile(src):
            continue  # deleted in the working tree
        dst = os.path.join(str(path), name)
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        shutil.copy2(src, dst)
    git(path, "init", "--quiet")
    git(path, "add", "-A")
    git(path, "commit", "--quiet", "-m", "snapshot of the tree under test")
    return path


def clutter(tree):
    """What a working tree collects: bytecode caches, a build output, odd mtimes, umask 002."""
    subprocess.run([PYTHON, "-m", "compileall", "-q", os.path.join(str(tree), "bootstrap")],
                   check=True)
    os.makedirs(os.path.join(str(tree), "dist"), exist_ok=True)
    for folder, _, files in os.walk(os.path.join(str(tree), "bootstrap")):
        for i, name in enumerate(files):
            os.utime(os.path.join(folder, name), (1e9 + i * 7919, 1e9 + i * 7919))


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    repo = make_scratch_repo(tmp_path_factory.mktemp("work"))
    clutter(repo)
    data, _ = build(repo, umask="002")
    return repo, data


# Another locale: plain ASCII with Python's locale coercion and UTF-8 mode off (the strictest
# a Python 3.8+ can be made), or C.UTF-8; a missing locale name falls back to C.
LOCALES = [{"LC_ALL": "C", "LANG": "C", "PYTHONCOERCECLOCALE": "0", "PYTHONUTF8": "0"},
           {"LANG": "C.UTF-8"},
           {"LC_ALL": "tr_TR.UTF-8", "LANG": "tr_TR.UTF-8"}]


@pytest.mark.parametrize("version", WANTED, ids=["py%d.%d" % v for v in WANTED])
def test_a_fresh_clone_builds_the_working_trees_bytes_under_every_python(
        work, version, tmp_path):
    if version not in PYTHONS:
        pytest.skip("NO PYTHON %d.%d ON THIS MACHINE, NOT COMPARED (pyenv install %d.%d)"
                    % (version + version))
    repo, expected = work
    clone = fresh_clone(repo, tmp_path / "clone")
    for i, env in enumerate(LOCALES):
        data, _ = build(clone, PYTHONS[version], umask="077" if i % 2 == 0 else "022",
                        env=env, out=str(tmp_path / ("out%d.pyz" % i)))
        assert data == expected, "Python %d.%d, %r: other bytes than the working tree's" % (
            version + (env,))


def test_a_clone_with_crlf_line_endings_still_builds_the_same_bytes(work, tmp_path):
    """git on Windows converts LF to CRLF on checkout (core.autocrlf=true); .gitattributes pins
    LF for everything the build reads, so such a clone builds the same bytes too."""
    repo, expected = work
    clone = tmp_path / "crlf"
    subprocess.run(["git", "-c", "core.autocrlf=true", "clone", "--quiet", "--no-local",
                    str(repo), str(clone)], check=True)
    git(clone, "config", "core.autocrlf", "true")
    data, _ = build(clone)
    assert data == expected


def test_this_machine_has_python_38_and_a_newer_one():
    """The comparison above means something only across versions."""
    if (3, 8) not in PYTHONS or len(PYTHONS) < 2:
        pytest.skip("NOT ENOUGH PYTHONS HERE (found %s): install 3.8 and a newer one with pyenv"
                    % sorted(PYTHONS))
    assert NEWEST > (3, 8)


def test_the_repository_under_test_equals_a_fresh_clone_of_its_head(tmp_path):
    """The real thing, not a snapshot: on CI the checkout is clean, and its build must equal a
    build from a fresh clone of the same commit."""
    status = subprocess.run(["git", "-C", ROOT, "status", "--porcelain", "--untracked-files=all",
                             "--", "build.py", "bootstrap", "deploy"],
                            stdout=subprocess.PIPE, check=True).stdout.decode()
    if status.strip():
        pytest.skip("THE TREE UNDER TEST HAS UNCOMMITTED CHANGES, NOT COMPARED WITH ITS HEAD "
                    "(the scratch-repository tests above cover it): %s" % status.split("\n")[0])
    here, _ = build(ROOT, out=str(tmp_path / "here.pyz"))
    clone = fresh_clone(ROOT, tmp_path / "clone")
    there, _ = build(clone, umask="077", env=LOCALES[0])
    assert here == there


# ---- what a build calls itself ---------------------------------------------------------------

def _version(pyz):
    r = run_file(str(pyz), ["--version"])
    assert r.returncode == 0, r.stderr
    return r.stdout.decode().strip()


def _program_version():
    import re
    text = open(os.path.join(ROOT, "bootstrap", "claw_cage", "__init__.py")).read()
    return re.search(r'__version__ = "(.*)"', text).group(1)


@pytest.fixture
def repo(tmp_path):
    """A clean clone of the scratch snapshot whose tags this test may change."""
    src = make_scratch_repo(tmp_path / "snap")
    return fresh_clone(src, tmp_path / "repo")


def test_a_build_at_the_release_tag_names_the_tag_and_the_commit(repo):
    version = _program_version()
    commit = git(repo, "rev-parse", "HEAD").strip()
    git(repo, "tag", "-a", "v" + version, "-m", "release")
    data, _ = build(repo)
    line = _version(os.path.join(str(repo), BUILD_OUT))
    assert line == "claw-cage %s (release v%s, VelocityPulse/claw-cage@%s)" % (
        version, version, commit)
    assert data.startswith(("(  # claw-cage %s (release v%s, VelocityPulse/claw-cage@%s)"
                            % (version, version, commit[:12])).encode())
    # the control: the same commit without the tag is no release, and differs only in that
    git(repo, "tag", "-d", "v" + version)
    build(repo)
    assert _version(os.path.join(str(repo), BUILD_OUT)) == \
        "claw-cage %s (VelocityPulse/claw-cage@%s)" % (version, commit)


@pytest.mark.parametrize("change", ["edit", "untracked", "deploy"])
def test_a_tree_with_changes_says_dirty_and_never_names_the_release(repo, change):
    version = _program_version()
    git(repo, "tag", "v" + version)
    if change == "edit":
        with open(os.path.join(str(repo), "bootstrap", "claw_cage", "ui.py"), "a") as f:
            f.write("# a local edit\n")
    elif change == "untracked":
        with open(os.path.join(str(repo), "bootstrap", "claw_cage", "extra.py"), "w") as f:
            f.write("X = 1\n")
    else:
        with open(os.path.join(str(repo), "deploy", ".env.example"), "a") as f:
            f.write("# a local edit\n")
    _, err = build(repo)
    line = _version(os.path.join(str(repo), BUILD_OUT))
    assert line.startswith("claw-cage %s+dirty (" % version), line
    assert "release" not in line and "v" + version not in line
    assert "uncommitted changes" in err


def test_another_v_tag_or_an_older_tag_is_never_claimed(repo):
    version = _program_version()
    git(repo, "tag", "v99.0.0")
    _, err = build(repo)
    line = _version(os.path.join(str(repo), BUILD_OUT))
    assert "release" not in line and "v99.0.0" in err
    # the release tag on the parent commit: HEAD is not that release
    git(repo, "tag", "v" + version)
    git(repo, "commit", "--quiet", "--allow-empty", "-m", "after the release")
    build(repo)
    assert "release" not in _version(os.path.join(str(repo), BUILD_OUT))


CHECK_PAYLOAD = r'''
import ast, importlib.util, sys, warnings
spec = importlib.util.spec_from_file_location("build_under_check", sys.argv[1] + "/build.py")
build = importlib.util.module_from_spec(spec)
spec.loader.exec_module(build)
unpack = build.unpack
warnings.simplefilter("error")   # 3.12+ warns of `1if` and bad escapes: none may appear
with open(sys.argv[2], encoding="utf-8") as f:
    text = f.read()
for name, shipped in sorted(unpack(text.rsplit('"""', 2)[-2][1:-1]).items()):
    tree = ast.parse(compile(shipped, name, "exec", ast.PyCF_ONLY_AST))
    if name == "claw_cage/buildinfo.py":
        continue
    # the build's own processing (renamings, stripping) run by this Python gives the same
    # bytes: the shipped modules do not depend on the Python that built them
    assert build.package_files_map()[name] == shipped.encode("utf-8"), name
    print(name)
'''


@pytest.mark.parametrize("version", WANTED, ids=["py%d.%d" % v for v in WANTED])
def test_every_python_reads_the_shipped_modules_as_their_source(version, tmp_path):
    """strip_source writes tokens with only the spaces Python needs, on one tokenizer; each
    Python from 3.8 to the newest must read every shipped module as the same syntax tree as
    its source (docstrings aside), without a warning, and unpack the payload the same way."""
    if version not in PYTHONS:
        pytest.skip("NO PYTHON %d.%d ON THIS MACHINE, NOT CHECKED (pyenv install %d.%d)"
                    % (version + version))
    out = str(tmp_path / "claw-cage.pyz")
    subprocess.run([PYTHON, os.path.join(ROOT, "build.py"), "--out", out], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    r = subprocess.run([PYTHONS[version], "-B", "-c", CHECK_PAYLOAD, ROOT, out,
                        os.path.join(ROOT, "bootstrap")], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, cwd=str(tmp_path))
    assert r.returncode == 0, r.stderr.decode()[-2000:]
    assert len(r.stdout.decode().split()) >= 20
