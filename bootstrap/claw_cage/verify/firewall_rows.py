"""Host firewall rows: is the cage that rules.py describes the one the kernel enforces?

Read with one `iptables-save` per family and backend (legacy / nf_tables, when both tools
exist; root only; nothing is changed), then judged:
  backend          claw-cage's chains live where Docker's do (else they are never jumped to)
  rules IPv4/6     each own chain EQUALS rules.chain_rules() for the installed configuration
  PREROUTING jump  the first anchor: mangle PREROUTING jumps to CLAW-CAGE-PRE first, once
  DOCKER-USER jump the second anchor (FORWARD jump under Docker's nftables backend) and
  INPUT jump       INPUT's: each first in its chain, exactly once; and FORWARD reaches
                   DOCKER-USER at all (else the second anchor judges nothing)
  FORWARD order    a WARNING about the second anchor only: something in FORWARD may accept the
                   bridge's traffic before it (Tailscale's ts-forward is the classic case), or
                   FORWARD no longer reaches DOCKER-USER; the first anchor judged it already
  neighbours       the other firewall users seen (Tailscale, ufw, ufw-docker, Docker's own
                   backend), and whether the cage holds despite them
  persistence      the boot-time restore is installed (persist.py's files)
"""

import ipaddress
import os

from ..firewall import allow, host, persist, readback, rules, script
from .report import Row, PASS, FAIL, WARN, SKIP

SECTION = "Host firewall"
NEEDS_ROOT = "needs root to read iptables: run it with sudo"


def _row(check, status, detail):
    return Row(SECTION, check, status, detail)


class FirewallConfig:
    """What --firewall was told, as far as --verify can learn it."""

    def __init__(self, allows=(), profile="internet", source="defaults"):
        self.allows, self.profile, self.source = tuple(allows), profile, source

    @property
    def allow_entries(self):
        return self.allows

    @property
    def local_only(self):
        return self.profile == "local-only"

    def rules_config(self, bridge, subnet, parent="DOCKER-USER"):
        return rules.Config(bridge, ipaddress.ip_network(str(subnet)), self.allows,
                            self.profile, parent)


def _read_script():
    with open(persist.SCRIPT, encoding="utf-8") as f:
        return f.read()


def read_config():
    """The configuration --firewall last persisted (allow list, profile), else the defaults.
    With --no-persist nothing records it: the detail of the rules rows says which was used."""
    try:
        found = script.read_header(_read_script())
    except FileNotFoundError:
        return FirewallConfig(source="defaults, no %s" % persist.SCRIPT)
    except (OSError, UnicodeDecodeError) as err:
        return FirewallConfig(source="defaults, %s unreadable: %s" % (persist.SCRIPT, err))
    if found is None:
        return FirewallConfig(source="defaults, %s not understood" % persist.SCRIPT)
    config = found[0]
    return FirewallConfig(config.allows, config.profile, source=persist.SCRIPT)


# ---- judging ---------------------------------------------------------------------------------

def backend_row(t4):
    if not t4.ours_in:
        return _row("firewall backend", FAIL, "claw-cage's chains are missing: run sudo "
                                              "python3 claw-cage.pyz --firewall")
    if not t4.docker_in:
        return _row("firewall backend", PASS, "chains in %s; Docker's chains are not there "
                    "(Docker not started, or its nftables backend)" % ", ".join(t4.ours_in))
    if set(t4.docker_in) & set(t4.ours_in):
        return _row("firewall backend", PASS, "%s, where Docker's chains are"
                    % t4.docker_in[0])
    return _row("firewall backend", FAIL, "claw-cage's chains are in %s but Docker's in %s: "
                                          "never jumped to" % (t4.ours_in[0], t4.docker_in[0]))


def rules_row(tables, config, config_source):
    family = tables.family
    name = "firewall rules IPv%d" % family
    if family == 6 and host.ipv6_state() == "off":
        return _row(name, PASS, "IPv6 is off in this kernel: nothing to cover")
    if tables.tables is None:
        return _row(name, FAIL if family == 6 and host.ipv6_state() == "forwarding" else SKIP,
                    "ip6tables cannot be read" if family == 6 else "iptables cannot be read")
    problems = []
    for chain, want in rules.chain_rules(config, family).items():
        have = tables.table(rules.TABLE_OF[chain]).get(chain)
        if have is None:
            problems.append("%s missing" % chain)
            continue
        missing, extra, same_order = readback.diff_chain(want, have)
        if missing:
            problems.append("%s lacks `%s`%s" % (chain, missing[0], _more(missing)))
        if extra:
            problems.append("%s has unexpected `%s`%s" % (chain, extra[0], _more(extra)))
        if not missing and not extra and not same_order:
            problems.append("%s has the right rules, but in another order or repeated" % chain)
    if problems:
        return _row(name, FAIL, "%s (configuration: %s)" % ("; ".join(problems), config_source))
    count = sum(len(v) for v in rules.chain_rules(config, family).values())
    return _row(name, PASS, "%s equal the expected %d rules (%s; configuration: %s)"
                % (", ".join(rules.OWN_CHAINS), count, tables.tool, config_source))


