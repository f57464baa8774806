"""One error type the program raises on purpose, carrying its exit status.

Every exit code is listed here and in `--help` and docs/usage.md, so users can script on them.
"""

EXIT_OK = 0
EXIT_INTERNAL = 1      # a bug: an exception nobody planned for
EXIT_USAGE = 2         # bad command line (argparse's own convention)
EXIT_PREREQ = 3        # a prerequisite is missing (python, docker, compose v2, root, iptables)
EXIT_FETCH = 4         # an artifact could not be downloaded or failed its sha256 check
EXIT_TARGET = 5        # the target directory or a file in it is unusable (.env symlink, locked, ...)
EXIT_FIREWALL = 6      # applying or removing firewall rules failed
EXIT_VERIFY = 7        # --verify ran and at least one check failed
EXIT_UNCHECKED = 8     # --firewall applied the rules but could not read them back to check
EXIT_INCOMPLETE = 9    # --verify could not look: packet probes not run, or no running gateway
EXIT_DAEMON = 10       # --harden-docker: Docker refused the new daemon.json (or was rolled back)
EXIT_REFUSED = 11      # --backup/--restore/--rollback refused: nothing was changed
EXIT_ROLLED_BACK = 12  # the new gateway was not healthy: the previous state was put back
EXIT_PROXY = 13        # --proxy could not start: bad config, log or listen address
EXIT_INTERRUPTED = 130 # Ctrl-C

EXIT_CODES_HELP = """exit status:
  0    success
  1    internal error (a bug: please report it)
  2    usage error
  3    missing prerequisite (Python >= 3.8, docker, docker compose v2, root, iptables)
  4    download failed or an artifact did not match its expected sha256
  5    target directory unusable (not writable, .env not a regular file, another run holds the lock)
  6    firewall could not be applied or removed (a failed command included; after a
       partial change the previous rules are restored and the message says so)
  7    --verify found at least one failing check
  8    firewall rules applied, but reading them back to check them failed
  9    --verify incomplete: the packet probes could not run or the gateway container is
       not running (the last line says what was not verified)
  10   --harden-docker: the merged daemon.json was refused (nothing written), or Docker did not
       come back with it (the previous one was put back)
  11   --backup, --restore or --rollback refused (a damaged or foreign archive, nothing to
       roll back to, a failed --check drill): nothing was changed
  12   the gateway did not become healthy after a restore, rollback or upgrade: the previous
       state was put back
  13   --proxy could not start: its config file is invalid, its log cannot be opened, or a
       listen address cannot be bound
  130  interrupted (Ctrl-C)"""


class ClawCageError(Exception):
    """An expected failure: `str(err)` is the one-line reason shown to the user."""

    exit_code = EXIT_INTERNAL

    def __init__(self, message, exit_code=None):
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class UsageError(ClawCageError):
    exit_code = EXIT_USAGE


class PrereqError(ClawCageError):
    exit_code = EXIT_PREREQ


class FetchError(ClawCageError):
    exit_code = EXIT_FETCH


class TargetError(ClawCageError):
    exit_code = EXIT_TARGET


class FirewallError(ClawCageError):
    exit_code = EXIT_FIREWALL


class UncheckedError(ClawCageError):
    """The rules were committed, but reading them back failed: applied, not checked."""
    exit_code = EXIT_UNCHECKED


class DaemonError(ClawCageError):
    exit_code = EXIT_DAEMON


class RefusedError(ClawCageError):
    exit_code = EXIT_REFUSED


class RolledBackError(ClawCageError):
    exit_code = EXIT_ROLLED_BACK
