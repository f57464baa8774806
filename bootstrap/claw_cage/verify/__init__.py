"""--verify: the verification matrix, read-only. Each row is a claim with pass/fail/warn/skip.

  matrix          the flow: gather every group of rows at once, print, pick the exit status
  report          a row, and the table and JSON renderings
  firewall_rows   the live rules against the rule table (chains, jumps, order, persistence)
  exposure        the gateway port (listeners, DNAT) and the .env file
  container       `docker inspect` of the running gateway: hardening settings
  probe_plan      which packet probes to send and what each result means
  probes          how probes run (one throwaway container, or a test namespace)
  egress_rows     api-only and local-only: the egress proxy, and probes from inside the
                  agent's namespace
  openclaw_policy OpenClaw's security audit and the hardened openclaw.json keys, in the gateway
  backup_age      advice: how old the last backup is
  audit           the hardening guide's other layers (warn only)

Exposes main(args) for cli. Reads the other packages through their faces (docs/design.md has
the graph), and nothing imports it but cli.
"""

from .matrix import main

__all__ = ["main"]
