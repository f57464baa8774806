# claw-cage launcher: the readable part of dist/claw-cage.pyz.
#
# build.py wraps this file, unchanged but for the @-marked lines, in one Python expression
# together with the program (its modules, bz2-compressed, 14 bits per two bytes) and writes the
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

MID = None  # @MID: replaced by build.py
TAIL = None  # @TAIL: replaced by build.py
VERSION_LINE = None  # @VERSION_LINE: replaced by build.py

# `--version` is a fact fixed at build time: answer it without unpacking the program.
if sys.argv[1:] == ["--version"]:
    print(VERSION_LINE)
    sys.exit(0)

# The payload is one bz2 stream. _bz2 (not bz2.py, which imports threading) is in every
# distribution's python3 (Debian/Ubuntu: libpython3-stdlib, which python3 depends on; Alpine,
# Fedora, Arch, python.org); only a python3-minimal alone or a Python built without libbz2's
# headers lacks it.
try:
    from _bz2 import BZ2Decompressor
except ImportError:
    sys.stderr.write("claw-cage: error: this Python lacks its bz2 module, which claw-cage needs "
                     "to unpack itself (install your distribution's full python3 package)\n")
    sys.exit(3)
from importlib.machinery import ModuleSpec  # noqa: E402


def unpack(text):
    """The modules, {"claw_cage/x.py": source}, from the payload build.py's pack() wrote: 14
    bits per two bytes (two ASCII characters, or one U+00C0-U+02B6). Big-number arithmetic on
    the whole payload at once, C speed with no loop over characters: every digit's value from
    its two bytes, the 14-bit digits packed by two mask steps into 7 bytes of every 8, then
    decompressed."""
    data = text.encode("utf-8")
    table = bytearray(256)
    table[1:128] = bytes(range(127))
    table[14:128] = bytes(range(12, 126))   # no CR (13)
    table[35:128] = bytes(range(32, 125))   # no " (34)
    table[128:192] = bytes(range(64))       # continuation bytes
    table[195:224] = bytes(range(29))       # lead bytes from C3
    size = len(data)
    ones = int.from_bytes(b"\0\1" * (size // 2), "big")
    n = int.from_bytes(data.translate(table), "big")
    high, low = n >> 8 & ones * 255, n & ones * 255
    two_bytes = (int.from_bytes(data, "big") >> 15 & ones) * 0xFFFF
    n = (high * 125 + low) & ~two_bytes | (high * 64 + low + ones * 15625) & two_bytes
    for width, shift in ((4, 2), (8, 4)):
        bits = width * 4 - width // 2
        low = int.from_bytes(((1 << bits) - 1).to_bytes(width, "big") * (size // width), "big")
        n = n & low | (n & low << width * 4) >> shift
    data = bytearray(n.to_bytes(size, "big"))
    del data[::8]  # the zero byte heading every 8
    parts = BZ2Decompressor().decompress(bytes(data)).decode("utf-8").split("\0")
    return dict(zip(parts[::2], parts[1::2]))


MODULES = unpack(PAYLOAD[1:-1])  # the newlines after the opening r""" and before the closing


class Importer:
    """Finds and loads the program's modules from MODULES; it goes first on sys.meta_path so
    nothing on disk can stand in for them. A module's file name, "claw-cage.pyz/claw_cage/x.py",
    and get_source() keep tracebacks and inspect showing source lines."""

    @staticmethod
    def _file(name):
        base = name.replace(".", "/")
        for file, package in ((base + "/__init__.py", True), (base + ".py", False)):
            if file in MODULES:
                return file, package
        return None, False

    @classmethod
    def find_spec(cls, name, path=None, target=None):
        file, package = cls._file(name)
        if file is None:
            return None
        spec = ModuleSpec(name, cls, origin="claw-cage.pyz/" + file, is_package=package)
        spec.has_location = True  # sets __file__
        return spec

    @staticmethod
    def create_module(spec):
        return None  # the default module object

    @classmethod
    def get_source(cls, name):
        return MODULES[cls._file(name)[0]]

    @classmethod
    def exec_module(cls, module):
        # the program's own modules, from this very file: nothing outside reaches here
        exec(compile(cls.get_source(module.__name__), module.__file__, "exec"),  # nosec B102
             module.__dict__)


sys.meta_path.insert(0, Importer)

import claw_cage  # noqa: E402

# The exact text of this file, so the installer can save a copy of itself even when it
# arrived through a pipe and exists nowhere on disk.
from claw_cage import buildinfo  # noqa: E402

claw_cage.SELF_SOURCE = buildinfo.HEAD + LAUNCHER + MID + PAYLOAD + TAIL

from claw_cage.cli import main  # noqa: E402

sys.exit(main(sys.argv[1:]))
