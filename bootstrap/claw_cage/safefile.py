"""Reading a user's file as root without being tricked, and replacing a file atomically.

The install directory belongs to the user, and --firewall / --verify may run as root. A file
there could be a symlink to a root-only file, a FIFO that blocks the reader forever, a device,
or something huge. read() opens the last path component without following a symlink and
without blocking (O_NOFOLLOW | O_NONBLOCK), checks what it opened with fstat (a regular file,
at most `limit` bytes), and only then reads it. Its errors name the path and the reason, never
a byte of the content.

stage() writes new content to a temporary file beside the old one (same file system, O_EXCL,
its final mode from the first byte, fsynced); renaming it over the old file is atomic: a reader
sees the old file or the new one, never half of either. write_atomic() does both at once.

DirLock: one run at a time per directory (flock on the directory itself, so the lock leaves
no file behind). signals_deferred(): Ctrl-C and SIGTERM wait while staged files are renamed
into place, so an interruption lands before the first rename or after the last one.
"""

import contextlib
import errno
import fcntl
import os
import signal
import stat
import tempfile

from .errors import TargetError

LIMIT = 1024 * 1024   # our compose file is about 6 KB and .env about 2 KB


class UnsafeFile(TargetError):
    """The path is there but is no regular file of a sane size: a symlink, a FIFO, a device,
    a directory, or too big. (A plain TargetError: it could not be opened or read.)"""


def read(path, limit=LIMIT):
    """The bytes of path, or None when it does not exist. TargetError when it is a symlink,
    not a regular file, larger than limit, or cannot be read."""
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        return None
    except OSError as err:
        if err.errno == errno.ELOOP:   # O_NOFOLLOW met a symlink
            raise UnsafeFile("%s is a symlink: refusing to follow it (replace it with the "
                              "file itself)" % path)
        raise TargetError("cannot open %s: %s" % (path, err.strerror or err))
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise UnsafeFile("%s is not a regular file: refusing to read it" % path)
        if st.st_size > limit:
            raise UnsafeFile("%s is larger than %d bytes: refusing to read it"
                             % (path, limit))
        chunks, size = [], 0
        while size <= limit:
            chunk = os.read(fd, limit + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > limit:   # it grew while we read it
            raise UnsafeFile("%s is larger than %d bytes: refusing to read it"
                             % (path, limit))
        return b"".join(chunks)
    except OSError as err:
        raise TargetError("cannot read %s: %s" % (path, err.strerror or err))
    finally:
        os.close(fd)


def read_text(path, limit=LIMIT):
    """read() decoded as UTF-8 (None when absent); a decoding error names no byte of it."""
    data = read(path, limit)
    if data is None:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise TargetError("%s is not UTF-8 text (at byte %d)" % (path, err.start))


def stage(directory, name, data, mode, owner=None):
    """Write data to a new hidden temporary file in directory; return its path.
    owner: (uid, gid) to give it, or None."""
    fd, tmp = tempfile.mkstemp(dir=directory, prefix="." + name + ".")  # O_EXCL, mode 0600
    try:
        os.fchmod(fd, mode)
        if owner is not None:
            os.fchown(fd, *owner)
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


def write_atomic(path, data, mode=None):
    """Replace path by data (bytes or text) at once, and make the rename durable. mode None:
    the mode and owner of the file it replaces (0644 for a new one). OSError on failure, with
    no temporary file left behind."""
    owner = None
    if mode is None:
        try:
            st = os.stat(path)
            mode, owner = stat.S_IMODE(st.st_mode), (st.st_uid, st.st_gid)
        except FileNotFoundError:
            mode = 0o644
    if isinstance(data, str):
        data = data.encode("utf-8")
    directory, name = os.path.split(path)
    tmp = stage(directory or ".", name, data, mode, owner)
    try:
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_dir(directory or ".")


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
