"""The claw-cage firewall as DATA, and the pure functions that render it.

Nothing here runs a command or reads the system: apply.py (applies), build.py (writes
deploy/iptables-rules.sh), persist.py (the boot script) and --verify (compares) all render from
the same tables below, so they cannot drift apart.

Public API
  Config(bridge, subnet, allows=(), profile="internet")   what to render; default_config()
  FAMILIES = (4, 6)             one `family` parameter everywhere, never copied branches
  FWD_CHAIN, IN_CHAIN           claw-cage's own chains (every own name starts with PREFIX)
  jumps(config)  -> [(parent_chain, rule_spec)]   the jumps into them, each first, exactly once
  chain_rules(config, family) -> {chain: [rule_spec, ...]}
  expected_lines(config, family) -> [str]   what `iptables -S <chain>` prints for each own chain
                               ("-N CHAIN", "-A CHAIN ...") followed by each jump line
                               ("-A DOCKER-USER -i claw-cage0 -j CLAW-CAGE-FWD"): for --verify
  forward_verdict(config, address, port=None) -> "RETURN" | "DROP"   what FWD_CHAIN decides
                               for a new connection from the container to address[:port]
  jump_edits(parent, spec, current) -> [str]    restore lines that leave one copy, first
  render_restore(config, family, edits=()) -> `iptables-restore -n` input (own chains only)
  render_removal(family, present_chains, edits) -> `iptables-restore -n` input that undoes it
  render_script(config=None, tools=None) -> text of deploy/iptables-rules.sh (and of the boot
                               script persist.py installs, with the config and tools pinned)

The rule specs are written exactly as `iptables -S` prints them back (e.g. `-p tcp -m tcp`), so
--verify and the self-check after applying can compare lines as plain strings.
"""

import collections
import ipaddress

PREFIX = "CLAW-CAGE-"
FWD_CHAIN = PREFIX + "FWD"   # traffic the container sends through the host (from DOCKER-USER)
IN_CHAIN = PREFIX + "IN"     # traffic the container sends to the host itself (from INPUT)
OWN_CHAINS = (FWD_CHAIN, IN_CHAIN)
FAMILIES = (4, 6)
PROFILES = ("internet", "local-only")

DEFAULT_BRIDGE = "claw-cage0"
DEFAULT_SUBNET = "172.30.0.0/24"

# Destinations a container has no business reaching: the IANA special-purpose registry
# (RFC 6890). Dropped when forwarded, whatever the profile; only --allow punches through.
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

# What happens to forwarded traffic that is neither special nor allowed. The claw-cage network
# is IPv4-only (Docker sets disable_ipv6 in its containers), so IPv6 never leaves.
REST_VERDICT = {
    (4, "internet"): "RETURN",
    (4, "local-only"): "DROP",
    (6, "internet"): "DROP",
    (6, "local-only"): "DROP",
}

# ICMPv6 neighbour discovery between host and container: without it the host cannot even
# answer an IPv6 connection it opened itself. IPv4's equivalent (ARP) is not IP at all.
NEIGHBOUR_DISCOVERY = {4: (), 6: (135, 136)}

ESTABLISHED = "-m conntrack --ctstate RELATED,ESTABLISHED -j RETURN"
PROTOCOLS = ("tcp", "udp")   # an allowed PORT opens both: DNS, for one, needs UDP

Config = collections.namedtuple("Config", "bridge subnet allows profile")
Config.__new__.__defaults__ = ((), "internet")


def default_config(bridge=DEFAULT_BRIDGE, subnet=DEFAULT_SUBNET):
    return Config(bridge, ipaddress.ip_network(str(subnet)), (), "internet")


def _net(text_or_net):
    """A network as `-d` prints it: always with a prefix length."""
    net = ipaddress.ip_network(str(text_or_net))
    return "%s/%d" % (net.network_address, net.prefixlen)


