"""--proxmox: print /etc/pve/firewall/<VMID>.fw for the VM that runs claw-cage (the hardening
guide's Proxmox VM firewall layer).

Prints, never applies: it runs on the VM, the file belongs on the Proxmox host. Rendered from
--firewall's rule table, so the whole VM is kept from what its container is kept from. Format
from pve-docs pve-firewall.adoc: rule addresses hold no `!`, no list mixes IPv4 and IPv6.
"""

import ipaddress
import json
import os
import sys

from .. import runner
from ..errors import PrereqError, UsageError
from ..firewall import allow, rules
from ..ui import UI

NIC = "net0"   # Proxmox's name for the VM's NIC: assumed to be the one of the default route
OPTIONS = "enable: 1\npolicy_in: DROP\npolicy_out: ACCEPT\nmacfilter: 1\nipfilter: 1\nndp: 1\ndhcp: 1"
HEADER = """\
# /etc/pve/firewall/{vm}.fw for the VM that runs claw-cage, from --firewall's rule table:
# the VM sends nothing to the ranges its container may not reach, and takes SSH only
# from {admin}. A resolver, NTP server or mirror on the LAN needs --allow ADDRESS:PORT.
#   python3 claw-cage.pyz --proxmox{args}
# On the Proxmox host, as root (keep a shell open):
#  1. cluster firewall on: "enable: 1" under [OPTIONS] in /etc/pve/firewall/cluster.fw
#  2. the NIC's firewall on: qm set {vm} --{nic} '<net0 of qm config {vm}>,firewall=1'
#  3. save this as /etc/pve/firewall/{vm}.fw; `pve-firewall compile` prints no error
#  4. from another LAN host: ssh works only from {admin}, other ports time out
# ipfilter: the VM may send only from ipfilter-{nic} (its addresses now): with DHCP,
# reserve them or regenerate this file. DHCP and NDP pass before these rules.
"""


def _addr(net):
    return str(net.network_address) if net.num_addresses == 1 else str(net)


def render(config, admin, own, vmid=None, wide=False):
    """The .fw text: config (the table's allows and profile), admin (ip_network let in over
    SSH), own (this VM's addresses, for ipfilter).

    Rendered from rules.policy(), the table every iptables anchor renders, as one more
    anchor: the VM's NIC. Its allows become OUT ACCEPTs and its ranges the IP sets dropped out;
    IPv4's rest verdict (DROP under local-only) ends the rules. Rules about the host itself
    (host:PORT, LOCAL, broadcast) and the container's own subnet stay inside the VM, and the
    IPv6 rest is about the container (it has no IPv6), so they have no line here."""
    args = "".join(" --allow " + allow.describe(a) for a in config.allows)
    if config.profile != "internet":
        args += " --profile " + config.profile
    args += (" " + allow.WIDE_FLAG if wide else "") + (" --vmid %s" % vmid if vmid else "") + " --admin-source " + _addr(admin)
    out = [HEADER.format(vm=vmid or "VMID", admin=_addr(admin), args=args, nic=NIC),
           "[OPTIONS]", OPTIONS, "", "[IPSET ipfilter-%s] # this VM's addresses" % NIC]
    out += [str(a) for a in sorted(own, key=lambda a: (a.version, a))]
    accepts, rest = [], None
    for fam in rules.FAMILIES:
        why = {ipaddress.ip_network(cidr): text for cidr, text in rules.SPECIAL_RANGES[fam]}
        out += ["", "[IPSET claw-cage-v%d] # blocked by claw-cage" % fam]
        for kind, arg, verdict in rules.policy(config, fam):
            if kind == "range":
                out.append("%s # %s" % (arg, why[arg]))
            elif kind in ("allow", "allow-net"):
                net, pp = arg
                spec = allow.describe(allow.Allow("net", net, pp and pp[1]))
                accepts.append("OUT ACCEPT -dest %s%s # --allow %s" % (
                    _addr(net), " -p %s -dport %d" % pp if pp else "", spec))
            elif kind == "rest" and fam == 4:
                rest = verdict
    out += ["", "[RULES]", "IN ACCEPT -source %s -p tcp -dport 22 # SSH" % _addr(admin)]
    out += accepts + ["OUT DROP -dest +claw-cage-v%d" % f for f in rules.FAMILIES]
    if rest == "DROP":
        out.append("OUT DROP # --profile %s: nothing else leaves" % config.profile)
    return "\n".join(out) + "\n"


def admin_source(text):
    """--admin-source, else the client address of this SSH session."""
    text = text or (os.environ.get("SSH_CLIENT", "").split() or [None])[0]
    if not text:
        raise UsageError("--proxmox needs --admin-source CIDR: the address you SSH in from")
    try:
        return ipaddress.ip_network(text)
    except ValueError as err:
        raise UsageError("--admin-source %s: %s" % (text, err))


def own_addresses():
    """Global addresses of the interface of this VM's default route."""
    ip = runner.which("ip") or "ip"
    for fam in ("-4", "-6"):
        routes = json.loads(runner.run([ip, "-j", fam, "route", "show", "default"]).stdout or "[]")
        for dev in [r["dev"] for r in routes if r.get("dev")][:1]:
            links = json.loads(runner.run([ip, "-j", "addr", "show", "dev", dev]).stdout or "[]")
            found = [ipaddress.ip_address(a["local"]) for link in links
                     for a in link.get("addr_info", ()) if a.get("scope") == "global"]
            if found:
                return found
    raise PrereqError("no global address on a default route: cannot fill ipfilter-" + NIC)


def blocked_resolvers(config, path="/etc/resolv.conf"):
    """This VM's DNS servers that the file would cut it off from (loopback ones stay inside)."""
    found = []
    try:
        with open(path) as f:
            words = [line.split() for line in f]
    except OSError:
        return found
    for w in words:
        try:
            addr = ipaddress.ip_address(w[1].split("%")[0]) if w[:1] == ["nameserver"] else None
        except (IndexError, ValueError):
            continue
        if addr and not addr.is_loopback and rules.forward_verdict(config, addr, 53) == "DROP":
            found.append(addr)
    return found


def main(args):
    config = rules.default_config()._replace(allows=allow.parse_all(args.allow),
                                             profile=args.profile or "internet")
    # what an allow may open: as for --firewall, this VM being the host
    allow.check(config.allows, allow.host_networks(), config.profile, args.unsafe_wide_allow)
    sys.stdout.write(render(config, admin_source(args.admin_source), own_addresses(),
                            args.vmid, args.unsafe_wide_allow))
    for addr in blocked_resolvers(config):
        UI(sys.stderr).warn("this file cuts the VM off from its DNS server %s: add --allow %s"
                            % (addr, ("[%s]:53" if addr.version == 6 else "%s:53") % addr))
    return 0
