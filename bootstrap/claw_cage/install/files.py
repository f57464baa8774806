"""Careful file writing for the install directory.

- stage(): write a file's new content to a temporary file next to it (same file system),
  with its final mode from the first byte, fsynced. Renaming it over the old file later is
  atomic: a reader sees the old file or the new one, never half of either.
- DirLock: one run at a time per directory (flock on the directory itself, so the lock
  leaves no file behind).
- signals_deferred(): Ctrl-C and SIGTERM wait while the staged files are renamed into place,
  so an interruption lands before the first rename or after the last one.
"""

import contextlib
import errno
import fcntl
import os
import signal
import stat
import tempfile

from ..errors import TargetError


def stage(directory, name, data, mode):
    """Write data to a new hidden temporary file in directory; return its path."""
    fd, tmp = tempfile.mkstemp(dir=directory, prefix="." + name + ".")  # O_EXCL, mode 0600
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return tmp


def fsync_dir(directory):
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_regular(path):
    """Content of path if it is a regular file, None if absent. A symlink or anything else
    that is not a regular file raises TargetError: we never read or write through links."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    if not stat.S_ISREG(st.st_mode):
        kind = "a symlink" if stat.S_ISLNK(st.st_mode) else "not a regular file"
        raise TargetError("%s is %s: refusing to touch it (move it away and run again)"
                          % (path, kind))
    with open(path, "rb") as f:
        return f.read()


class DirLock:
    """Exclusive, non-blocking lock on a directory for the life of the `with` block."""

    def __init__(self, directory):
        self.directory = directory
        self.fd = None

    def __enter__(self):
        self.fd = os.open(self.directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            os.close(self.fd)
            if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise TargetError("another claw-cage run is working in %s; wait for it to "
                                  "finish and run again" % self.directory)
            raise
        return self

    def __exit__(self, *exc):
        os.close(self.fd)  # closing the descriptor releases the lock


@contextlib.contextmanager
def signals_deferred():
    """Hold SIGINT and SIGTERM until the block ends; a pending one is delivered then."""
    held = {signal.SIGINT, signal.SIGTERM}
    old = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)
