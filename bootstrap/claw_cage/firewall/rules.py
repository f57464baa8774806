"""The claw-cage firewall as DATA, and the pure functions that render it.

Nothing here runs a command or reads the system: apply.py (applies), script.py (the boot
script and deploy/iptables-rules.sh) and --verify (compares) all render from the one table
below, so they cannot drift apart.

Two anchors, each of which alone blocks every target (layered defence: either holds if the
other is bypassed or flushed):
  1. mangle PREROUTING -> CLAW-CAGE-PRE. Every packet the container sends passes there once,
     before routing and before any DNAT, whether it is forwarded or addressed to the host:
     the destination is what the container asked for. No other tool on a Docker host writes
     there (Docker's iptables and nftables backends, ufw, Tailscale all live in filter/nat),
     and a DROP there is final whatever ACCEPTs later hooks or other tables hold.
  2. filter: DOCKER-USER (or FORWARD itself where Docker made no DOCKER-USER: its nftables
     backend) -> CLAW-CAGE-FWD for forwarded traffic, INPUT -> CLAW-CAGE-IN for the host.
And one guard for what does NOT come from the bridge: mangle INPUT -> CLAW-CAGE-ROUTES for
every packet delivered to the host through another interface. Linux is a weak host: a LAN
neighbour that routes the bridge's subnet via the host's LAN address reaches the bridge's own
address (the key routes' port, 172.30.0.1:18790) through the LAN interface, where the anchors
above, which judge packets from the bridge, never look. That chain drops it (the proxy, which
serves the claw-cage network's subnet alone, refuses it too: proxy/server.py).

Public API
  Config(bridge, subnet, allows=(), profile="internet", parent="DOCKER-USER")
  FAMILIES = (4, 6)             one `family` parameter everywhere, never copied branches
  TABLES = ("mangle", "filter") the tables claw-cage writes, in the order it writes them
  PRE_CHAIN, FWD_CHAIN, IN_CHAIN, ROUTES_CHAIN, OWN_CHAINS, TABLE_OF
  policy(config, family) -> [Rule]   THE rule table: abstract rules in evaluation order
  chain_rules(config, family) -> {chain: [rule spec, ...]}   the table rendered per anchor
  jumps(config) -> [(table, parent, spec)]   the jumps into the own chains, each first, once
  expected_lines(config, family) -> [str]    "-N CHAIN", "-A CHAIN ..." and each jump line
  forward_verdict(config, address, port=None) -> "RETURN" | "DROP"
  jump_edits(config, table, chains) -> [str] restore lines that leave each wanted jump once,
                               first, and delete every other jump into an own chain
  render_restore(config, family, saved) -> `iptables-restore -n` input (both tables)
  render_removal(saved) -> `iptables-restore -n` input undoing it
  render_rollback(saved_text) -> `iptables-restore` input putting back a saved state exactly

`saved` is readback.parse_tables() of one `iptables-save`: {table: {chain: [rule, ...]}}.
Rule specs are written as iptables-save prints them back; the read-back after applying and
--verify still compare them canonically (readback.compare), so option order cannot matter.
"""

import collections
import ipaddress

PREFIX = "CLAW-CAGE-"
PRE_CHAIN = PREFIX + "PRE"   # first anchor: everything from the bridge (mangle PREROUTING)
FWD_CHAIN = PREFIX + "FWD"   # second anchor: forwarded (DOCKER-USER, or FORWARD)
IN_CHAIN = PREFIX + "IN"     # second anchor: to the host itself (INPUT)
ROUTES_CHAIN = PREFIX + "ROUTES"   # the key routes' port reached NOT from the bridge (mangle INPUT)
OWN_CHAINS = (PRE_CHAIN, ROUTES_CHAIN, FWD_CHAIN, IN_CHAIN)   # table by table
TABLE_OF = {PRE_CHAIN: "mangle", FWD_CHAIN: "filter", IN_CHAIN: "filter",
            ROUTES_CHAIN: "mangle"}
