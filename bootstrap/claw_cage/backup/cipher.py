"""The ciphers an archive goes through: the real gpg or age, never our own crypto.

gpg --symmetric AES256 and age --passphrase ask on the terminal themselves; age -R (a
recipients file) needs no secret. The archive's name says which tool decrypts it."""

import os

from .. import runner
from ..errors import RefusedError

GPG = ["gpg", "--pinentry-mode", "loopback", "--no-symkey-cache", "-o", "-"]


def _tool(name):
    if not runner.which(name):
        raise RefusedError("%s is not installed: refused, nothing changed" % name)


def encryptor(how):
    """--encrypt gpg|age|RECIPIENTS: (encrypt argv, decrypt argv to read it back, suffix)."""
    if how == "gpg":   # loopback asks once: reading the archive back asks again
        return GPG + ["--symmetric", "--cipher-algo", "AES256"], decryptor(".gpg"), ".gpg"
    if how != "age" and not os.path.isfile(how):
        raise RefusedError("--encrypt: gpg, age or an age recipients file, not %s" % how)
    _tool("age")   # age -p asks twice itself
    return ["age"] + (["-p"] if how == "age" else ["-R", how]), None, ".age"


def decryptor(path, identity=None):
    """The argv that decrypts, from its input, the archive at path (which its name's ending
    says), or None for a plain one."""
    argv = {"gpg": GPG + ["--decrypt"], "age": ["age", "-d"] + (["-i", identity] if identity
                                                                 else [])}.get(path[-3:])
    if argv:
        _tool(argv[0])
    return argv