def _more(items):
    return " (+%d more)" % (len(items) - 1) if len(items) > 1 else ""


ROUTES_JUMP = "mangle INPUT jump"


def jump_row(table, parent, config, all_tables, name=None, anchor=None):
    spec = [s for t, p, s in rules.jumps(config) if (t, p) == (table, parent)][0]
    target = spec.split()[-1]
    bad, ok, unreached = [], [], []
    for t in all_tables:
        chains = t.table(table)
        label = "IPv%d" % t.family
        chain = chains.get(parent)
        if chain is None:
            bad.append("%s: no %s chain in %s" % (label, parent, table))
            continue
        where = readback.jump_position(chain, target)
        exact = [i for i, r in enumerate(chain, 1) if readback.canonical(r) ==
                 readback.canonical(spec)]
        if not where:
            bad.append("%s: no jump to %s" % (label, target))
        elif len(where) > 1:
            bad.append("%s: %d jumps to %s" % (label, len(where), target))
        elif exact != [1]:
            bad.append("%s: the jump is rule %d, not `%s` first" % (label, where[0], spec))
        elif table == "filter" and not host.parent_reached(t.chains, parent, t.family):
            unreached.append(label)   # in place, but no packet gets there
        else:
            ok.append(label)
    anchor = anchor or ("first anchor" if table == "mangle" else "second anchor")
    name = name or "%s jump" % parent
    if unreached:
        bad.append("%s: FORWARD does not jump to %s, so it judges no packet (Docker not "
                   "started, or its rules flushed): restart Docker (sudo systemctl restart "
                   "docker) to put that jump back" % (", ".join(unreached), parent))
    if bad:
        return _row(name, FAIL, "%s: %s" % (anchor, "; ".join(bad)))
    return _row(name, PASS, "%s: `%s` first (%s)" % (anchor, spec, ", ".join(ok)))


def forward_row(bridge, subnet, parent, all_tables, first_anchor_ok):
    """The second anchor must see the bridge's forwarded traffic: FORWARD reaches it before any
    rule that may accept that traffic. Only a warning: the first anchor judged it already."""
    notes, bad = [], []
    for t in all_tables:
        if "FORWARD" not in (t.chains or {}):
            continue
        label = "IPv%d" % t.family
        chain = t.chains["FORWARD"]
        target = "DOCKER-USER" if parent == "DOCKER-USER" else rules.FWD_CHAIN
        where = readback.jump_position(chain, target)
        if not where:
            if t.docker_in or parent == "FORWARD":
                bad.append("%s: FORWARD never jumps to %s" % (label, target))
            else:
                notes.append("%s: Docker has not set up FORWARD yet" % label)
            continue
        net = subnet if t.family == subnet.version else None
        for i, rule in enumerate(chain[:where[0] - 1], 1):
            if readback.may_accept_bridge(rule, bridge, net, t.chains):
                bad.append("%s: FORWARD rule %d `%s` comes before %s and may accept %s's "
                           "traffic" % (label, i, rule, target, bridge))
                break
    if bad:
        holds = ("the first anchor (mangle PREROUTING) still drops it before routing"
                 if first_anchor_ok else "and the first anchor is missing too")
        return _row("FORWARD order", WARN, "second anchor only: %s; %s"
                    % ("; ".join(bad), holds))
    if notes and len(notes) == len([t for t in all_tables if t.chains is not None]):
        return _row("FORWARD order", SKIP, "; ".join(notes))
    return _row("FORWARD order", PASS, "FORWARD reaches %s before anything that could accept "
                                       "%s's traffic" % (parent, bridge))


def _neighbours(all_tables):
    """Other firewall users whose rules are in these tables, by their chains' names."""
    seen = []
    names = set()
    for t in all_tables:
        for table in (t.tables or {}).values():
            names.update(table)
    ts = sorted(n for n in names if n.startswith("ts-"))
    if ts:
        seen.append("Tailscale (%s)" % ", ".join(ts))
    if any(n.startswith(("ufw-", "ufw6-")) for n in names):
        seen.append("ufw")
    docker_user = [r for t in all_tables for r in (t.chains or {}).get("DOCKER-USER", [])]
    if "ufw-docker-logging-deny" in names or any("ufw-user-forward" in r for r in docker_user):
        seen.append("ufw-docker (re-declares DOCKER-USER on every ufw reload)")
    return seen


