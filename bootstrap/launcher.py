# claw-cage launcher: the readable part of dist/claw-cage.pyz.
#
# build.py wraps this file, unchanged but for the three @-marked lines, in one Python
# expression together with the program (a zip archive, base64 text) and writes the result to
# dist/claw-cage.pyz. That file runs this code through exec(). Everything here must still
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

import binascii  # noqa: E402  (only after the path is clean)
import importlib.util  # noqa: E402
import io  # noqa: E402
import zipfile  # noqa: E402

HEAD = None  # @HEAD: replaced by build.py
MID = None  # @MID: replaced by build.py
TAIL = None  # @TAIL: replaced by build.py
ORIGIN = "claw-cage.pyz"


class PayloadImporter:
    """Imports the program's modules straight from the zip held in memory.

    Nothing is unpacked to disk, so there is no temporary file for another user to swap, and
    the payload's modules win over anything of the same name on sys.path.
    """

    def __init__(self, data):
        self.zip = zipfile.ZipFile(io.BytesIO(data))
        self.names = frozenset(self.zip.namelist())

    def _entry(self, fullname):
        base = fullname.replace(".", "/")
        if base + "/__init__.py" in self.names:
            return base + "/__init__.py", True
        if base + ".py" in self.names:
            return base + ".py", False
        return None, False

    def find_spec(self, fullname, path=None, target=None):
        entry, is_package = self._entry(fullname)
        if entry is None:
            return None
        return importlib.util.spec_from_loader(fullname, self, origin=ORIGIN + "/" + entry,
                                               is_package=is_package)

    def create_module(self, spec):
        return None

    def get_source(self, fullname):
        return self.zip.read(self._entry(fullname)[0]).decode("utf-8")

    def exec_module(self, module):
        source = self.get_source(module.__name__)
        exec(compile(source, module.__spec__.origin, "exec", dont_inherit=True), module.__dict__)


sys.meta_path.insert(0, PayloadImporter(binascii.a2b_base64(PAYLOAD)))

import claw_cage  # noqa: E402

# The exact text of this file, so the installer can save a copy of itself even when it
# arrived through a pipe and exists nowhere on disk.
claw_cage.SELF_SOURCE = HEAD + LAUNCHER + MID + PAYLOAD + TAIL

from claw_cage.cli import main  # noqa: E402

sys.exit(main(sys.argv[1:]))
