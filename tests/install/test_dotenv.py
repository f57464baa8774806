"""One dotenv reading (issue 17): the .env token check sees what Docker Compose sees.

The fallback parser (dotenv.parse) is held against the REAL Docker Compose v2 binary
(tests/setup.d/compose-v2.sh installs it) on every case, the five of the issue first; the
install-time check and --verify's .env row give Compose's verdict; install keeps the blank line
after the token.
"""

import os
import sys

import pytest

from conftest import ROOT, refuse

sys.path.insert(0, os.path.join(ROOT, "bootstrap"))
from claw_cage import dotenv  # noqa: E402
from claw_cage.install import steps  # noqa: E402
from claw_cage.verify import exposure  # noqa: E402

T = "OPENCLAW_GATEWAY_TOKEN"
ISSUE_CASES = [
    ("set line then a blank one", "%s=abc\n%s=\n" % (T, T), False),
    ("export KEY=", "%s=abc\nexport %s=\n" % (T, T), False),
    ("a BOM", "\ufeff%s=abc\n" % T, True),
    ("KEY =abc", "%s =abc\n" % T, True),
    ("blank then set", "%s=\n%s=abc\n" % (T, T), True),
]
MORE_CASES = [
    "K=\nO=x\n", "K=   \nO=x\n", "K=abc #c\n", "K=abc#c\n", 'K="a b" #x\n', "K='$x'\n",
    "K= #c\n", "K=#c\n", "K:abc\n", "K: abc\n", "  K=abc\n", "K=a\r\nO=b\r\n", 'K=""\n',
    "export\tK=a\n", "exportK=a\n", 'K="a\\nb"\n', 'K="a\nb"\n', "K='a\\nb'\n",
    'K="a\\"b"\n', "K=a b  \n", "# c\nK=v\n#K=\n", "K=$$x\n", "K=v\nJ=${K}z\n",
    'K="a\\\\b"\n', "K='it\\'s'\n", "K=a\tb\n", 'K="x" y\n', "K=${CLAW_UNSET_X-dd}\n",
    "K=${CLAW_UNSET_X:-dd}\n", "export K='q'\n", "K=\"  \"\n",
]


@pytest.fixture(scope="module")
def compose():
    command = dotenv.compose_command()
    if command is None:
        refuse("NO DOCKER COMPOSE V2, NOT RUN: tests/setup.d/compose-v2.sh installs it")
    return command


@pytest.mark.parametrize("name,text,is_set", ISSUE_CASES, ids=[c[0] for c in ISSUE_CASES])
def test_issue_cases_match_compose(compose, name, text, is_set):
    data = text.encode("utf-8")
    theirs = dotenv.compose(data, compose)
    assert bool(theirs.get(T)) == is_set, theirs
    assert dotenv.parse(text) == theirs
    assert steps.token_is_set(data) == is_set
    assert dotenv.value_is_set(data, T, use_compose=False) == (is_set, None)


@pytest.mark.parametrize("text", MORE_CASES)
def test_more_cases_match_compose(compose, text):
    os.environ.pop("CLAW_UNSET_X", None)
    assert dotenv.parse(text) == dotenv.compose(text.encode("utf-8"), compose)


def test_the_environment_comes_before_earlier_keys(compose, monkeypatch):
    monkeypatch.setenv("CLAW_TEST_KX", "fromenv")
    text = "CLAW_TEST_KX=v\nJ=${CLAW_TEST_KX}z\n"
    assert dotenv.parse(text) == dotenv.compose(text.encode(), compose) == {
        "CLAW_TEST_KX": "v", "J": "fromenvz"}


@pytest.mark.parametrize("text", ['K="abc\n', "K!=a\n", "K K=a\n"])
def test_files_compose_refuses_are_refused(compose, text):
    with pytest.raises(dotenv.DotenvError):
        dotenv.compose(text.encode("utf-8"), compose)
    with pytest.raises(dotenv.DotenvError):
        dotenv.parse(text)


def test_errors_name_a_line_never_a_value(compose):
    data = ("A=1\n%s=\"supersecret-token-value\n" % T).encode()
    for use in (True, False):
        ok, why = dotenv.value_is_set(data, T, use_compose=use)
        assert not ok and "line" in why and "supersecret" not in why, why


@pytest.mark.parametrize("name,text,is_set", ISSUE_CASES, ids=[c[0] for c in ISSUE_CASES])
def test_verify_env_row_gives_composes_verdict(tmp_path, name, text, is_set):
    env = tmp_path / ".env"
    env.write_bytes(text.encode("utf-8"))
    os.chmod(str(env), 0o600)
    row = exposure.check_env(str(tmp_path))
    assert row.status == ("pass" if is_set else "fail"), row
    assert "abc" not in row.detail


def test_install_keeps_the_blank_line_after_the_token():
    with open(os.path.join(ROOT, "deploy", ".env.example"), "rb") as f:
        example = f.read()
    made = steps.env_with_token(example).decode()
    token_line = [l for l in made.splitlines() if l.startswith(T + "=")]
    assert len(token_line) == 1 and len(token_line[0]) == len(T) + 1 + 64
    before = example.decode().split("\n")
    after = made.split("\n")
    assert len(before) == len(after), "a line was lost or added"
    i = before.index(T + "=")
    assert after[i] == token_line[0] and after[i + 1] == before[i + 1] == ""
    assert steps.token_is_set(made.encode())
