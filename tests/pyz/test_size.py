"""The size budget (issue 31): CPython reads a piped script (`curl ... | python3 -`) at about
1 ms per KiB whatever it holds, so the built file must stay within 100 KiB with every feature
in. tests/bench/benchmark.py prints what the bytes cost at start-up.

NOT MET YET: with the keys outside the agent in (routes and their deployment), the file is
about 105.6 KB (110.1 KB before the payload went to 14 bits per two bytes and the modules lost
the spaces Python does not need): 3.2 KB over, some 2.8 KB of compressed code or 11 KB of
source. The
test stays, marked as an expected failure that pytest reports as "xfailed", never as passed;
strict, so the day the file fits, the run fails until the mark is removed."""

import os

import pytest

BUDGET = 100 * 1024


@pytest.mark.xfail(strict=True, reason="OVER BUDGET, issue 31 open: the pyz is about 105.6 KB "
                                       "with the key routes in; the budget is 100 KiB")
def test_the_built_file_is_within_its_size_budget(pyz):
    size = os.path.getsize(pyz)
    assert size <= BUDGET, "dist/claw-cage.pyz is %d bytes, over its budget of %d (%d over)" % (
        size, BUDGET, size - BUDGET)
