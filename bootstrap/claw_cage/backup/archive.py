"""claw-cage's backup archive, its one owner: one tar.gz, manifest.json first, then the files
it lists with their sha256, named by the functions below. Written under a hidden temporary name
in the destination, fsynced, then linked to its final name: a run cut off halfway never leaves
a file under that name. Read in one pass, each member handed to a sink as it streams (never
saved by this module); a truncated, altered, incomplete or oversized archive is refused."""

import contextlib
import errno
import fcntl
import gzip
import hashlib
import io
import json
import os
import re
import shutil
import stat
import tarfile
import time

from .. import runner, safefile
from ..errors import RefusedError
from ..runner import CommandError

MANIFEST = "manifest.json"
FORMAT = "claw-cage-backup-1"
PREFIX = ".claw-cage-backup-"   # the hidden work of a run: its stage folder, its .partial
MEMBER = re.compile(r"manifest\.json|(state|install)/\.?[A-Za-z0-9][A-Za-z0-9._-]*")
OPENCLAW = "state/openclaw-backup.tar.gz"   # the state volume, archived by OpenClaw itself
NAME = re.compile(r"claw-cage-backup-\d{8}T\d{6}Z\.tar\.gz(\.gpg|\.age)?")
SLACK = 1 << 20   # headers and padding: the members of a stored (level 0) tar.gz are no larger


def file_name(created, suffix=""):
    """The archive's name: its UTC time, and .gpg or .age when encrypted."""
    return "claw-cage-backup-%s.tar.gz%s" % (created, suffix)


def volume_member(key):
    """A volume copied with tar (the auth-profile key; the state without `openclaw backup`)."""
    return "state/%s.tar.gz" % key


def install_member(name):
    """One of claw-cage's files (.env, openclaw.json, the compose files)."""
    return "install/" + name


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _info(name, size):
    ti = tarfile.TarInfo(name)
    ti.size, ti.mode, ti.mtime = size, 0o600, int(time.time())
    return ti


def held(path):
    """True while a live run holds its flock on path (a .partial file or a stage folder):
    the kernel drops the lock when that run dies, even by kill -9."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:   # gone already, or a symlink: not ours to follow
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)


def sweep(directory):
    """Remove the hidden leftovers (.claw-cage-backup-*) of runs that died; a live run's stay."""
    gone = [n for n in os.listdir(directory)
            if n.startswith(PREFIX) and not held(os.path.join(directory, n))]
    for name in gone:
        path = os.path.join(directory, name)
        shutil.rmtree(path) if os.path.isdir(path) else os.unlink(path)
    return gone


def write(final, staged, facts, encrypt=None, check=None):
    """staged: [(member name, path)]. The manifest carries facts and each member's sha256.
    encrypt: the argv of gpg or age, which the archive streams through (no clear copy on
    disk); check: the argv that decrypts it, read back whole before it gets its name."""
    facts = dict(facts, format=FORMAT,
                 files={name: sha256_file(path) for name, path in staged})
    body = json.dumps(facts, indent=1, sort_keys=True).encode()
    directory = os.path.dirname(final)
    tmp = os.path.join(directory, "." + os.path.basename(final) + ".partial")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)   # ours while we live: sweep() leaves it
        with os.fdopen(fd, "wb") as f:
            proc = runner.start(encrypt, stdout=f) if encrypt else None
            try:
                # level 0 (stored, CRC-checked): every large member is a tar.gz already, and
                # deflating it again costs seconds per 100 MB for nothing
                with tarfile.open(fileobj=proc.stdin if proc else f, mode="w:gz",
                                  compresslevel=0) as tar:
                    tar.addfile(_info(MANIFEST, len(body)), io.BytesIO(body))
                    for name, path in staged:
                        with open(path, "rb") as src:
                            tar.addfile(_info(name, os.fstat(src.fileno()).st_size), src)
            finally:   # gpg or age stopped (a broken pipe): their message, not ours
                if proc:
                    runner.finish(proc)
            f.flush()
            os.fsync(f.fileno())
            if check:
                read(tmp, decrypt=check)
        os.link(tmp, final)   # never replaces a file of that name
        safefile.fsync_dir(directory)
    finally:
        os.unlink(tmp)
    return facts


