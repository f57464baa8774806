"""Reading live iptables state back, and judging where claw-cage's jumps sit. Pure functions
over `iptables-save` text: the commands that produce it run elsewhere.

Rules are compared as iptables would load them, not as strings: iptables-save prints options
in its own order, adds /32 to single addresses, `-m tcp` before --dport, and reorders conntrack
states. `canonical()` folds those differences away so that a rule rendered by rules.py and the
same rule read back from the kernel compare equal (tests/verify/test_verify_unit.py proves it against
real iptables for the whole rule set).
"""

import ipaddress
import shlex


# What makes shlex.split differ from str.split: quotes, backslashes, and the whitespace that
# str.split also splits on but shlex does not (and any non-ASCII, some of which is whitespace).
_SHELL_SPECIAL = frozenset("'\"\\\x0b\x0c\x1c\x1d\x1e\x1f")


def split(rule):
    """shlex.split(rule), the way iptables-save quotes; without a quote, a backslash or unusual
    whitespace (nearly every rule) it is str.split, several times faster: a re-apply compares
    a few hundred rules."""
    if rule.isascii() and _SHELL_SPECIAL.isdisjoint(rule):
        return rule.split()
    return shlex.split(rule)


def _groups(words):
    """Split a rule's words into option groups: ['-d', '10.0.0.0/8'], ['!', '-i', 'x'], ..."""
    groups, cur = [], []
    for w in words:
        if (w.startswith("-") or w == "!") and cur and cur != ["!"]:
            groups.append(cur)
            cur = []
        cur.append(w)
    if cur:
        groups.append(cur)
    return groups


def _address(value):
    try:
        return str(ipaddress.ip_network(value, strict=False))
    except ValueError:
        return value


def canonical(rule):
    """A comparable form of one rule (the text after `-A CHAIN`)."""
    words = split(rule)
    groups = _groups(words)
    out = []
    proto = None
    modules = set()
    for g in groups:
        neg = g[0] == "!"
        body = g[1:] if neg else g
        opt, vals = body[0], body[1:]
        if opt in ("-s", "--source", "-d", "--destination"):
            opt = "-s" if opt in ("-s", "--source") else "-d"
            vals = [_address(v) for v in vals]
        elif opt in ("-p", "--protocol"):
            opt, proto = "-p", (vals[0] if vals else None)
        elif opt in ("-i", "--in-interface"):
            opt = "-i"
        elif opt in ("-o", "--out-interface"):
            opt = "-o"
        elif opt in ("-j", "--jump"):
            opt = "-j"
        elif opt in ("-m", "--match"):
            opt = "-m"
            modules.update(vals)
        elif opt in ("--ctstate", "--state"):
            vals = [",".join(sorted(",".join(vals).split(",")))]
        elif opt in ("--dport", "--sport", "--destination-port", "--source-port"):
            opt = "--dport" if opt in ("--dport", "--destination-port") else "--sport"
        out.append(("!" if neg else "", opt) + tuple(vals))
    if proto in ("tcp", "udp") and proto not in modules and any(
            g[1] in ("--dport", "--sport") for g in out):
        out.append(("", "-m", proto))  # iptables adds the implicit match module
    return tuple(sorted(out))


def diff_chain(expected, actual):
    """(missing, unexpected, same_order) between two rule lists, compared canonically."""
    exp = [canonical(r) for r in expected]
    act = [canonical(r) for r in actual]
    missing = [r for r, c in zip(expected, exp) if c not in act]
    unexpected = [r for r, c in zip(actual, act) if c not in exp]
    return missing, unexpected, exp == act


def jump_position(rules, target):
    """1-based positions of the rules in a chain that jump (-j/-g) to `target`."""
    found = []
    for i, rule in enumerate(rules, 1):
        words = split(rule)
        for j, w in enumerate(words[:-1]):
            if w in ("-j", "--jump", "-g", "--goto") and words[j + 1] == target:
                found.append(i)
    return found


# ---- could this rule let the bridge's traffic through before claw-cage sees it? ----------

