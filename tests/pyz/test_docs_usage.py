"""docs/usage.md keeps its promise to list every option, variable and exit code: every option
`--help` prints, every CLAW_CAGE_* variable the program reads, and every exit code of errors.py
is in it; `--help` lists every exit code and every variable a user sets. Read from the real
parser and the real source, so a new option or variable without its docs fails here."""

import os
import re
import sys

from conftest import ROOT

sys.path.insert(0, os.path.join(ROOT, "bootstrap"))
from claw_cage import cli, errors  # noqa: E402

USAGE = open(os.path.join(ROOT, "docs", "usage.md"), encoding="utf-8").read()
# Knobs for the test suite only: documented in usage.md as such, kept out of --help.
TEST_ONLY = {"CLAW_CAGE_PROBE_NETNS", "CLAW_CAGE_PROXY_COPY"}


def help_text():
    return cli.build_parser().format_help()


def options():
    return sorted({s for a in cli.build_parser()._actions for s in a.option_strings
                   if s.startswith("--") and s != "--help"})


def variables():
    found = set()
    for folder, _, names in os.walk(os.path.join(ROOT, "bootstrap")):
        for n in names:
            if n.endswith(".py"):
                text = open(os.path.join(folder, n), encoding="utf-8").read()
                found.update(re.findall(r"\bCLAW_CAGE_[A-Z_]*[A-Z]\b", text))
    return sorted(found)


def exit_codes():
    return sorted(v for k, v in vars(errors).items() if k.startswith("EXIT_") and
                  isinstance(v, int))


def named(text, word):
    return re.search(r"(?<![\w-])%s(?![\w-])" % re.escape(word), text) is not None


def test_the_lists_are_read():
    assert "--allow-domain" in options() and "--dir" in options()
    assert "CLAW_CAGE_DIR" in variables() and "CLAW_CAGE_PROXY_COPY" in variables()
    assert exit_codes()[:3] == [0, 1, 2] and 130 in exit_codes()


def test_every_option_is_in_usage():
    assert [o for o in options() if not named(USAGE, o)] == []


def test_every_variable_is_in_usage():
    assert [v for v in variables() if not named(USAGE, v)] == []


def test_every_variable_a_user_sets_is_in_help():
    text = help_text()
    assert [v for v in variables() if v not in TEST_ONLY and not named(text, v)] == []


def test_every_exit_code_is_in_help_and_usage():
    text = help_text()
    assert [c for c in exit_codes() if not re.search(r"^  %d +\S" % c, text, re.M)] == []
    assert [c for c in exit_codes() if not re.search(r"^\| %d \|" % c, USAGE, re.M)] == []


def test_a_missing_entry_is_found():
    assert not named("`--allow` `--allow-domainx`", "--allow-domain")
    assert named("| `--allow-domain NAME` |", "--allow-domain")