def _open(path):
    """path opened as root without being tricked: no symlink followed, no FIFO waited on, a
    regular file only. Errors name the file, never a byte of it."""
    name = os.path.basename(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as err:
        raise RefusedError("cannot read %s: %s: refused, nothing changed" % (
            name, "a symlink" if err.errno == errno.ELOOP else err.strerror or err))
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise RefusedError("%s is not a regular file: refused, nothing changed" % name)
    return os.fdopen(fd, "rb")


def read(path, sink=None, decrypt=None):
    """The manifest, after every member's sha256 matched. sink(manifest, name, size): None, or a
    file-like object (write, close) each block of that member streams into as it is read,
    before its sha256 is known: what a sink fills is not trusted until read() returns.
    decrypt: the argv of gpg or age the archive streams through (it asks for the passphrase;
    no clear copy of the archive on disk). Members larger in sum than the archive itself
    (plus SLACK) are refused before that much is read. RefusedError, in one line, for
    anything else."""
    name = os.path.basename(path)
    with _open(path) as f:
        limit = os.fstat(f.fileno()).st_size + SLACK
        if not decrypt:
            return _read(f, name, sink, limit)
        proc = runner.start(decrypt, stdin=f)
        try:
            return _read(proc.stdout, name, sink, limit)
        finally:   # gpg or age judge the whole file; their refusal comes first
            while proc.stdout.read(1 << 20):
                pass
            try:
                runner.finish(proc)
            except CommandError as err:
                why = [ln for ln in err.stderr.splitlines() if "://" not in ln] or [err]
                raise RefusedError("%s could not be decrypted (%s): refused, nothing changed"
                                   % (name, why[-1]))


def _read(src, name, sink, limit):
    try:
        gz = gzip.GzipFile(fileobj=src, mode="rb")
        tar = tarfile.open(fileobj=gz, mode="r|")
    except (OSError, EOFError, tarfile.TarError) as err:   # BadGzipFile would show bytes
        raise RefusedError("%s is not a claw-cage backup (%s): refused, nothing changed"
                           % (name, "not gzip data" if isinstance(err, OSError) else err))
    manifest, seen, total = None, {}, 0
    try:
        with tar:
            for ti in tar:
                data = tar.extractfile(ti) if ti.isfile() else None
                if data is None or not MEMBER.fullmatch(ti.name):
                    raise RefusedError("%s holds an unexpected entry %r: refused" % (name, ti.name))
                total += ti.size
                if total > limit:
                    raise RefusedError("%s unpacks to more than its own size (%d bytes): "
                                       "refused, nothing changed" % (name, limit - SLACK))
                if manifest is None:
                    if ti.name != MANIFEST:
                        raise RefusedError("%s does not start with a claw-cage manifest" % name)
                    manifest = json.loads(data.read(1 << 20).decode())
                    if manifest.get("format") != FORMAT:
                        raise RefusedError("%s is not a claw-cage backup" % name)
                    continue
                h, out = hashlib.sha256(), sink(manifest, ti.name, ti.size) if sink else None
                try:
                    for block in iter(lambda: data.read(1 << 20), b""):
                        h.update(block)
                        if out:
                            out.write(block)
                except BaseException:
                    if out:   # the sink's own complaint would hide the reason
                        with contextlib.suppress(Exception):
                            out.close()
                    raise
                if out:
                    out.close()
                seen[ti.name] = h.hexdigest()
        while gz.read(1 << 20):   # to the gzip trailer: its CRC and length, no cut tail
            pass
    except (OSError, EOFError, tarfile.TarError, ValueError, UnicodeDecodeError) as err:
        raise RefusedError("%s is damaged or truncated (%s): refused, nothing changed" % (
            name, "not gzip data" if isinstance(err, gzip.BadGzipFile) else
            err or type(err).__name__))
    if manifest is None or seen != manifest.get("files"):
        raise RefusedError("%s does not match its manifest (altered or incomplete): refused, "
                           "nothing changed" % name)
    return manifest
