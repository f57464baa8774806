"""The host firewall that isolates the container from the LAN and the host, and keeps it so
across reboots (--firewall's rules; profiles/ runs them), and the rule table others read.

  rules     the rule table (ranges and verdicts) and the pure functions that render it
  script    the boot script / deploy/iptables-rules.sh: template, rendering, header reader
  allow     --allow SPEC: parsing and describing allow-list entries
  embedded  IPv6 forms that carry an IPv4 address (NAT64, 6to4, Teredo, mapped, compatible)
  backend   which iptables flavour to drive (where Docker's chains are), and installing it
  host      the host's state, read: flavours, tables, Docker's chains, IPv6, the parent chain
  readback  reading live iptables-save text and comparing rules as iptables loads them
  persist   the boot-time unit and root-owned script that restore the rules
  dns       the container's resolvers the cage would block: --firewall's warnings
  apply     plan, check, commit, read back, persist (apply_rules); and take out (remove_rules)

Exposes apply_rules and remove_rules for the --firewall flow (profiles/), the rule table and
embedded_ipv4 for the proxy and --proxmox, and the table modules (rules, allow, host, persist,
readback, script) that --verify judges the live rules against. Imports only the shared
plumbing beside it.
"""

from . import allow, backend, host, persist, readback, rules, script
from .apply import apply as apply_rules, remove as remove_rules
from .embedded import NAT64_LOCAL, embedded_ipv4, embedded_ipv4_net


__all__ = ["NAT64_LOCAL", "allow", "apply_rules", "backend", "embedded_ipv4",
           "embedded_ipv4_net", "host", "persist", "readback", "remove_rules", "rules", "script"]
