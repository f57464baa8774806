"""--proxy --config FILE: the egress proxy of the api-only profile, and the host side of the
gateway's ingress relay. Runs in the foreground until SIGTERM or SIGINT.

  config  the JSON config, validated strictly (exit 13 on any error)
  policy  the allow list (names, *.suffix, listed IP literals) and the blocked addresses
  server  the listeners and each connection's admission (the cap)
  http    the request head's one parser, the refusals
  tunnel  an egress client: its head, the decision, then the relay (and the forwards)
  upstream  resolving and connecting by the policy's rules
  relay   moving bytes between the two sockets of a connection; per-connection timers
  routes  /NAME/PATH served upstream with the real key (keys outside the agent)
  log     one line per connection or route request, never headers, bodies or keys

Exposes main(args) for cli, its config (the format of proxy.json) and what --verify reads of
the policy. Imports the firewall's rule table (its blocked ranges).
"""

from . import config
from .policy import HOST_LOOPBACK, split_host_port
from .server import main

__all__ = ["HOST_LOOPBACK", "config", "main", "split_host_port"]
