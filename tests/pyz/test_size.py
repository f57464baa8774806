"""The size budget (issue 31): CPython reads a piped script (`curl ... | python3 -`) at about
1 ms per KiB whatever it holds, so the built file must stay within 100 KiB with every feature
in. tests/bench/benchmark.py prints what the bytes cost at start-up; docs/design.md says how
the build keeps the bytes down (one bz2 stream, 14 bits per two bytes of UTF-8, the modules
without comments, docstrings and the spaces Python does not need, local and module-level names
respelled short)."""

import os

BUDGET = 100 * 1024


def test_the_built_file_is_within_its_size_budget(pyz):
    size = os.path.getsize(pyz)
    assert size <= BUDGET, "dist/claw-cage.pyz is %d bytes, over its budget of %d (%d over)" % (
        size, BUDGET, size - BUDGET)
