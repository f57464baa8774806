"""--firewall: isolate the container from the LAN and the host, and keep it so across reboots.

  rules     the rule table (ranges and verdicts) and the pure functions that render it
  script    the boot script / deploy/iptables-rules.sh: template, rendering, header reader
  allow     --allow SPEC: parsing and describing allow-list entries
  embedded  IPv6 forms that carry an IPv4 address (NAT64, 6to4, Teredo, mapped, compatible)
  backend   which iptables flavour to drive (where Docker's chains are), and installing it
  host      the host's state, read: flavours, tables, Docker's chains, IPv6, the parent chain
  readback  reading live iptables-save text and comparing rules as iptables loads them
  persist   the boot-time unit and root-owned script that restore the rules
  apply     the --firewall flow: plan, check, commit, read back; and --remove

Exposes main(args) for cli, and the table modules (rules, allow, host, persist, readback, script)
that
--verify judges the live rules against. Imports only the shared plumbing beside it.
"""

from . import allow, backend, host, persist, readback, rules, script
from .apply import main
from .embedded import NAT64_LOCAL, embedded_ipv4, embedded_ipv4_net


__all__ = ["NAT64_LOCAL", "allow", "backend", "embedded_ipv4", "embedded_ipv4_net", "host", "main", "persist",
           "readback", "rules", "script"]