def _ct_net(text_or_net):
    """A network as `--ctorigdst` prints it: a single address without its /32 or /128."""
    net = ipaddress.ip_network(str(text_or_net))
    return str(net.network_address) if net.num_addresses == 1 else _net(net)


def _allow_rules(allow, family, chain):
    """Specs that let one --allow entry through in one chain (RETURN, never ACCEPT)."""
    if allow.kind == "host":
        if chain != IN_CHAIN:
            return []
        return ["-p %s -m %s --dport %d -j RETURN" % (p, p, allow.port) for p in PROTOCOLS]
    if allow.net.version != family:
        return []
    if chain == FWD_CHAIN:
        # matched on the destination the container asked for, before any DNAT
        net = _ct_net(allow.net)
        if allow.port is None:
            return ["-m conntrack --ctorigdst %s -j RETURN" % net]
        return ["-p %s -m conntrack --ctorigdst %s --ctorigdstport %d -j RETURN"
                % (p, net, allow.port) for p in PROTOCOLS]
    # INPUT: ADDRESS:PORT, in case the address is one of the host's own. The host opens port
    # by port only (issue 17): a network, or an address without a port, opens no port of it.
    if allow.port is None or allow.net.num_addresses != 1:
        return []
    return ["-d %s -p %s -m %s --dport %d -j RETURN" % (_net(allow.net), p, p, allow.port)
            for p in PROTOCOLS]


def chain_rules(config, family):
    """{own chain: [rule spec, ...]} in evaluation order, for one address family."""
    if config.profile not in PROFILES:
        raise ValueError("unknown profile %r" % (config.profile,))
    fwd = [ESTABLISHED]
    if config.subnet.version == family:
        # the claw-cage network itself (container to container), only when not DNAT'd
        fwd.append("-d %s -m conntrack --ctorigdst %s -j RETURN"
                   % (_net(config.subnet), _ct_net(config.subnet)))
    for allow in config.allows:
        fwd += _allow_rules(allow, family, FWD_CHAIN)
    for cidr, _why in SPECIAL_RANGES[family]:
        fwd.append("-d %s -j DROP" % _net(cidr))                        # going now
        fwd.append("-m conntrack --ctorigdst %s -j DROP" % _ct_net(cidr))  # aimed at
    fwd.append("-j %s" % REST_VERDICT[(family, config.profile)])

    inp = [ESTABLISHED]
    inp += ["-p ipv6-icmp -m icmp6 --icmpv6-type %d -j RETURN" % t
            for t in NEIGHBOUR_DISCOVERY[family]]
    for allow in config.allows:
        inp += _allow_rules(allow, family, IN_CHAIN)
    inp.append("-j DROP")
    return collections.OrderedDict(((FWD_CHAIN, fwd), (IN_CHAIN, inp)))


def forward_verdict(config, address, port=None):
    """The table's verdict for a new forwarded connection to address (and port), evaluated
    in Python in the chain's order: for messages and checks, not a substitute for packets."""
    address = ipaddress.ip_address(str(address))
    family = address.version
    if config.subnet.version == family and address in config.subnet:
        return "RETURN"
    for allow in config.allows:
        if (allow.kind == "net" and allow.net.version == family and address in allow.net
                and allow.port in (None, port)):
            return "RETURN"
    for cidr, _why in SPECIAL_RANGES[family]:
        if address in ipaddress.ip_network(cidr):
            return "DROP"
    return REST_VERDICT[(family, config.profile)]


def jumps(config):
    """(parent chain, rule spec) of each jump into an own chain. DOCKER-USER is where Docker
    lets users filter forwarded traffic; INPUT sees what the container sends to the host."""
    return [("DOCKER-USER", "-i %s -j %s" % (config.bridge, FWD_CHAIN)),
            ("INPUT", "-i %s -j %s" % (config.bridge, IN_CHAIN))]


