"""Issue 29, backups without keys: the archive's .env has every provider key and channel
token blanked unless --with-keys; the rest of .env stays byte for byte; a value that cannot
be blanked refuses the backup (never an archive that still holds it)."""

import os
import subprocess
import sys

import pytest

from conftest import PYTHON, ROOT

sys.path.insert(0, os.path.join(ROOT, "bootstrap"))
from claw_cage import dotenv  # noqa: E402
from claw_cage.backup import create  # noqa: E402
from claw_cage.egress import keys  # noqa: E402
from claw_cage.errors import RefusedError  # noqa: E402

ENV = ("# keys\nANTHROPIC_API_KEY=sk-ant-planted-1\nexport GROQ_API_KEY='gsk-planted-2'\n"
       "OPENAI_API_KEY=\nTELEGRAM_BOT_TOKEN = \"123:tg-planted-3\"  # bot\n"
       "DISCORD_BOT_TOKEN=dc-planted-4\nOPENCLAW_GATEWAY_TOKEN=gw-token-5\nCLAW_DNS=1.1.1.1\n")
PLANTED = ("sk-ant-planted-1", "gsk-planted-2", "tg-planted-3", "dc-planted-4")


def test_blank_leaves_every_other_line_and_no_key(tmp_path):
    out = keys.blank(ENV)
    assert not any(p in out for p in PLANTED)
    values = dotenv.parse(out, environ={})
    assert values["OPENCLAW_GATEWAY_TOKEN"] == "gw-token-5" and values["CLAW_DNS"] == "1.1.1.1"
    assert [l for l in out.splitlines() if "KEY" not in l and "BOT" not in l] == \
        [l for l in ENV.splitlines() if "KEY" not in l and "BOT" not in l]
    with pytest.raises(ValueError):   # a quoted value over two lines: refused, not half-blanked
        keys.blank('ANTHROPIC_API_KEY="sk-ant\nrest-of-it"\n')


def test_the_archive_env_is_blanked_unless_with_keys(tmp_path):
    (tmp_path / ".env").write_text(ENV)
    data, names = create._env(str(tmp_path), False)
    assert names == ["ANTHROPIC_API_KEY", "GROQ_API_KEY", "TELEGRAM_BOT_TOKEN",
                     "DISCORD_BOT_TOKEN"]
    assert not any(p.encode() in data for p in PLANTED) and b"gw-token-5" in data
    assert create._env(str(tmp_path), True) == (ENV.encode(), names)
    (tmp_path / ".env").write_text('ANTHROPIC_API_KEY="a\nb"\nOPENCLAW_GATEWAY_TOKEN=x\n')
    with pytest.raises(RefusedError):
        create._env(str(tmp_path), False)


@pytest.mark.parametrize("argv", [["--with-keys"], ["--verify", "--with-keys"],
                                  ["--restore", "x.tar.gz", "--with-keys"]])
def test_with_keys_goes_with_backup_only(pyz, argv):
    proc = subprocess.run([PYTHON, pyz] + argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, timeout=60)
    assert proc.returncode == 2 and "--with-keys" in proc.stderr, proc.stderr