TABLES = ("mangle", "filter")   # mangle first: on an upgrade the new anchor is in before the
                                # filter layer is rewritten (legacy commits table by table)
FAMILIES = (4, 6)
PROFILES = ("internet", "local-only")
PARENTS = ("DOCKER-USER", "FORWARD")

DEFAULT_BRIDGE = "claw-cage0"
DEFAULT_SUBNET = "172.30.0.0/24"

# Destinations a container has no business reaching: the IANA special-purpose registry
# (RFC 6890). Dropped whatever the profile; only --allow punches through.
SPECIAL_RANGES = {
    4: (
        ("0.0.0.0/8", "'this network' (RFC 791)"),
        ("10.0.0.0/8", "private LAN (RFC 1918)"),
        ("100.64.0.0/10", "carrier-grade NAT: Tailscale and other overlays (RFC 6598)"),
        ("127.0.0.0/8", "loopback (RFC 1122)"),
        ("169.254.0.0/16", "link-local: cloud metadata 169.254.169.254 (RFC 3927)"),
        ("172.16.0.0/12", "private LAN, other Docker networks (RFC 1918)"),
        ("192.0.0.0/24", "IETF protocol assignments (RFC 6890)"),
        ("192.168.0.0/16", "private LAN (RFC 1918)"),
        ("198.18.0.0/15", "benchmarking (RFC 2544)"),
        ("224.0.0.0/4", "multicast (RFC 5771)"),
        ("240.0.0.0/4", "reserved (RFC 1112)"),
        ("255.255.255.255/32", "limited broadcast (RFC 919)"),
    ),
    6: (
        ("fc00::/7", "unique local (RFC 4193): holds AWS metadata fd00:ec2::254"),
        ("fe80::/10", "link-local (RFC 4291)"),
        ("ff00::/8", "multicast (RFC 4291)"),
    ),
}

# What happens to traffic that is neither special nor allowed. The claw-cage network is
# IPv4-only (Docker sets disable_ipv6 in its containers), so IPv6 never leaves.
REST_VERDICT = {
    (4, "internet"): "RETURN",
    (4, "local-only"): "DROP",
    (6, "internet"): "DROP",
    (6, "local-only"): "DROP",
}

# ICMPv6 neighbour discovery between host and container: without it the host cannot even
# answer an IPv6 connection it opened itself. IPv4's equivalent (ARP) is not IP at all.
NEIGHBOUR_DISCOVERY = {4: (), 6: (135, 136)}

# The internet profile's gateway reaches claw-cage's key routes (the proxy, on the host) at
# the bridge's own address, this TCP port alone (egress/keys.PORT); INPUT accepts it there
# and then (_in), so a host firewall's default deny (ufw) cannot shadow the row.
ROUTES_PORT = 18790

ESTABLISHED = "-m conntrack --ctstate RELATED,ESTABLISHED -j RETURN"
PROTOCOLS = ("tcp", "udp")   # an allowed PORT opens both: DNS, for one, needs UDP

Config = collections.namedtuple("Config", "bridge subnet allows profile parent")
Config.__new__.__defaults__ = ((), "internet", "DOCKER-USER")

# One abstract rule of the table. kind says what it matches (see _RENDER), arg its value.
Rule = collections.namedtuple("Rule", "kind arg verdict")


def default_config(bridge=DEFAULT_BRIDGE, subnet=DEFAULT_SUBNET):
    return Config(bridge, ipaddress.ip_network(str(subnet)))