def expected_lines(config, family):
    """`iptables -S CHAIN` output of each own chain, then each jump as `-S parent` shows it."""
    lines = []
    for chain, specs in chain_rules(config, family).items():
        lines.append("-N %s" % chain)
        lines += ["-A %s %s" % (chain, spec) for spec in specs]
    lines += ["-A %s %s" % (parent, spec) for parent, spec in jumps(config)]
    return lines


def jump_edits(parent, spec, current):
    """Restore lines that leave exactly one copy of `-A parent spec`, at position 1.

    current: the `-A parent ...` lines of `iptables -S parent` as they are now. Jumps into the
    same own chain with another match (a bridge renamed since the last run) are deleted.
    Nothing to do when the jump is already first and alone, so re-running changes nothing."""
    line = "-A %s %s" % (parent, spec)
    target = " -j " + spec.split(" -j ")[-1]
    rules = [l for l in current if l.startswith("-A ")]
    copies = rules.count(line)
    stale = [l for l in rules if l.endswith(target) and l != line]
    if copies == 1 and rules[0] == line and not stale:
        return []
    return (["-D" + l[2:] for l in stale] + ["-D %s %s" % (parent, spec)] * copies
            + ["-I %s 1 %s" % (parent, spec)])


def render_restore(config, family, edits=()):
    """`iptables-restore -n` input: declares (so creates or flushes) only the own chains, fills
    them, then fixes the jumps. One transaction: all of it applies, or none."""
    chains = chain_rules(config, family)
    out = ["*filter"]
    out += [":%s - [0:0]" % chain for chain in chains]
    for chain, specs in chains.items():
        out += ["-A %s %s" % (chain, spec) for spec in specs]
    out += list(edits)
    out.append("COMMIT")
    return "\n".join(out) + "\n"


def render_removal(present_chains, edits):
    """`iptables-restore -n` input removing the jumps (edits: their -D lines) and then the own
    chains that exist (present_chains). Nothing else is named, so nothing else changes."""
    out = ["*filter"] + list(edits)
    out += ["-F %s" % chain for chain in present_chains]
    out += ["-X %s" % chain for chain in present_chains]
    out.append("COMMIT")
    return "\n".join(out) + "\n"


# -- the shell script ------------------------------------------------------------------------
# Written for bash so that `sudo bash iptables-rules.sh` works without Python. Its logic is the
# same as apply.py's: create DOCKER-USER if Docker has not yet, then one `iptables-restore -n`
# per family with the own chains and the jump fixes (jump_edits, in shell).