def neighbours_row(all_tables, first_anchor_ok):
    seen = _neighbours(all_tables)
    if any(t.docker_in for t in all_tables):
        driver = "iptables"
    else:
        driver = host.docker_firewall_backend()
    docker = "Docker's %s firewall backend%s" % (
        driver, " (no DOCKER-USER: the second anchor hangs off FORWARD)"
        if driver == "nftables" else "")
    text = ("seen: %s; %s" % (", ".join(seen), docker) if seen else
            "no Tailscale, ufw or ufw-docker rules; %s" % docker)
    if first_anchor_ok:
        return _row("neighbours", PASS, "%s: the cage holds despite them (mangle PREROUTING "
                                        "judges the container's packets before any of them)"
                    % text)
    return _row("neighbours", WARN, "%s: with the first anchor missing, any of them can open "
                                    "the cage" % text)


def _root_only(path):
    """Why `path` is unsafe to run as root at boot (owned or writable by another user), or None."""
    st = os.lstat(path)
    if st.st_uid != 0:
        return "%s is not owned by root" % path
    if st.st_mode & 0o022:
        return "%s is writable by non-root users" % path
    return None


def persistence_row(bridge, subnet):
    """The boot restore (persist.py) is installed, enabled, root-only, unedited, and restores
    the rules for this installation's network."""
    name = "persistence"
    if not persist.systemd_installed():
        return _row(name, SKIP, "no systemd here: the rules cannot come back at boot "
                                "(apply them at each boot yourself)")
    if not os.path.lexists(persist.SCRIPT):
        return _row(name, FAIL, "not installed: the rules vanish at the next reboot (run "
                                "--firewall without --no-persist)")
    for path in (persist.ETC_DIR, persist.SCRIPT):
        unsafe = _root_only(path)
        if unsafe:
            return _row(name, FAIL, unsafe + ": it runs as root at boot")
    try:
        with open(persist.UNIT, encoding="utf-8") as f:
            unit_ok = f.read() == persist.UNIT_TEXT
    except OSError:
        return _row(name, FAIL, "%s is missing" % persist.UNIT)
    if not unit_ok:
        return _row(name, FAIL, "%s differs from what claw-cage installs" % persist.UNIT)
    if not (os.path.islink(persist.WANTS) and os.readlink(persist.WANTS) == persist.UNIT):
        return _row(name, FAIL, "%s is not enabled (no %s)" % (persist.UNIT_NAME, persist.WANTS))
    try:
        found = script.read_header(_read_script())
    except (OSError, UnicodeDecodeError) as err:
        return _row(name, FAIL, "cannot read %s: %s" % (persist.SCRIPT, err))
    if found is None:
        return _row(name, FAIL, "%s was edited, or written by another claw-cage version: run "
                                "--firewall again" % persist.SCRIPT)
    config = found[0]
    if (config.bridge, str(config.subnet)) != (bridge, str(subnet)):
        return _row(name, FAIL, "%s restores rules for %s %s, but the installation uses %s %s"
                    % (persist.SCRIPT, config.bridge, config.subnet, bridge, subnet))
    return _row(name, PASS, "%s enabled; %s restores this configuration at boot"
                % (persist.UNIT_NAME, persist.SCRIPT))


def read_host():
    """host.Tables of both families, read once for every row that looks at them (these and
    the gateway port's DNAT check)."""
    return host.Tables(4), host.Tables(6)


def rows(bridge, subnet, is_root, fw, tables=None):
    """Every host-firewall row. Without root iptables cannot be read at all: one `skip` row per
    check says so plainly, and the summary repeats it (verify.main). tables: read_host()'s."""
    names = ("firewall backend", "firewall rules IPv4", "firewall rules IPv6", "PREROUTING jump",
             "DOCKER-USER jump", "INPUT jump", ROUTES_JUMP, "FORWARD order", "neighbours")
    if not is_root:
        return ([_row(n, SKIP, NEEDS_ROOT) for n in names] + [persistence_row(bridge, subnet)]
                + allow_rows(subnet, fw))
    t4, t6 = tables or read_host()
    present = [t for t in (t4, t6) if t.tables is not None]
    parent = host.parent_in_use(present)
    config = fw.rules_config(bridge, subnet, parent)
    pre = jump_row("mangle", "PREROUTING", config, present)
    first_ok = pre.status == PASS
    return [backend_row(t4), rules_row(t4, config, fw.source), rules_row(t6, config, fw.source),
            pre, jump_row("filter", parent, config, present),
            jump_row("filter", "INPUT", config, present),
            jump_row("mangle", "INPUT", config, present, ROUTES_JUMP,
                     "the key routes' port from anywhere but %s dropped" % bridge),
            forward_row(bridge, config.subnet, parent, present, first_ok),
            neighbours_row(present, first_ok), persistence_row(bridge, subnet)] + \
        allow_rows(subnet, fw)


def allow_rows(subnet, fw):
    """A warn row for each --allow entry that reaches the LAN or this host: the same words
    --firewall printed after applying (firewall.allow.summary), from the configuration read."""
    gateway = next(ipaddress.ip_network(str(subnet)).hosts())
    opened = allow.summary(fw.allows, allow.host_networks(gateway), fw.profile)
    return [_row("opened by --allow %s" % spec, WARN, text)
            for warning, spec, text in opened if warning]
