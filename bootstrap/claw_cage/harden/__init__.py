"""--harden-docker [--dry-run] [--revert]: the hardening guide's daemon settings in
daemon.json, safely.

  merge    the daemon settings as data, and the pure merge into the user's daemon.json
  engine   the running engine: docker info, dockerd's argv, validate, restart until it answers
  apply    the flow: merge, show, validate, back up, write, restart, roll back; --revert

Exposes main(args) for cli. Imports only the shared plumbing beside it.
"""

from .apply import main

__all__ = ["main"]
