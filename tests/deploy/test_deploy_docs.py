"""The docs say what the deploy files do: every .env.example variable is in the configuration
table of docs/usage.md with the same 1 GB advice, and every writable path the resolved
gateway has is in docs/design.md's table with its size, a reason and a source."""

import os
import re

from compose_support import (ROOT, config_for, env_example_vars, installed_env, one_gb_advice,
                             policy_mount, read, tmpfs_entries)


def usage_configuration():
    text = read(os.path.join(ROOT, "docs", "usage.md"))
    m = re.search(r"^## Configuration\n(.*?)^## ", text, re.S | re.M)
    assert m, "docs/usage.md has no Configuration section"
    return m.group(1)


def test_usage_configuration_table_lists_every_variable():
    section = usage_configuration()
    rows = [l for l in section.splitlines() if l.startswith("|")]
    for name in env_example_vars():
        assert any("`%s`" % name in row for row in rows), "%s not in the table of docs/usage.md" % name


def test_usage_gives_the_same_1gb_advice_as_env_example():
    section = usage_configuration()
    for name, value in one_gb_advice().items():
        assert re.search(r"%s=%s\b" % (name, re.escape(value)), section), (name, value)


def test_design_lists_every_writable_path_with_its_size_and_source(tmp_path):
    """docs/design.md "Deploy artifacts", Writable paths: one row per tmpfs and volume
    the resolved gateway has, with the size Compose resolves for it, a reason and a source."""
    text = read(os.path.join(ROOT, "docs", "design.md"))
    m = re.search(r"^## Deploy artifacts\n(.*?)^## ", text, re.S | re.M)
    assert m, "docs/design.md has no Deploy artifacts section"
    rows = {}
    for line in m.group(1).splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.strip().startswith("|") and len(cells) == 4 and cells[0].startswith("`"):
            rows[cells[0].strip("`")] = cells
    svc = config_for(tmp_path, installed_env())["services"]["openclaw"]
    for path, opts in tmpfs_entries(svc).items():
        assert path in rows, "tmpfs %s not in the writable paths of docs/design.md" % path
        assert opts["size"] in rows[path][1], (path, opts["size"], rows[path])
    for v in svc["volumes"]:
        if policy_mount(v):
            continue   # read-only: not a writable path (docs/layers.md "OpenClaw policy")
        assert v["target"] in rows and v["source"] in rows[v["target"]][1], v
    for path, (_, kind, why, source) in rows.items():
        assert len(why) > 20 and source, "row %s needs a reason and a source" % path
