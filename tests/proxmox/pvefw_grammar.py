"""A parser for Proxmox VE firewall files (/etc/pve/firewall/*.fw), written from pve-docs
pve-firewall.adoc and its generated option tables (proxmox/pve-docs at e5010dcea566,
generated/pve-firewall-vm-opts.adoc, pve-firewall-rules-opts.adoc). Its test data,
pve_docs_examples.txt, has one line for each example form of that document; a line the
document does not allow raises GrammarError naming the line.

What it checks, and where the document says so:
- "Lines beginning with a `#` and blank lines are considered comments. Sections start with a
  header line containing the section name enclosed in `[` and `]`": [OPTIONS], [RULES],
  [ALIASES], [IPSET <name>], [group <name>] (cluster.fw); a header may end in `# comment`
  (the document's ipfilter-net0 example).
- options: `key: value`; for a VM the keys and value types of pve-firewall-vm-opts.adoc
  (plus ips/ips_queues of "Suricata IPS integration").
- rules: `DIRECTION ACTION [OPTIONS]`, `|` disables, `MACRO(ACTION)`, `GROUP name`, a trailing
  `# comment`; DIRECTION IN | OUT | FORWARD (forward only for VNets); ACTION ACCEPT | DROP |
  REJECT; options -dest -dport -icmp-type -i/-iface -log -p/-proto -source -sport.
- addresses (-source/-dest): "a single IP address, an IP set ('+ipsetname') or an IP alias
  definition ... an address range like '20.34.101.207-201.3.9.99', or a list of IP addresses
  and networks (entries are separated by comma). Please do not mix IPv4 and IPv6 addresses
  inside such lists." Nothing else: no `!`. An IP set or alias must be defined.
- ports: "service names or simple numbers (0-65535) ... ranges '\\d+:\\d+' ... comma
  separated list".
- IP set entries: an address or network, optionally `!` (nomatch: pve-firewall's own parser,
  src/PVE/Firewall.pm), or an alias; "a zero prefix is not allowed in ipset entries" (same).
"""

import ipaddress
import re

NAME = r"[A-Za-z][A-Za-z0-9\-_]+"   # IP set / alias names (the document's examples; Firewall.pm)
BOOL = ("0", "1")
LOGLEVELS = ("emerg", "alert", "crit", "err", "warning", "notice", "info", "debug", "nolog")
POLICIES = ("ACCEPT", "DROP", "REJECT")
VM_OPTIONS = {
    "dhcp": BOOL, "enable": BOOL, "ipfilter": BOOL, "macfilter": BOOL, "ndp": BOOL,
    "radv": BOOL, "log_level_in": LOGLEVELS, "log_level_out": LOGLEVELS,
    "policy_in": POLICIES, "policy_out": POLICIES, "ips": BOOL, "ips_queues": None,
}
CLUSTER_OPTIONS = {"enable": None, "ebtables": BOOL, "policy_in": POLICIES,
                   "policy_out": POLICIES, "policy_forward": ("ACCEPT", "DROP"),
                   "log_ratelimit": None}
RULE_OPTIONS = {"-dest": "addr", "-source": "addr", "-dport": "port", "-sport": "port",
                "-i": "iface", "-iface": "iface", "-log": "log", "-p": "proto",
                "-proto": "proto", "-icmp-type": "word"}
DIRECTIONS = {"vm": ("IN", "OUT"), "cluster": ("IN", "OUT"), "vnet": ("FORWARD",)}


class GrammarError(ValueError):
    pass


class FwFile:
    def __init__(self):
        self.options = {}
        self.ipsets = {}        # lower-case name -> [(nomatch, entry)]
        self.aliases = {}
        self.groups = {}
        self.rules = []         # dicts: enabled, direction, action, macro, opts, comment


def _split_comment(line):
    body, _, comment = line.partition("#")
    return body.strip(), comment.strip()


def _network(text):
    """An address or network. Host bits are allowed: the document's own `management` IP set
    example holds an address/24."""
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError as err:
        raise GrammarError("not an address or network: %r (%s)" % (text, err))


def check_address(text, fw):
    if "!" in text:
        raise GrammarError("no `!` in a rule address: %r" % text)
    if text.startswith("+"):
        name = text[1:]
        for scope in ("guest/", "dc/", "sdn/"):
            if name.startswith(scope):
                name = name[len(scope):]
        if not re.match("^%s$" % NAME, name):
            raise GrammarError("bad IP set name %r" % text)
        if name.lower() not in fw.ipsets:
            raise GrammarError("no such IP set %r" % text)
        return None
    if re.match("^%s$" % NAME, text):
        if text.lower() not in fw.aliases:
            raise GrammarError("no such alias %r" % text)
        return None
    items = text.split(",")
    if "" in items:
        raise GrammarError("empty entry in list %r" % text)
    families = set()
    for item in items:
        if "-" in item:
            if len(items) > 1:
                raise GrammarError("a range cannot be in a list: %r" % text)
            lo, hi = (ipaddress.ip_address(x) for x in item.split("-", 1))
            families.add(lo.version)
            families.add(hi.version)
        else:
            families.add(_network(item).version)
    if len(families) > 1:
        raise GrammarError("IPv4 and IPv6 mixed in %r" % text)
    return families.pop()


