"""A blank or missing OPENCLAW_GATEWAY_TOKEN makes Compose refuse every command, naming the
variable and the fix; the check catches a compose file that would accept a blank token."""

import subprocess

import pytest

from compose_support import (COMPOSE_PATH, TOKEN_VAR, _clean_env, compose_cmd, installed_env,
                             project, read, shipped_env)


def compose_refusal(d, profiles=("cli",), command=("config",)):
    argv = list(compose_cmd()) + ["--project-directory", str(d), "-f", str(d / "docker-compose.yml")]
    for prof in profiles:
        argv += ["--profile", prof]
    return subprocess.run(argv + list(command), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          env=_clean_env(), cwd=str(d), timeout=60)


def token_refusal_problems(tmp_path, compose_text=None):
    """Compose must refuse with a blank token, a missing token line and no .env token at all,
    naming the variable and the fix; and accept a set one."""
    p = []
    for case, env_text in (("shipped .env (blank)", shipped_env()),
                           ("no token line", "ANTHROPIC_API_KEY=x\n"),
                           ("empty .env", "")):
        r = compose_refusal(project(tmp_path, env_text, compose_text))
        err = r.stderr.decode()
        if r.returncode == 0:
            p.append("%s: compose accepted it" % case)
        elif TOKEN_VAR not in err or "openssl rand -hex 32" not in err or \
                "claw-cage.pyz" not in err:
            p.append("%s: message does not name %s and the fix: %s" % (case, TOKEN_VAR, err))
    ok = compose_refusal(project(tmp_path, installed_env(), compose_text))
    if ok.returncode != 0:
        p.append("a set token is refused: %s" % ok.stderr.decode())
    return p


def test_blank_or_missing_token_refuses_with_the_fix(tmp_path):
    assert token_refusal_problems(tmp_path) == []


@pytest.mark.parametrize("old,new", [
    ("${OPENCLAW_GATEWAY_TOKEN:?", "${OPENCLAW_GATEWAY_TOKEN:-"),
    ("${OPENCLAW_GATEWAY_TOKEN:?", "${OPENCLAW_GATEWAY_TOKEN?"),   # only unset refused
], ids=["default-instead-of-refusal", "blank-accepted"])
def test_token_check_catches_a_file_that_accepts_a_blank_token(tmp_path, old, new):
    text = read(COMPOSE_PATH)
    assert old in text
    assert token_refusal_problems(tmp_path, text.replace(old, new))
