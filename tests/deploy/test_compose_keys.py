"""Issue 29: no container of the stack receives a key. Real `docker compose config` of both
compose files with every provider key, the Telegram token and the gateway token set in .env:
the provider keys and the Telegram token reach no service (no env_file); the gateway token
does, and the WebSocket channels' tokens do, by name (they stay inside: docs/keys.md)."""

import json
import os

import compose_support as base

KEYS = {"ANTHROPIC_API_KEY": "sk-ant-planted-111", "OPENAI_API_KEY": "sk-planted-222",
        "OPENROUTER_API_KEY": "sk-or-planted-333", "GEMINI_API_KEY": "gem-planted-444",
        "GROQ_API_KEY": "gsk-planted-555", "TELEGRAM_BOT_TOKEN": "12345:tg-planted-666"}


def _configs(tmp_path):
    env = base.installed_env() + "".join("%s=%s\n" % kv for kv in KEYS.items()) + \
        "DISCORD_BOT_TOKEN=discord-inside-777\n"
    out = {}
    for name in ("docker-compose.yml", "docker-compose.api-only.yml"):
        d = tmp_path / name
        d.mkdir()
        text = base.read(os.path.join(base.ROOT, "deploy", name))
        out[name] = base.config_for(d, env, text, ("cli",))
    return out


def test_no_service_of_either_stack_receives_a_key(tmp_path):
    for name, cfg in _configs(tmp_path).items():
        for service, svc in cfg["services"].items():
            assert not svc.get("env_file"), (name, service)
            text = json.dumps(svc.get("environment") or {})
            for var, value in KEYS.items():
                assert var not in text and value not in text, (name, service, var)
        gw = cfg["services"]["openclaw"]["environment"]
        assert gw[base.TOKEN_VAR] and gw["DISCORD_BOT_TOKEN"] == "discord-inside-777"
        assert gw["OPENCLAW_CONFIG_PATH"].endswith(
            "/openclaw.routes.json" if name == "docker-compose.yml" else "/openclaw.api-only.json")
