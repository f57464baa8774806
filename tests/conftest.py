"""Shared test harness: the BUILT program, run the way users run it.

Fixtures:
  pyz          path of a fresh build of claw-cage.pyz (built once per session by build.py)
  run_pyz      run it: run_pyz(args, how="pipe"|"stdin"|"path", env=..., cwd=..., input_bytes=...)
Helpers:
  must_run()        True under CI (CI=true): there, a test that cannot run is a FAILURE, because
                    on this project's machines every test must run
  refuse(msg)       this test cannot run here: fail under CI ("CI must run it"), else skip LOUDLY
  require_root(why) / require_docker(why) / require_tool(name): refuse() without root, a Docker
                    daemon, or a tool on PATH
The fast tier (`bash tests/run --fast`, CLAW_CAGE_TEST_TIER=fast): every test that needs root or
Docker is skipped, as root too, and says so; what runs needs neither (docs/testing.md).
"""

import glob
import os
import shutil
import subprocess
import sys
import tempfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PYTHON = sys.executable


FAST = os.environ.get("CLAW_CAGE_TEST_TIER") == "fast"
collect_ignore = ["e2e"] if FAST else []   # every end-to-end test drives Docker


def must_run():
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def refuse(msg):
    if FAST:
        pytest.skip("fast tier: " + msg)
    if must_run():
        pytest.fail(msg + " (CI must run it)")
    pytest.skip(msg)


def require_root(why):
    if FAST or os.geteuid() != 0:
        refuse("NEEDS ROOT, NOT RUN: %s" % why)


def require_tool(name, hint="tests/requirements.txt installs it"):
    path = shutil.which(name)
    if not path:
        refuse("%s NOT INSTALLED, NOT RUN (%s)" % (name, hint))
    return path


def docker_answers():
    if not shutil.which("docker"):
        return False
    try:
        return subprocess.run(["docker", "info"], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, timeout=20).returncode == 0
    except subprocess.TimeoutExpired:
        return False


def require_docker(why):
    if FAST or not docker_answers():
        refuse("NEEDS A DOCKER DAEMON, NOT RUN: %s" % why)


def build_pyz(out, *extra):
    subprocess.run([PYTHON, os.path.join(ROOT, "build.py"), "--out", out] + list(extra),
                   check=True, stdout=subprocess.DEVNULL, cwd=ROOT)
    return out


def find_python(version):
    """A python<version> interpreter (pyenv's on this project's machines), else skip loudly."""
    for cand in ["python" + version] + sorted(glob.glob(
            "/root/.pyenv/versions/%s.*/bin/python%s" % (version, version))) + sorted(
            glob.glob("/usr/bin/python%s" % version)):
        path = shutil.which(cand) if "/" not in cand else cand
        if path and os.access(path, os.X_OK):
            r = subprocess.run([path, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
            if r.returncode == 0 and r.stdout.decode().strip() == version:
                return path
    pytest.skip("NO PYTHON %s INTERPRETER ON THIS MACHINE, NOT RUN (pyenv install %s)"
                % (version, version))


@pytest.fixture(scope="session")
def pyz(tmp_path_factory):
    return build_pyz(str(tmp_path_factory.mktemp("dist") / "claw-cage.pyz"))


def run_file(path, args=(), how="pipe", env=None, cwd=None, timeout=120, python=PYTHON,
             input_bytes=None):
    """Run a built file as users do. how: "pipe" (cat FILE | python3 - ARGS),
    "stdin" (python3 - ARGS < FILE) or "path" (python3 FILE ARGS)."""
    full_env = dict(os.environ)
    full_env.pop("CLAW_CAGE_DIR", None)
    full_env.pop("CLAW_CAGE_SOURCE", None)
    if env:
        full_env.update(env)
    cwd = cwd or tempfile.gettempdir()
    if how == "path":
        return subprocess.run([python, path] + list(args), stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=full_env,
                              cwd=cwd, timeout=timeout)
    with open(path, "rb") as f:
        data = f.read() if input_bytes is None else input_bytes
    if how == "stdin":
        with tempfile.TemporaryFile() as tmp:
            tmp.write(data)
            tmp.seek(0)
            return subprocess.run([python, "-"] + list(args), stdin=tmp,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  env=full_env, cwd=cwd, timeout=timeout)
    assert how == "pipe", how
    return subprocess.run([python, "-"] + list(args), input=data, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, env=full_env, cwd=cwd, timeout=timeout)


@pytest.fixture
def run_pyz(pyz):
    def _run(args=(), **kw):
        return run_file(pyz, args, **kw)
    return _run


# ---- end-to-end count (issue 6) --------------------------------------------------------------
# .ci/run must say how many end-to-end tests (tests/e2e/test_e2e*.py, the real Docker engine) ran:
# a loud skip there is easy to miss in a long run. One line before pytest's closing line.
_e2e_outcomes = {}


def pytest_runtest_logreport(report):
    if not os.path.basename(report.nodeid.split("::")[0]).startswith("test_e2e"):
        return
    prev = _e2e_outcomes.get(report.nodeid)
    if report.failed:
        _e2e_outcomes[report.nodeid] = "failed"
    elif report.skipped and prev != "failed":
        _e2e_outcomes[report.nodeid] = "xfailed" if hasattr(report, "wasxfail") else "skipped"
    elif report.when == "call" and prev is None:
        _e2e_outcomes[report.nodeid] = "passed"


def pytest_terminal_summary(terminalreporter):
    if not _e2e_outcomes:
        return
    counts = {k: list(_e2e_outcomes.values()).count(k)
              for k in ("passed", "failed", "skipped", "xfailed")}
    terminalreporter.write_line(
        "end-to-end tests on the real Docker engine: %d ran (%d passed, %d failed), %d skipped"
        % (counts["passed"] + counts["failed"], counts["passed"], counts["failed"],
           counts["skipped"]) + (", %d xfailed" % counts["xfailed"] if counts["xfailed"] else ""))
    line = _per_engine_line()
    if line:
        terminalreporter.write_line(line)
        # .ci/run prints it again as its closing line
        out = os.path.join(ROOT, "tests", "output")
        os.makedirs(out, exist_ok=True)
        with open(os.path.join(out, "e2e-engines-summary.txt"), "w") as f:
            f.write(line + "\n")


# ---- per engine (issue 18) -------------------------------------------------------------------
# tests/e2e/test_e2e_engines.py is parametrized by engine (the test id's [...]); the system's
# engine runs the other e2e modules. One count per engine: a case that silently ran nothing
# shows as 0 passed.
def _per_engine_line():
    per = {}
    for nodeid, outcome in _e2e_outcomes.items():
        module = os.path.basename(nodeid.split("::")[0])
        if module == "test_e2e_engines.py" and nodeid.endswith("]"):
            engine = nodeid.rsplit("[", 1)[1][:-1]
        else:
            engine = "system engine"
        per.setdefault(engine, {}).setdefault(outcome, 0)
        per[engine][outcome] += 1
    if set(per) == {"system engine"}:
        return None
    parts = []
    for engine, c in per.items():
        words = ["%d passed" % c.get("passed", 0)]
        words += ["%d %s" % (c[k], k) for k in ("failed", "xfailed", "skipped") if c.get(k)]
        parts.append("%s: %s" % (engine, ", ".join(words)))
    return "end-to-end passes per engine: " + "; ".join(parts)