HARMLESS_TARGETS = ("DROP", "REJECT", "LOG", "NFLOG", "RETURN", "MARK", "CONNMARK", "TRACE",
                    "CT", "AUDIT", "NFQUEUE")


def _iface_matches(pattern, name):
    if pattern.endswith("+"):
        return name.startswith(pattern[:-1])
    return pattern == name


def may_accept_bridge(rule, bridge, subnet, chains=None, _depth=0):
    """True when `rule` could ACCEPT (or hand to another chain that may ACCEPT) a new packet
    coming in from `bridge` with a source in `subnet` (None: any source). chains: the table
    ({chain: rules}), to look into a chain the rule jumps to; without it, or too deep, any jump
    counts. Conservative: when unsure, True."""
    words = split(rule)
    target = None
    for j, w in enumerate(words[:-1]):
        if w in ("-j", "--jump", "-g", "--goto"):
            target = words[j + 1]
    if target is None or target in HARMLESS_TARGETS:
        return False
    if not _matches_bridge(words, bridge, subnet):
        return False
    if target == "ACCEPT" or chains is None or target not in chains or _depth >= 8:
        return True
    return any(may_accept_bridge(r, bridge, subnet, chains, _depth + 1) for r in chains[target])


def _matches_bridge(words, bridge, subnet):
    """False when a match of the rule certainly excludes new traffic from the bridge."""
    for g in _groups(words):
        neg = g[0] == "!"
        body = g[1:] if neg else g
        opt, vals = body[0], body[1:]
        if not vals:
            continue
        if opt in ("-i", "--in-interface"):
            if _iface_matches(vals[0], bridge) == neg:
                return False
        elif opt in ("-s", "--source") and subnet is not None:
            try:
                net = ipaddress.ip_network(vals[0], strict=False)
            except ValueError:
                continue
            if net.version != subnet.version:
                if not neg:
                    return False  # another family never matches
            elif not neg and not net.overlaps(subnet):
                return False
            elif neg and subnet.subnet_of(net):
                return False
        elif opt in ("--ctstate", "--state") and not neg:
            states = set(",".join(vals).split(","))
            if not states & {"NEW", "INVALID", "UNTRACKED", "DNAT", "SNAT"}:
                return False  # replies only: a connection the cage already allowed
    return True


def parse_tables(text):
    """{table: {chain: [rule, ...]}} for every table of one iptables-save output."""
    tables, current = {}, None
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("*"):
            current = tables.setdefault(line[1:], {})
        elif current is None or not line or line.startswith("#"):
            continue
        elif line.startswith(":"):
            current.setdefault(line[1:].split()[0], [])
        elif line.startswith("-A "):
            _, chain, rest = (line.split(None, 2) + [""])[:3]
            current.setdefault(chain, []).append(rest)
    return tables


def compare(config, family, tables):
    """Why the tables of one family (parse_tables) do not hold exactly what rules.py renders
    for `config`, or None: each own chain equal (canonically) to the table, and each jump
    first in its parent, once, with no other jump into an own chain anywhere."""
    from . import rules
    for chain, want in rules.chain_rules(config, family).items():
        have = tables.get(rules.TABLE_OF[chain], {}).get(chain)
        if have is None:
            return "%s is missing" % chain
        missing, extra, same_order = diff_chain(want, have)
        if missing or extra or not same_order:
            return "%s differs: %s" % (chain, ("lacks `%s`" % missing[0]) if missing else
                                       ("has `%s`" % extra[0]) if extra else "order")
    for table, parent, spec in rules.jumps(config):
        chains = tables.get(table, {})
        have = [canonical(r) for r in chains.get(parent, [])]
        if have[:1] != [canonical(spec)] or have.count(canonical(spec)) != 1:
            return "`-A %s %s` is not first and alone" % (parent, spec)
        stray = [j for j in rules.jumps_into_own(chains) if j != (parent, spec)
                 and (j[0], j[1]) not in [(p, s) for t, p, s in rules.jumps(config)]]
        if stray:
            return "a stray jump `-A %s %s`" % stray[0]
    return None
