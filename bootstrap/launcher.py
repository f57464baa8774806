# claw-cage launcher: the readable part of dist/claw-cage.pyz.
#
# build.py wraps this file, unchanged but for the @-marked lines, in one Python expression
# together with the program (a zip archive, zlib-compressed, as base85 text) and writes the
# result to dist/claw-cage.pyz. That file runs this code through exec(). Everything here must still
# *parse* on Python 3.6 so that old interpreters get the one-line refusal below instead of a
# SyntaxError.
import sys

if sys.version_info < (3, 8):
    sys.stderr.write("claw-cage: error: Python 3.8 or newer is required, this is Python "
                     "%d.%d (install python3.8+ and run it again)\n" % tuple(sys.version_info[:2]))
    sys.exit(3)

# Before importing anything from the file system: drop the folder Python was started from.
# With `curl ... | python3 -` that is the current directory, where a stray json.py would
# otherwise shadow the standard library; with `python3 FILE` it is FILE's own folder.
# Python 3.11's -P flag (safe_path) already left it out.
if not getattr(sys.flags, "safe_path", False) and sys.path:
    del sys.path[0]
sys.path[:] = [p for p in sys.path if p not in ("", ".")]

HEAD = None  # @HEAD: replaced by build.py
MID = None  # @MID: replaced by build.py
TAIL = None  # @TAIL: replaced by build.py
VERSION_LINE = None  # @VERSION_LINE: replaced by build.py

# `--version` is a fact fixed at build time: answer it without unpacking the program.
if sys.argv[1:] == ["--version"]:
    print(VERSION_LINE)
    sys.exit(0)

import base64  # noqa: E402  (only after the path is clean)
import os  # noqa: E402
import zlib  # noqa: E402


def archive_path(data):
    """A path to the zip that exists nowhere on disk: an anonymous memory file (memfd), read
    through /proc/self/fd. No temporary file for another user to swap or for us to leave
    behind. Where memfd is missing, an already-unlinked temporary file serves the same way."""
    try:
        fd = os.memfd_create("claw-cage.pyz", 0)
    except (AttributeError, OSError):
        import tempfile
        fd, name = tempfile.mkstemp(suffix=".zip")
        os.unlink(name)
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
    return "/proc/self/fd/%d" % fd


# zipimport (built into Python, nothing imported from disk) then loads the program's modules
# from that archive; it goes first on sys.path so nothing else can stand in for them.
ARCHIVE = zlib.decompress(base64.b85decode(PAYLOAD.replace("\n", "")))
sys.path.insert(0, archive_path(ARCHIVE))

import claw_cage  # noqa: E402

# The exact text of this file, so the installer can save a copy of itself even when it
# arrived through a pipe and exists nowhere on disk.
claw_cage.SELF_SOURCE = HEAD + LAUNCHER + MID + PAYLOAD + TAIL

from claw_cage.cli import main  # noqa: E402

sys.exit(main(sys.argv[1:]))
