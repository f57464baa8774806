"""deploy/.env.example: its sections, a comment per variable, empty secrets, and every variable
read by something (compose or OpenClaw, with a source)."""

import re

from compose_support import (DEAD_VARS, ENV_EXAMPLE_PATH, OPENCLAW_READS, VAR_LINE,
                             compose_references, env_example_entries, env_example_vars, read)


def test_env_example_has_the_seed_sections_and_a_comment_per_variable():
    text = read(ENV_EXAMPLE_PATH)
    lines = text.splitlines()
    for section in ("=== LLM Providers", "=== Gateway ===", "=== Channels",
                    "=== Performance"):
        assert section in text, section
    for name, _, _, i in env_example_entries():
        above = lines[i - 1]
        assert above.startswith("#") and not VAR_LINE.match(above) and len(above) > 10, \
            "%s has no comment line above it" % name
    names = env_example_vars()
    assert len(names) == len(set(names)), "a variable appears twice"


def test_env_example_secrets_are_empty_and_token_line_is_exact():
    for name, value, _, _ in env_example_entries():
        if re.search(r"KEY|TOKEN|PASSWORD|SECRET", name):
            assert value == "", "%s has a value in .env.example" % name
    # The installer fills the generated token into exactly this line.
    assert read(ENV_EXAMPLE_PATH).splitlines().count("OPENCLAW_GATEWAY_TOKEN=") == 1
    active = [n for n, _, a, _ in env_example_entries() if a]
    assert "OPENCLAW_GATEWAY_TOKEN" in active


def test_env_example_variables_are_all_read_by_something():
    refs = compose_references()
    for name in env_example_vars():
        assert name in refs or name in OPENCLAW_READS, \
            "%s: neither docker-compose.yml nor OpenClaw (with a source) reads it" % name
    for name in DEAD_VARS:
        assert name not in env_example_vars(), name
    assert "384" not in read(ENV_EXAMPLE_PATH), "seed's 384 MB heap advice is too small"


def test_every_compose_variable_is_documented_in_env_example():
    missing = compose_references() - set(env_example_vars())
    assert not missing, missing
