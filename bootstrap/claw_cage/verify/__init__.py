"""--verify: the verification matrix, read-only. Each row is a claim with pass/fail/warn/skip.

  matrix          the flow: gather every group of rows at once, print, pick the exit status
  report          a row, and the table and JSON renderings
  firewall_rows   the live rules against the rule table (chains, jumps, order, persistence)
  exposure        the gateway port (listeners, DNAT) and the .env file
  container       `docker inspect` of the running gateway: hardening settings
  probe_plan      which packet probes to send and what each result means
  probes          how probes run (one throwaway container, or a test namespace)
  egress_rows     api-only: the egress proxy, and probes from inside the agent's namespace
  audit           the hardening guide's other layers (warn only)

Exposes main(args) for cli. May import firewall and install (their __init__ names), never
the other way round.
"""

from .matrix import main

__all__ = ["main"]
