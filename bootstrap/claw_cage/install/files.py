"""Careful file writing for the install directory (staging and reading are safefile's).

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

from ..errors import TargetError


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
