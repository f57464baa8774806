"""--firewall: isolate the container from the LAN and the host, and keep it so across reboots.

  rules     the rule table (ranges and verdicts) and the pure functions that render it
  allow     --allow SPEC: parsing and describing allow-list entries
  embedded  IPv6 forms that carry an IPv4 address (NAT64, 6to4, Teredo, mapped, compatible)
  backend   which iptables flavour to drive (where Docker's chains are), reading rules
  readback  reading live iptables-save text and comparing rules as iptables loads them
  persist   the boot-time unit and root-owned script that restore the rules
  apply     the --firewall flow: plan, check, commit, read back; and --remove

Exposes main(args) for cli, and the table modules (rules, allow, persist, readback) that
--verify judges the live rules against. Imports only the shared plumbing beside it.
"""

from . import allow, backend, persist, readback, rules
from .embedded import embedded_ipv4, embedded_ipv4_net


def main(args):
    from .apply import main as apply_main  # the flow, only when --firewall runs
    return apply_main(args)


__all__ = ["allow", "backend", "embedded_ipv4", "embedded_ipv4_net", "main", "persist",
           "readback", "rules"]