# The "#   bridge ..., allow: ..." header line is read back by verify/firewall_rows.persisted_config()
# (--verify), which trusts it only if re-rendering gives the same script: keep its shape.
SCRIPT_TEMPLATE = r"""#!/bin/bash
# claw-cage firewall: the claw-cage container reaches @REACHES@, and nothing on
# the LAN or the host itself. Generated by claw-cage from its rule table
# (bootstrap/claw_cage/rules.py); do not edit: regenerate instead.
#
#   bridge @BRIDGE@, subnet @SUBNET@, profile @PROFILE@, allow: @ALLOWS@
#
# Same rules as `sudo python3 claw-cage.pyz --firewall@ARGS@`, applied without Python.
# Re-running changes nothing. It does not persist the rules across reboots: use --firewall.
set -euo pipefail

if [ "$(id -u)" -ne 0 ]; then
    echo "$0: must run as root: sudo bash $0" >&2
    exit 1
fi

BRIDGE=@BRIDGE@
# The iptables flavour Docker's chains live in (iptables = the one first on PATH, as dockerd).
IPTABLES=@IPTABLES@
IP6TABLES=@IP6TABLES@

RULES_V4='@RULES_V4@'

RULES_V6='@RULES_V6@'

# Print the restore lines that leave exactly one copy of jump "$3" in chain "$2", first,
# and delete jumps into the same own chain with another match (a renamed bridge).
jump_edits() {
    local ipt=$1 chain=$2 spec=$3 rules first copies stale i
    rules=$("$ipt" -w -S "$chain" | grep -e '^-A ' || true)
    first=$(printf '%s\n' "$rules" | head -n 1)
    copies=$(printf '%s\n' "$rules" | grep -c -x -F -e "-A $chain $spec" || true)
    stale=$(printf '%s\n' "$rules" | grep -e " -j ${spec##* -j }\$" |
            grep -v -x -F -e "-A $chain $spec" || true)
    if [ "$copies" -eq 1 ] && [ "$first" = "-A $chain $spec" ] && [ -z "$stale" ]; then
        return 0
    fi
    if [ -n "$stale" ]; then
        printf '%s\n' "$stale" | sed -e 's/^-A /-D /'
    fi
    for ((i = 0; i < copies; i++)); do
        echo "-D $chain $spec"
    done
    echo "-I $chain 1 $spec"
}

# Apply one family in one transaction, declaring only claw-cage's own chains.
apply() {
    local ipt=$1 rules=$2 edits
    if ! "$ipt" -w -S DOCKER-USER >/dev/null 2>&1; then
        "$ipt" -w -N DOCKER-USER   # Docker has not started yet; it keeps this chain
    fi
    edits=$(jump_edits "$ipt" DOCKER-USER "-i $BRIDGE -j @FWD@"
            jump_edits "$ipt" INPUT "-i $BRIDGE -j @IN@")
    printf '%s\n%s\nCOMMIT\n' "$rules" "$edits" | sed '/^$/d' | "$ipt-restore" -w -n
}

apply "$IPTABLES" "$RULES_V4"
if [ ! -e /proc/net/if_inet6 ]; then
    echo "$0: IPv6 is off in this kernel: IPv4 rules only" >&2
elif command -v "$IP6TABLES" >/dev/null 2>&1; then
    apply "$IP6TABLES" "$RULES_V6"
elif [ "$(cat /proc/sys/net/ipv6/conf/all/forwarding)" = 1 ]; then
    echo "$0: this host forwards IPv6 but $IP6TABLES is missing: install it" >&2
    exit 1
else
    echo "$0: $IP6TABLES is missing and IPv6 forwarding is off: IPv4 rules only" >&2
fi
echo "claw-cage firewall applied: $BRIDGE reaches @REACHES@, not the LAN or this host"
"""


def _body(config, family):
    """Restore input without its COMMIT line: the script appends the jump edits first."""
    text = render_restore(config, family)
    assert text.endswith("COMMIT\n")
    return text[:-len("COMMIT\n")].rstrip("\n")


def render_script(config=None, tools=("iptables", "ip6tables")):
    """Text of deploy/iptables-rules.sh (config None: the defaults the build embeds)."""
    from . import allow  # only for describing the entries in the header
    if config is None:
        from .. import buildinfo
        config = default_config(buildinfo.BRIDGE, buildinfo.SUBNET)
    allows = [allow.describe(a) for a in config.allows]
    args = "".join(" --allow %s" % a for a in allows)
    if config.profile != "internet":
        args += " --profile %s" % config.profile
    reaches = ("the internet" if config.profile == "internet" else "only allowed addresses")
    values = {
        "@REACHES@": reaches, "@BRIDGE@": config.bridge, "@SUBNET@": str(config.subnet),
        "@PROFILE@": config.profile, "@ALLOWS@": ", ".join(allows) or "nothing else",
        "@ARGS@": args, "@IPTABLES@": tools[0], "@IP6TABLES@": tools[1],
        "@FWD@": FWD_CHAIN, "@IN@": IN_CHAIN,
        "@RULES_V4@": _body(config, 4), "@RULES_V6@": _body(config, 6),
    }
    text = SCRIPT_TEMPLATE
    for key, value in values.items():
        if "'" in value:  # cannot happen with validated input; never emit broken quoting
            raise ValueError("quote in script value %r" % value)
        text = text.replace(key, value)
    return text
