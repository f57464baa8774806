"""COMPOSE_FILE in the user's .env: `docker compose up -d` then runs the api-only stack.

Only the COMPOSE_FILE lines change; every other line, the mode (600) and the owner stay. The
file is read with safefile (a symlink or FIFO is refused) and replaced atomically: a
temporary file in the same folder, given the old owner and mode before a byte is written,
fsynced, renamed over.
"""

import os
import re

from .. import safefile
from ..errors import TargetError

KEY = "COMPOSE_FILE"
API_ONLY = "docker-compose.api-only.yml"
_LINE = re.compile(r"^[ \t]*(?:export[ \t]+)?COMPOSE_FILE[ \t]*[=:]")
_VALUE = re.compile(r"^[ \t]*(?:export[ \t]+)?COMPOSE_FILE[ \t]*[=:][ \t]*[\"']?([^\"'#\s]*)")


def path_of(directory):
    return os.path.join(directory, ".env")


def with_compose_file(text):
    """text with one `COMPOSE_FILE=docker-compose.api-only.yml` (where the first was, else at
    the end) and no other COMPOSE_FILE line."""
    lines = text.splitlines(True)
    out, placed = [], False
    for line in lines:
        if _LINE.match(line):
            if not placed:
                out.append("%s=%s%s" % (KEY, API_ONLY, "\r\n" if line.endswith("\r\n") else "\n"))
                placed = True
            continue
        out.append(line)
    if not placed:
        if out and not out[-1].endswith("\n"):
            out[-1] += "\n"
        out.append("%s=%s\n" % (KEY, API_ONLY))
    return "".join(out)


def without_compose_file(text):
    """text without the COMPOSE_FILE lines that choose the api-only file (a user's own
    COMPOSE_FILE stays)."""
    return "".join(l for l in text.splitlines(True)
                   if not (_VALUE.match(l) and _VALUE.match(l).group(1) == API_ONLY))


def current(text):
    """The value of text's COMPOSE_FILE (the last one wins), or None."""
    values = [m.group(1) for m in map(_VALUE.match, text.splitlines()) if m]
    return values[-1] if values else None


def chosen(text):
    """Whether text's COMPOSE_FILE is the api-only file."""
    return current(text) == API_ONLY


def edit(directory, change):
    """Apply change(text) -> text to DIR/.env. Returns True when the file changed, False when
    it is absent or unchanged."""
    path = path_of(directory)
    data = safefile.read(path)
    if data is None:
        return False
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise TargetError("%s is not UTF-8 text: not changed" % path)
    new = change(text)
    if new == text:
        return False
    try:   # mode and owner of the .env it replaces (safefile.read refused a symlink)
        safefile.write_atomic(path, new)
    except OSError as err:
        raise TargetError("cannot update %s: %s" % (path, err.strerror or err))
    return True
