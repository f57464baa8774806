"""Install or upgrade (the default mode): check prerequisites, fetch the deploy files, write them.

  prereqs   what must be on the host first (docker, Compose v2)
  fetch     downloads the deploy files in parallel, each checked against its sha256
  steps     the install flow itself, and the .env with its gateway token

Exposes main(args) for cli, and the .env facts that --verify checks (ENV, TOKEN_VAR,
token_is_set). Imports the shared plumbing beside it, and backup (the guard around an upgrade
that changes the image: only when the compose file changes); backup never imports install.
"""

from .steps import ENV, TOKEN_VAR, main, token_is_set

__all__ = ["ENV", "TOKEN_VAR", "main", "token_is_set"]