def policy(config, family):
    """THE rule table for one family, in evaluation order. Every anchor renders it (_RENDER);
    an anchor leaves out what never reaches it (the host's own addresses never cross FORWARD)
    but never reorders it.

    Order matters where sets overlap: the host's own addresses on the bridge (172.30.0.1) are
    LOCAL *and* in the subnet, so "local" is judged before "subnet". The host opens port by
    port only: host:PORT and ADDRESS:PORT allows (the address may be one of the
    host's) come before the LOCAL drop, every other allow after it - a network allow never
    opens a port of the host - and all allows before the ranges' drops."""
    if config.profile not in PROFILES:
        raise ValueError("unknown profile %r" % (config.profile,))
    table = [Rule("established", None, "RETURN")]
    table += [Rule("nd", t, "RETURN") for t in NEIGHBOUR_DISCOVERY[family]]
    port_allows, net_allows = [], []
    for allow in config.allows:
        if allow.kind == "host":
            table += [Rule("host-port", (p, allow.port), "RETURN") for p in PROTOCOLS]
        elif allow.net.version == family:
            ports = [(p, allow.port) for p in PROTOCOLS] if allow.port else [None]
            kind = "allow" if allow.port and allow.net.num_addresses == 1 else "allow-net"
            (port_allows if kind == "allow" else net_allows).extend(
                Rule(kind, (allow.net, pp), "RETURN") for pp in ports)
    table += port_allows
    if config.profile == "internet" and config.subnet.version == family:
        gateway = ipaddress.ip_network(next(config.subnet.hosts()))
        table.append(Rule("route", (gateway, ("tcp", ROUTES_PORT)), "RETURN"))
    table.append(Rule("local", None, "DROP"))
    if family == 4:
        table.append(Rule("broadcast", None, "DROP"))   # 172.30.0.255 reaches the host too
    table += net_allows
    if config.subnet.version == family:
        table.append(Rule("subnet", config.subnet, "RETURN"))
    table += [Rule("range", ipaddress.ip_network(cidr), "DROP")
              for cidr, _why in SPECIAL_RANGES[family]]
    table.append(Rule("rest", None, REST_VERDICT[(family, config.profile)]))
    return table


def _net(net):
    """A network as `-d` prints it: always with a prefix length."""
    return "%s/%d" % (net.network_address, net.prefixlen)


def _ct_net(net):
    """A network as `--ctorigdst` prints it: a single address without its /32 or /128."""
    return str(net.network_address) if net.num_addresses == 1 else _net(net)


def _port(pp):
    return "" if pp is None else "-p %s -m %s --dport %d " % (pp[0], pp[0], pp[1])


# -- one renderer per anchor: Rule -> [spec] ------------------------------------------------

def _pre(rule):
    """mangle PREROUTING: before routing and DNAT, so `-d` is what the container asked for."""
    kind, arg, verdict = rule
    if kind == "established":
        return [ESTABLISHED]
    if kind == "nd":
        return ["-p ipv6-icmp -m icmp6 --icmpv6-type %d -j RETURN" % arg]
    if kind == "host-port":
        return ["-p %s -m addrtype --dst-type LOCAL -m %s --dport %d -j RETURN"
                % (arg[0], arg[0], arg[1])]
    if kind in ("allow", "allow-net", "route"):
        net, pp = arg
        return ["-d %s %s-j RETURN" % (_net(net), _port(pp))]
    if kind in ("local", "broadcast"):
        return ["-m addrtype --dst-type %s -j DROP" % kind.upper()]
    if kind in ("subnet", "range"):
        return ["-d %s -j %s" % (_net(arg), verdict)]
    return ["-j %s" % verdict]


def _fwd(rule):
    """filter, forwarded traffic: after DNAT, so each destination is matched as it goes now
    (-d) and as the container aimed it (--ctorigdst)."""
    kind, arg, verdict = rule
    if kind == "established":
        return [ESTABLISHED]
    if kind in ("nd", "host-port", "route", "local", "broadcast"):
        return []    # never forwarded: INPUT's business
    if kind in ("allow", "allow-net"):
        net, pp = arg
        if pp is None:
            return ["-m conntrack --ctorigdst %s -j RETURN" % _ct_net(net)]
        return ["-p %s -m conntrack --ctorigdst %s --ctorigdstport %d -j RETURN"
                % (pp[0], _ct_net(net), pp[1])]
    if kind == "subnet":   # container to container, only when not DNAT'd elsewhere
        return ["-d %s -m conntrack --ctorigdst %s -j RETURN" % (_net(arg), _ct_net(arg))]
    if kind == "range":
        return ["-d %s -j DROP" % _net(arg), "-m conntrack --ctorigdst %s -j DROP" % _ct_net(arg)]
    return ["-j %s" % verdict]


