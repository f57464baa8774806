"""The memory budget: heap + every tmpfs at its full size + 128 MiB for Node outside its heap fit
mem_limit, with the installed .env and with the 1 GB machine advice; the check catches an
overcommitted .env."""

import pytest

from compose_support import (COMPOSE_PATH, MIB, SERVICES, budget_problems, config_for,
                             installed_env, memory_budget, one_gb_env, read)


@pytest.mark.parametrize("env", ["installed", "1 GB advice"])
def test_memory_budget_heap_plus_tmpfs_fits_the_limit(tmp_path, env):
    """tmpfs pages are charged to the container's memory cgroup: the V8 heap, every tmpfs
    filled to its size and Node's own memory outside the heap must fit CLAW_MEM_LIMIT.
    Summed from what `docker compose config` resolves, for the shipped defaults and for the
    1 GB machine advice of .env.example and docs/usage.md."""
    text = installed_env() if env == "installed" else one_gb_env()
    cfg = config_for(tmp_path, text)
    rows = []
    for name in SERVICES:
        heap, tmpfs, limit = memory_budget(cfg["services"][name])
        rows.append((name, heap // MIB, tmpfs // MIB, limit // MIB))
        assert heap > 0 and tmpfs > 0 and limit > 0, rows
        assert budget_problems(cfg["services"][name]) == [], rows
    print("service, heap MiB, tmpfs MiB, limit MiB: %r" % rows)


@pytest.mark.parametrize("extra", ["CLAW_TMP_SIZE=512m", "CLAW_LOG_SIZE=1g",
                                   "CLAW_NODE_HEAP_MB=1900"])
def test_memory_budget_check_catches_an_overcommitted_env(tmp_path, extra):
    cfg = config_for(tmp_path, installed_env() + extra + "\n")
    assert budget_problems(cfg["services"]["openclaw"]), extra


def test_memory_budget_counts_every_tmpfs(tmp_path):
    # The same limit with one more, unbudgeted tmpfs: the sum must notice it.
    text = read(COMPOSE_PATH).replace(
        "      - /home/node/.config:size=8m,",
        "      - /var/tmp:size=400m,mode=1777\n      - /home/node/.config:size=8m,", 1)
    cfg = config_for(tmp_path, installed_env(), text)
    assert budget_problems(cfg["services"]["openclaw"])
