"""Install or upgrade (the default mode): check prerequisites, fetch the deploy files, write them.

  prereqs   what must be on the host first (docker, Compose v2)
  fetch     downloads the deploy files in parallel, each checked against its sha256
  files     the directory lock, and Ctrl-C held while staged files are renamed into place
  steps     the install flow itself, and the .env with its gateway token

Exposes main(args) for cli, and the .env facts that --verify checks (ENV, TOKEN_VAR,
token_is_set). Imports only the shared plumbing beside it.
"""

from .steps import ENV, TOKEN_VAR, main, token_is_set

__all__ = ["ENV", "TOKEN_VAR", "main", "token_is_set"]