def _in(rule):
    """filter INPUT: everything here is for the host; what the table does not open, drops."""
    kind, arg, verdict = rule
    if kind == "established":
        return [ESTABLISHED]
    if kind == "nd":
        return ["-p ipv6-icmp -m icmp6 --icmpv6-type %d -j RETURN" % arg]
    if kind == "host-port":
        return ["-p %s -m %s --dport %d -j RETURN" % (arg[0], arg[0], arg[1])]
    if kind == "allow":   # ADDRESS:PORT, the address may be one of the host's own
        net, pp = arg
        return ["-d %s %s-j RETURN" % (_net(net), _port(pp))]
    if kind == "route":
        # ACCEPT, final in INPUT: the host's own firewall (ufw's default deny incoming: its
        # INPUT chains, then policy DROP) would otherwise drop what claw-cage's proxy serves
        # the cage, which no user opens by hand. The address and port alone, from the bridge.
        net, pp = arg
        return ["-d %s %s-j ACCEPT" % (_net(net), _port(pp))]
    if kind == "local":
        return ["-j DROP"]
    return []   # the rest cannot reach INPUT past "local": every packet here is local


def _routes(rule):
    """mangle INPUT, for packets that did NOT arrive on the bridge (the jump says so): the
    key routes' address and port are the cage's alone, so from anywhere else they drop. The
    host's own connections (lo) pass: they are the host's, like the proxy."""
    kind, arg, _verdict = rule
    if kind == "route":
        net, pp = arg
        return ["-d %s ! -i lo %s-j DROP" % (_net(net), _port(pp))]
    return []


_RENDER = collections.OrderedDict(((PRE_CHAIN, _pre), (ROUTES_CHAIN, _routes),
                                   (FWD_CHAIN, _fwd), (IN_CHAIN, _in)))


def chain_rules(config, family):
    """{own chain: [rule spec, ...]} in evaluation order, for one address family."""
    table = policy(config, family)
    return collections.OrderedDict(
        (chain, [spec for rule in table for spec in render(rule)])
        for chain, render in _RENDER.items())


def forward_verdict(config, address, port=None):
    """The table's verdict for a new connection from the container to address (and port) that
    leaves through the host (not to one of the host's addresses), evaluated in Python in the
    table's order: for messages and checks, not a substitute for packets."""
    address = ipaddress.ip_address(str(address))
    for kind, arg, verdict in policy(config, address.version):
        if (kind in ("allow", "allow-net") and address in arg[0]
                and (arg[1] is None or arg[1][1] == port)):
            return verdict
        if kind in ("subnet", "range") and address in arg:
            return verdict
        if kind == "rest":
            return verdict
    raise AssertionError("the table ends with a rest rule")


def jumps(config):
    """(table, parent chain, spec) of each jump into an own chain."""
    if config.parent not in PARENTS:
        raise ValueError("unknown parent chain %r" % (config.parent,))
    return [("mangle", "PREROUTING", "-i %s -j %s" % (config.bridge, PRE_CHAIN)),
            ("filter", config.parent, "-i %s -j %s" % (config.bridge, FWD_CHAIN)),
            ("filter", "INPUT", "-i %s -j %s" % (config.bridge, IN_CHAIN)),
            ("mangle", "INPUT", "! -i %s -j %s" % (config.bridge, ROUTES_CHAIN))]


def expected_lines(config, family):
    """Each own chain as `-N CHAIN` and its `-A` lines, then each jump line."""
    lines = []
    for chain, specs in chain_rules(config, family).items():
        lines.append("-N %s" % chain)
        lines += ["-A %s %s" % (chain, spec) for spec in specs]
    lines += ["-A %s %s" % (parent, spec) for _t, parent, spec in jumps(config)]
    return lines