def check_ports(text):
    for item in text.split(","):
        parts = item.split(":")
        if len(parts) > 2 or not all(parts):
            raise GrammarError("bad port %r" % text)
        for p in parts:
            if p.isdigit():
                if int(p) > 65535:
                    raise GrammarError("port out of range %r" % text)
            elif not re.match(r"^[a-z][a-z0-9\-]*$", p):
                raise GrammarError("bad port %r" % text)


def parse_rule(body, fw, env):
    rule = {"enabled": not body.startswith("|")}
    words = body.lstrip("|").split()
    if len(words) < 2:
        raise GrammarError("a rule needs a direction and an action")
    direction, action = words[0].upper(), words[1]
    if direction == "GROUP":
        if not re.match("^%s$" % NAME, action) or len(words) not in (2, 4):
            raise GrammarError("bad GROUP rule")
        rule.update(direction="GROUP", action=action, opts={})
        return rule
    if direction not in DIRECTIONS[env]:
        raise GrammarError("direction %s not allowed here" % words[0])
    m = re.match(r"^(?:(%s)\()?(ACCEPT|DROP|REJECT)\)?$" % NAME, action)
    if not m or bool(m.group(1)) != action.endswith(")"):
        raise GrammarError("bad action %r" % action)
    rule.update(direction=direction, macro=m.group(1), action=m.group(2), opts={})
    rest = words[2:]
    if len(rest) % 2:
        raise GrammarError("option without a value: %r" % rest[-1])
    families = set()
    for key, value in zip(rest[::2], rest[1::2]):
        key = "-" + key.lstrip("-")
        kind = RULE_OPTIONS.get(key)
        if kind is None:
            raise GrammarError("unknown rule option %r" % key)
        if key in rule["opts"]:
            raise GrammarError("option %s given twice" % key)
        if kind == "addr":
            fam = check_address(value, fw)
            if fam:
                families.add(fam)
        elif kind == "port":
            check_ports(value)
        elif kind == "log" and value not in LOGLEVELS:
            raise GrammarError("bad log level %r" % value)
        elif kind == "iface" and env == "vm" and not re.match(r"^net\d+$", value):
            raise GrammarError("a VM rule's interface is net<N>, not %r" % value)
        elif kind == "proto" and not re.match(r"^[a-z0-9\-]+$", value):
            raise GrammarError("bad protocol %r" % value)
        rule["opts"][key] = value
    if len(families) > 1:
        raise GrammarError("source and dest of different families")
    if ("-dport" in rule["opts"] or "-sport" in rule["opts"]) and \
            rule["opts"].get("-p", rule["opts"].get("-proto")) not in ("tcp", "udp", None):
        raise GrammarError("ports need tcp or udp")
    return rule


def parse(text, env="vm"):
    """Parse a whole file; env: vm, cluster or vnet (which options and directions apply)."""
    fw, section, current = FwFile(), None, None
    options = VM_OPTIONS if env == "vm" else CLUSTER_OPTIONS
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        try:
            if not line or line.startswith("#"):
                continue
            if line.startswith("["):
                m = re.match(r"^\[(OPTIONS|RULES|ALIASES|IPSET\s+(\S+)|group\s+(\S+))\]"
                             r"\s*(#.*)?$", line, re.IGNORECASE)
                if not m:
                    raise GrammarError("unknown section header")
                section = m.group(1).split()[0].upper()
                name = m.group(2) or m.group(3)
                if name is not None and not re.match("^%s$" % NAME, name):
                    raise GrammarError("bad name %r" % name)
                if section == "IPSET":
                    if name.lower() in fw.ipsets:
                        raise GrammarError("IP set %s defined twice" % name)
                    current = fw.ipsets[name.lower()] = []
                elif section == "GROUP":
                    if env != "cluster":
                        raise GrammarError("security groups live in cluster.fw")
                    current = fw.groups[name.lower()] = []
                continue
            if section is None:
                raise GrammarError("line outside any section")
            body, comment = _split_comment(line)
            if section == "OPTIONS":
                m = re.match(r"^([a-z_]+):\s*(\S+)$", body)
                if not m or m.group(1) not in options:
                    raise GrammarError("unknown option")
                allowed = options[m.group(1)]
                if allowed is not None and m.group(2) not in allowed:
                    raise GrammarError("bad value for %s" % m.group(1))
                fw.options[m.group(1)] = m.group(2)
            elif section == "IPSET":
                nomatch = body.startswith("!")
                entry = body[1:].strip() if nomatch else body
                if re.match("^%s$" % NAME, entry):
                    if entry.lower() not in fw.aliases:
                        raise GrammarError("no such alias %r" % entry)
                else:
                    net = _network(entry)
                    if net.prefixlen == 0:
                        raise GrammarError("a zero prefix is not allowed in IP sets")
                    entry = net
                if (nomatch, entry) in current or (not nomatch, entry) in current:
                    raise GrammarError("duplicate IP set entry")
                current.append((nomatch, entry))
            elif section == "ALIASES":
                words = body.split()
                if len(words) != 2 or not re.match("^%s$" % NAME, words[0]):
                    raise GrammarError("an alias is NAME ADDRESS")
                _network(words[1])
                fw.aliases[words[0].lower()] = words[1]
            else:
                rule = parse_rule(body, fw, env)
                rule["comment"] = comment
                (current if section == "GROUP" else fw.rules).append(rule)
        except GrammarError as err:
            raise GrammarError("line %d: %s: %s" % (number, err, raw))
    return fw
