"""Reading .env the way Docker Compose does, for the gateway-token check (install, --verify).

Compose decides what the gateway gets, so compose() asks it: `docker compose config` on a
throwaway project whose one service reads the .env content through `env_file` (the same
dotenv reader Compose uses for the project's .env). Where Compose is absent or too old to
answer, parse() follows Compose's rules, which tests/install/test_dotenv.py checks against the
real Compose binary case by case:
  - the last assignment of a key wins; a key with no `=` takes its value from the environment
  - `export KEY=...` is KEY; spaces around the key and after `=` are dropped; `KEY: value` too
  - a UTF-8 byte-order mark at the start is ignored; CRLF line ends are LF
  - unquoted values end at the line end or at ` #` (a comment), trailing spaces dropped;
    'single quoted' values are literal; "double quoted" ones may span lines and know \\n \\r
  - $VAR / ${VAR} / ${VAR:-default} / ${VAR-default} expand (the environment, then earlier
    keys), except in single quotes; $$ is a dollar sign
A value's text never appears in an error message: only its line number.
"""

import json
import os
import re
import shutil
import tempfile

from . import runner
from .errors import ClawCageError

BOM = "\ufeff"
_KEY_CHARS = re.compile(r"[\w.\-\[\]]")   # letters/digits (any script), _ . - [ ]
_SPACE = "\t\v\f\r \x85\xa0"              # Compose's "space": no line break
_VAR = re.compile(r"\$(?:\$|\{([^}]*)\}|([A-Za-z_][A-Za-z0-9_]*))")


class DotenvError(ClawCageError):
    """.env cannot be read as Compose would: the message names a line, never a value."""


def _expand(value, known, environ):
    def one(m):
        if m.group(0) == "$$":
            return "$"
        name = m.group(2)
        default, mode = None, None
        if name is None:
            inner = m.group(1)
            found = re.fullmatch(r"([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])(.*))?", inner, re.S)
            if not found:
                raise DotenvError("invalid ${...} expression")
            name, mode, default = found.groups()
        current = environ.get(name, known.get(name))   # the environment first, as Compose
        if mode in (":-", "-"):
            unset = current is None or (mode == ":-" and current == "")
            return default if unset else current
        if mode in (":+", "+"):
            present = current is not None and (mode == "+" or current != "")
            return default if present else ""
        if mode in (":?", "?"):
            if current is None or (mode == ":?" and current == ""):
                raise DotenvError("required variable %s is missing a value" % name)
        return current or ""
    return _VAR.sub(one, value)


def parse(text, environ=None):
    """{key: value} of .env text, by Docker Compose's rules (module doc)."""
    environ = os.environ if environ is None else environ
    if text.startswith(BOM):
        text = text[1:]
    text = text.replace("\r\n", "\n")
    out = {}
    i, n, line = 0, len(text), 1
    while True:
        # the next statement: skip whitespace (line breaks included) and comment lines
        while i < n and (text[i].isspace() or text[i] == "#"):
            if text[i] == "#":
                end = text.find("\n", i)
                i = n if end < 0 else end
                continue
            if text[i] == "\n":
                line += 1
            i += 1
        if i >= n:
            return out
        if text.startswith("export", i) and i + 6 < n and text[i + 6] in _SPACE:
            i += len("export")
            while i < n and text[i] in _SPACE:
                i += 1
        start, sep = i, None
        while i < n:
            c = text[i]
            if c in "=:\n":
                sep = c
                break
            if c not in _SPACE and not _KEY_CHARS.fullmatch(c):
                raise DotenvError("line %d: unexpected character in a variable name" % line)
            i += 1
        key = text[start:i].rstrip()
        if " " in key or "\t" in key:
            raise DotenvError("line %d: a variable name cannot contain a space" % line)
        if sep is None or sep == "\n":   # KEY alone: from the environment, if set there
            if key in environ:
                out[key] = environ[key]
            continue
        i += 1
        while i < n and text[i] in _SPACE:
            i += 1
        quote = text[i] if i < n and text[i] in "'\"" else None
        if quote is None:
            end = text.find("\n", i)
            end = n if end < 0 else end
            value = text[i:end].split(" #", 1)[0].rstrip()
            out[key] = _expand(value, out, environ)
            i = end
            continue
        chars, escaped, j = [], False, i + 1
        while j < n:
            c = text[j]
            if c == "\n":
                line += 1
            if c != quote:
                if not escaped and c == "\\":
                    escaped = True
                elif escaped:
                    escaped = False
                    chars.append("\\" + c)
                else:
                    chars.append(c)
                j += 1
                continue
            if escaped:
                escaped = False
                chars.append(c)
                j += 1
                continue
            break
        else:
            raise DotenvError("line %d: unterminated quoted value" % line)
        value = "".join(chars)
        if quote == '"':
            value = value.replace("\\n", "\n").replace("\\r", "\r")
            value = re.sub(r"\\([^$])", r"\1", value)
            value = _expand(value, out, environ)
        out[key] = value
        i = j + 1


# ---- asking Docker Compose ---------------------------------------------------------------

PROBE_COMPOSE = """name: claw-cage-env-check
services:
  env:
    image: scratch
    env_file: [./env]
"""


def compose_command():
    """["docker", "compose"] when Compose v2 answers (as prereqs requires), else None."""
    if runner.which("docker") and runner.run(["docker", "compose", "version"], check=False,
                                             timeout=30).ok:
        return ["docker", "compose"]
    return None


def compose(data, command=None):
    """{key: value} Docker Compose reads from .env bytes, or None when Compose cannot be asked
    (absent, or too old for `config --format json`). DotenvError when Compose refuses the file.
    The content goes to Compose through a private temporary copy, never the user's path."""
    command = command or compose_command()
    if command is None:
        return None
    tmp = tempfile.mkdtemp(prefix="claw-cage-env-")
    env_path = os.path.join(tmp, "env")
    try:
        for path, content in ((env_path, data),
                              (os.path.join(tmp, "compose.yml"), PROBE_COMPOSE.encode())):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(content)
        result = runner.run(command + ["--project-directory", tmp, "-f",
                                       os.path.join(tmp, "compose.yml"), "config",
                                       "--format", "json"], check=False, timeout=60)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if result.ok:
        try:
            env = json.loads(result.stdout)["services"]["env"].get("environment") or {}
        except (ValueError, KeyError, TypeError, AttributeError):
            return None
        # `config` writes a literal $ as $$ (its own escaping)
        return {k: ("" if v is None else str(v)).replace("$$", "$") for k, v in env.items()}
    if env_path in result.stderr:   # Compose read the file and refused it
        where = re.search(re.escape(env_path) + r": line (\d+)", result.stderr)
        raise DotenvError("Docker Compose cannot read it%s"
                          % (" (line %s)" % where.group(1) if where else ""))
    return None


def read(data, use_compose=True):
    """{key: value} of .env bytes as Docker Compose sees them: Compose's own answer where it
    can be asked, else parse(). DotenvError when the file is not valid for Compose."""
    if use_compose:
        found = compose(data)
        if found is not None:
            return found
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise DotenvError("not UTF-8 text (at byte %d)" % err.start)
    return parse(text)


def value_is_set(data, key, use_compose=True):
    """(True/False, None) whether key has a non-empty value, or (False, reason) when the file
    cannot be read as Compose would."""
    try:
        return bool(read(data, use_compose).get(key)), None
    except DotenvError as err:
        return False, str(err)
