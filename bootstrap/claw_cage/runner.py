"""The one place that runs external commands (iptables, apt-get, docker, systemctl, ...).

Every command is logged, runs with a fixed C locale (so we can read its messages), has a
timeout, and a failure becomes a CommandError that carries the command and its stderr.
No other module imports subprocess.
"""

import os
import shlex
import shutil
import subprocess
import sys

from .errors import ClawCageError


class _Log:
    """-v's lines: every command run, and how a failed one ended, on stderr (cli turns them
    on). Not the logging module: its imports alone cost every start about 10 ms."""

    on = False

    def debug(self, fmt, *args):
        if self.on:
            sys.stderr.write("  %s\n" % (fmt % args))
            sys.stderr.flush()


log = _Log()


class CommandError(ClawCageError):
    """A command failed: exited non-zero, timed out, or could not be started. Its exit code
    is the running mode's (cli.MODES): a failed docker is not the same news everywhere."""

    exit_code = None

    def __init__(self, argv, message, returncode=None, stderr=""):
        self.argv = list(argv)
        self.returncode = returncode
        self.stderr = stderr
        super().__init__("%s: %s" % (shlex.join(self.argv), message))


class Result:
    __slots__ = ("argv", "returncode", "stdout", "stderr")

    def __init__(self, argv, returncode, stdout, stderr):
        self.argv, self.returncode, self.stdout, self.stderr = argv, returncode, stdout, stderr

    @property
    def ok(self):
        return self.returncode == 0


def which(name):
    """Path of `name` on PATH, or None. Also looks in the sbin folders, which a non-root
    PATH often lacks but where iptables lives."""
    found = shutil.which(name)
    if found:
        return found
    extra = os.pathsep.join(("/usr/local/sbin", "/usr/sbin", "/sbin"))
    return shutil.which(name, path=extra)


def run(argv, input=None, check=True, timeout=120, env=None, cwd=None, session=False):
    """Run argv (a list, never a shell string) and return a Result with text output.
    cwd: the directory it runs in (Compose resolves COMPOSE_FILE's paths against it).
    session: in a session of its own, out of reach of a Ctrl-C at the terminal while we hold
    ours (Docker's CLI, written in Go, unblocks SIGINT for itself).

    check=True turns a non-zero exit into CommandError; check=False returns it for the
    caller to judge. A missing program or a timeout always raises CommandError.
    """
    argv = [str(a) for a in argv]
    full_env = dict(os.environ, LC_ALL="C", LANG="C")
    if env:
        full_env.update(env)
    log.debug("$ %s", shlex.join(argv))
    program = argv[0]
    if "/" not in program and not shutil.which(program, path=full_env.get("PATH")):
        program = which(program) or program   # iptables lives in sbin, off a non-root PATH
    try:
        proc = subprocess.run([program] + argv[1:], input=input, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, universal_newlines=True,
                              timeout=timeout, env=full_env, cwd=cwd,
                              start_new_session=session)
    except FileNotFoundError:
        raise CommandError(argv, "command not found")
    except PermissionError as err:
        raise CommandError(argv, "cannot execute: %s" % err.strerror)
    except subprocess.TimeoutExpired:
        raise CommandError(argv, "timed out after %ss" % timeout)
    result = Result(argv, proc.returncode, proc.stdout, proc.stderr)
    if proc.returncode != 0:
        log.debug("  exit %s: %s", proc.returncode, proc.stderr.strip()[-500:])
        if check:
            raise _failed(argv, proc.returncode, proc.stderr)
    return result


def _failed(argv, rc, err):
    detail = err.strip().splitlines()
    return CommandError(argv, "exit status %d: %s" % (rc, detail[-1] if detail else
                                                      "no error message"), rc, err)


def stream(argv, stdout=None, stdin=None, timeout=3600, session=False):
    """Run argv with binary stdout/stdin connected to open files (a volume's tar stream to or
    from an archive): nothing held in memory. A failure raises CommandError like run()."""
    return finish(start(argv, stdin or subprocess.DEVNULL, stdout or subprocess.DEVNULL,
                        session=session), timeout=timeout)


def start(argv, stdin=None, stdout=None, cwd=None, detach=False, session=False):
    """Start argv without waiting: binary pipes, or the open files given (an archive streamed
    through gpg or age, which ask for a passphrase on the terminal themselves). detach: in its
    own session, deaf to the kill of ours (a watchdog), output discarded. finish() judges it."""
    argv = [str(a) for a in argv]
    log.debug("$ %s", shlex.join(argv))
    out = subprocess.DEVNULL if detach else subprocess.PIPE
    try:
        return subprocess.Popen(argv, stdin=stdin or subprocess.PIPE, stdout=stdout or out,
                                stderr=out, cwd=cwd, start_new_session=detach or session,
                                env=dict(os.environ, LC_ALL="C", LANG="C"))
    except FileNotFoundError:
        raise CommandError(argv, "command not found")


def finish(proc, timeout=None):
    """End proc's input, wait for it; CommandError when it failed."""
    try:
        err = proc.communicate(None, timeout)[1] or b""
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise CommandError(proc.args, "timed out after %ss" % timeout)
    err = err.decode("utf-8", "replace").strip()
    if proc.returncode:
        raise _failed(proc.args, proc.returncode, err)
    return Result(proc.args, 0, None, err)