def jumps_into_own(chains):
    """[(chain, rule)] of rules outside the own chains that jump to one of them."""
    found = []
    for chain, specs in chains.items():
        if chain.startswith(PREFIX):
            continue
        for spec in specs:
            words = spec.split()
            if any(w in ("-j", "-g") and nxt in OWN_CHAINS for w, nxt in zip(words, words[1:])):
                found.append((chain, spec))
    return found


def jump_edits(config, table, chains):
    """Restore lines that leave each wanted jump of `table` exactly once, at position 1, and
    delete every other jump into an own chain (a renamed bridge, the other parent after
    Docker's backend changed, a stray copy). chains: {chain: [rule, ...]} of that table now.
    Nothing when all is in place, so re-running changes nothing."""
    wanted = [(parent, spec) for t, parent, spec in jumps(config) if t == table]
    edits = ["-D %s %s" % (chain, spec) for chain, spec in jumps_into_own(chains)
             if (chain, spec) not in wanted]
    for parent, spec in wanted:
        current = chains.get(parent, [])
        copies = current.count(spec)
        if copies == 1 and current[0] == spec:
            continue
        edits += ["-D %s %s" % (parent, spec)] * copies + ["-I %s 1 %s" % (parent, spec)]
    return edits


def render_restore(config, family, saved):
    """`iptables-restore -n` input: per table, declares (so creates or flushes) only the own
    chains, fills them, then fixes the jumps. DOCKER-USER is created (-N, which fails rather
    than flush should Docker make it meanwhile) when the filter parent needs it and it is
    missing: dockerd keeps an existing one and jumps to it itself when it starts."""
    chains = chain_rules(config, family)
    out = []
    for table in TABLES:
        now = saved.get(table, {})
        out.append("*" + table)
        if table == "filter" and config.parent == "DOCKER-USER" and "DOCKER-USER" not in now:
            out.append("-N DOCKER-USER")
        own = [c for c in OWN_CHAINS if TABLE_OF[c] == table]
        out += [":%s - [0:0]" % c for c in own]
        for chain in own:
            out += ["-A %s %s" % (chain, spec) for spec in chains[chain]]
        out += jump_edits(config, table, now)
        out.append("COMMIT")
    return "\n".join(out) + "\n"


def render_removal(saved):
    """`iptables-restore -n` input removing every jump into an own chain, then the own chains
    that exist; None when there is nothing to remove. Nothing else is named."""
    out = []
    for table in TABLES:
        now = saved.get(table, {})
        present = [c for c in OWN_CHAINS if TABLE_OF[c] == table and c in now]
        edits = ["-D %s %s" % j for j in jumps_into_own(now)]
        if present or edits:
            out += ["*" + table] + edits + ["-F %s" % c for c in present]
            out += ["-X %s" % c for c in present] + ["COMMIT"]
    return "\n".join(out) + "\n" if out else None


# built-in chains of the tables claw-cage writes (a rollback recreates an absent table empty)
BUILTIN = {"mangle": ("PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"),
           "filter": ("INPUT", "FORWARD", "OUTPUT")}


def render_rollback(saved_text, tables=TABLES):
    """`iptables-restore` input (no -n: each named table is replaced whole) that puts `tables`
    back exactly as `saved_text` (one iptables-save) had them. A table the save did not hold
    did not exist: it comes back empty, its built-in chains accepting."""
    sections, current = {}, None
    for line in saved_text.splitlines():
        if line.startswith("*"):
            current = line[1:].strip()
            sections[current] = [line]
        elif current is not None and line and not line.startswith("#"):
            sections[current].append(line)
            if line == "COMMIT":
                current = None
    out = []
    for table in tables:
        if table in sections:
            out += sections[table]
        else:
            out += ["*" + table] + [":%s ACCEPT [0:0]" % c for c in BUILTIN[table]] + ["COMMIT"]
    return "\n".join(out) + "\n"
