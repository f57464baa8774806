"""--proxy --config FILE: the egress proxy of the api-only profile, and the host side of the
gateway's ingress relay. Runs in the foreground until SIGTERM or SIGINT.

  config  the JSON config, validated strictly (exit 13 on any error)
  policy  the allow list (names, *.suffix, listed IP literals) and the blocked addresses
  server  listeners, the request head, the decision, the refusals
  relay   moving bytes between the two sockets of a connection
  log     one line per connection, never headers, bodies or credentials

Exposes main(args) for cli, its config (the format of proxy.json) and what --verify reads of
the policy. Imports the firewall's rule table (its blocked ranges).
"""

from . import config
from .policy import HOST_LOOPBACK, split_host_port
from .server import main

__all__ = ["HOST_LOOPBACK", "config", "main", "split_host_port"]
