"""cli.MODES, the one table of modes: every option belongs to a mode that takes it, every
option the table names exists, and an option given to a mode that does not take it is refused
with one line and exit 2 (never ignored)."""

import os
import subprocess
import sys

import pytest

from conftest import PYTHON, ROOT

sys.path.insert(0, os.path.join(ROOT, "bootstrap"))
from claw_cage import cli  # noqa: E402

PARSER = cli.build_parser()
OPTIONS = {a.option_strings[-1] for a in PARSER._actions if a.option_strings} - {
    "--help", "--verbose"}


def test_every_option_belongs_to_a_mode_and_the_table_names_only_real_options():
    named = set()
    for picked_by, _package, _code, takes in cli.MODES:
        named.update(picked_by.split() + takes.split())
    assert OPTIONS - named == set(), "options no mode takes (always refused)"
    assert named - OPTIONS == set(), "the table names options the parser lacks"


def _run(args):
    return subprocess.run([PYTHON, "-m", "claw_cage"] + args, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True, timeout=60,
                          env=dict(os.environ, PYTHONPATH=os.path.join(ROOT, "bootstrap")))


VALUES = {"--allow": "10.0.0.1", "--profile": "internet", "--vmid": "105",
          "--admin-source": "10.0.0.1", "--restore": "a.tar.gz", "--allow-domain": "a.example",
          "--dir": "/nonexistent", "--source": "/nonexistent", "--config": "x.json",
          "--to": "/x", "--encrypt": "gpg", "--identity": "k", "--for": "1h", "--since": "1h",
          "--keep": "2", "--schedule": "daily"}


def _argv(options):
    out = []
    for o in options:
        out += [o, VALUES[o]] if o in VALUES else [o]
    return out


@pytest.mark.parametrize("row", cli.MODES, ids=[r[0] or "install" for r in cli.MODES])
def test_each_mode_refuses_every_option_it_does_not_take(row):
    """One run per refused option (the mode's own pick plus that option): exit 2, one line
    naming it. Slow-ish (a process each), so only the options, not their pairs."""
    picked_by, _package, _code, takes = row
    for option in sorted(OPTIONS - set(picked_by.split() + takes.split())):
        if option in ("--version",) + tuple(r[0] for r in cli.MODES if r[0]) or (
                picked_by == "--firewall" and option == "--remove"):
            continue  # another mode's pick: argparse's own exclusion, or another row
        r = _run(_argv(picked_by.split() + [option]))
        assert r.returncode == 2, (picked_by, option, r.stderr)
        assert r.stderr.count("\n") == 1 and option in r.stderr, (picked_by, option, r.stderr)
