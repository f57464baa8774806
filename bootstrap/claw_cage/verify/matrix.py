"""--verify: the deployment's verification matrix in one command, read-only.

Groups of rows, gathered at the same time (threads), so the run costs about one probe timeout
even when every LAN packet is silently dropped; in display order:
  Host firewall    the gateway on the caged bridge (container.network_row), chains, jumps,
                   order and persistence (firewall_rows)
  Host             the gateway port and .env (exposure)
  Container        `docker inspect` of the running gateway (container), looked up once per run
  Probes           packets from a throwaway container on the claw-cage network (probe_plan,
                   probes); under api-only and local-only, probes from the agent's namespace
                   instead (egress_rows)
  Egress           api-only and local-only: the proxy up with its list (egress_rows)
  Audit            the hardening guide's other layers (audit) and the last backup's age
                   (backup_age), advice only
  OpenClaw policy  OpenClaw's own security audit and the hardened openclaw.json keys, in the
                   running gateway (openclaw_policy)
Nothing here changes anything: it runs iptables-save, reads /proc and /etc, `docker compose
config` (composefile, on private copies), `docker ps`, `docker inspect`, `docker network
inspect`, and one `docker run --rm` probe container (probes.py shows its argv).
Exit 0 when no row is `fail` and every needed look was taken; errors.EXIT_VERIFY when a row
fails; errors.EXIT_INCOMPLETE when the probes or the gateway container could not be looked at
(verdict() says which, in the last line).
"""

import concurrent.futures
import os
import sys

from .. import composefile, paths
from ..errors import EXIT_INCOMPLETE, EXIT_VERIFY, TargetError, UsageError
from ..firewall import rules
from ..ui import UI
from . import audit, container, exposure, firewall_rows, probe_plan, probes, report
from . import openclaw_policy  # the "OpenClaw policy" group: audit and openclaw.json in the gateway
from . import egress_rows  # the "Egress" group (api-only, local-only): the proxy, probed
from . import backup_age  # the backup advice rows
from . import keys_rows  # the "Keys" group: no key where the agent reads, the routes at work
from .report import FAIL, Row, SKIP


def network_of(directory):
    """(Network, problem row or None): the network the install directory's project puts its
    containers on, as --firewall reads it (composefile.project_network, Compose's own reading).
    Where that reading refuses (an override moves the network), the rows judge the network
    docker-compose.yml declares, and a failing row says why. TargetError when not even
    docker-compose.yml can be read."""
    try:
        return composefile.project_network(directory), None
    except TargetError as err:
        declared = composefile.declared_network(directory)
        why = str(err)
        why = why[:-len("; nothing was changed")] if why.endswith("; nothing was changed") \
            else why
        if os.geteuid() != 0 and isinstance(err, composefile.Unreadable):
            # a file of the project is not readable without root (.env is 600): not a verdict
            return declared, Row(firewall_rows.SECTION, "compose network", SKIP,
                                 "%s: re-run with sudo to read it" % why)
        return declared, Row(firewall_rows.SECTION, "compose network", FAIL,
                             "%s: --firewall refuses it" % why)


def expected_dns(directory):
    """The resolvers the installed docker-compose.yml and .env pin for the gateway ([] when
    the compose file pins none or cannot be read)."""
    return composefile.read_pinned_dns(directory)


def dns_blocked(bridge, subnet, fw):
    """address -> whether the configured cage drops DNS (port 53) to it."""
    config = rules.default_config(bridge, subnet)._replace(allows=tuple(fw.allow_entries),
                                                           profile=fw.profile)

    def blocked(address):
        try:
            return rules.forward_verdict(config, address, 53) == "DROP"
        except (ValueError, AssertionError):
            return False
    return blocked


def probe_rows(netns, internet, bridge, subnet, fw, pinned=(), timeout=None, gateway=None):
    """Rows of the packet probes, sent from the claw-cage network: a throwaway container next
    to the gateway, or (test mode) the namespace named by CLAW_CAGE_PROBE_NETNS.
    pinned: the resolvers docker-compose.yml pins (the DNS row compares the container's);
    timeout: the cap on the probe command (probes.command_timeout);
    gateway: find_gateway()'s (info, why), looked up once per run (default: look now)."""
    if netns:
        inspect = [Row(container.SECTION, "container", SKIP,
                       "test mode: probes run in network namespace %s, no container" % netns)]
        if os.geteuid() != 0:  # `ip netns exec` would fail, and a failure must not read as a block
            return inspect + [Row(probe_plan.SECTION, "probes", SKIP,
                                  "test mode: entering namespace %s needs root" % netns,
                                  needed=True)]

        def batch(plan):
            return probes.batch_netns_argv(netns, plan)
        single = None
    else:
        info, why = gateway or container.find_gateway()
        if info is None:
            return [Row(container.SECTION, "container", SKIP, why, needed=True),
                    Row(probe_plan.SECTION, "probes", SKIP, why, needed=True)]
        inspect = container.inspect_rows(info)
        inspect.append(container.dns_row(info, list(pinned), dns_blocked(bridge, subnet, fw)))
        network, image = container.probe_network(info)
        if not network or not image:
            return inspect + [Row(probe_plan.SECTION, "probes", SKIP,
                                  "the gateway is not on a *%s network" %
                                  container.NETWORK_SUFFIX, needed=True)]
        # The probe container asks the gateway's resolvers: its DNS row is the gateway's path.
        dns = container.resolvers(info)

        def batch(plan):
            return probes.batch_docker_argv(network, image, plan, dns=dns)

        def single(probe):
            return probes.docker_argv(network, image, probe, dns=dns)
    view = probe_plan.look_at_host(bridge, subnet)
    allowed = probe_plan.allow_targets(fw.allow_entries, view.bridge_address)
    plan = probe_plan.plan(view, allowed, fw.local_only, internet)
    rows, _ = probe_plan.run(plan, batch, single, internet, timeout)
    return inspect + rows


def look_at_gateway(netns, bridge, subnet):
    """The one `docker ps` + `docker inspect` of the run: ((info, why), the "gateway network"
    row, the first firewall row: is the running gateway on the caged bridge?)."""
    if netns:
        why = "test mode: network namespace %s, no container" % netns
        return (None, why), container.network_row(firewall_rows.SECTION, None, why, bridge,
                                                   subnet, None)
    info, why = container.find_gateway()
    networks, networks_why = container.networks_of(info) if info else (None, None)
    return (info, why), container.network_row(firewall_rows.SECTION, info, why, bridge, subnet,
                                              networks, networks_why)


def collect(directory, bridge, subnet, netns, internet, timeout=None, first=()):
    """Every row, in display order. Groups run concurrently; each group orders its own rows.
    The gateway is looked up once, first; the groups that need it wait for that look.
    first: rows shown before the firewall rows (a refused network reading)."""
    is_root = os.geteuid() == 0
    fw = firewall_rows.read_config()
    pinned = expected_dns(directory)
    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        look = pool.submit(look_at_gateway, netns, bridge, subnet)

        def probe_group():
            if egress_rows.installed():   # api-only: the agent has no network to probe from
                return egress_rows.instead_of_probes(netns, gateway=look.result()[0])
            return probe_rows(netns, internet, bridge, subnet, fw, pinned, timeout,
                              gateway=look.result()[0])

        def egress_group():
            return egress_rows.rows(bridge, subnet, netns, gateway=look.result()[0])

        def policy_group():
            info, why = look.result()[0]
            if info is None and not netns:
                return openclaw_policy.skipped(why, fw.local_only)
            return openclaw_policy.rows(fw.local_only, netns, info)
        tables = pool.submit(firewall_rows.read_host) if is_root else None   # read once
        host = pool.submit(lambda: firewall_rows.rows(bridge, subnet, is_root, fw,
                                                      tables and tables.result()))
        port = pool.submit(lambda: exposure.check_gateway_port(is_root,
                                                               tables and tables.result()))
        env = pool.submit(exposure.check_env, directory)
        probe = pool.submit(probe_group)
        egress = pool.submit(egress_group)
        advice = pool.submit(audit.run_all)
        policy = pool.submit(policy_group)
        keyed = pool.submit(lambda: keys_rows.rows(directory, look.result()[0], netns))
        return list(first) + [look.result()[1]] + host.result() + \
            [port.result(), env.result()] + probe.result() + egress.result() + \
            advice.result() + backup_age.rows(directory) + policy.result() + keyed.result()


def not_verified(rows):
    """What could not be looked at, in a few words and why, or None when every needed look
    was taken."""
    lacking = report.missing(rows)
    if not lacking:
        return None
    why = lacking[0].detail
    prefix = "probe could not run: "
    why = why[len(prefix):] if why.startswith(prefix) else why
    probe_gaps = [r for r in lacking if r.section == probe_plan.SECTION]
    sent = [r for r in rows if r.section == probe_plan.SECTION]
    parts = []
    if any(r.section == container.SECTION for r in lacking):
        parts.append("the gateway container")
    if probe_gaps and (len(probe_gaps) == len(sent) or any(r.check == "probes"
                                                             for r in probe_gaps)):
        parts.append("the packet probes")
    elif probe_gaps:
        parts.append("%d of %d packet probes" % (len(probe_gaps), len(sent)))
    return "%s (%s)" % (" and ".join(parts or ["%d checks" % len(lacking)]), why)


def verdict(rows, is_root):
    """(exit status, level, last line) of a run: a failing row is exit 7 (the line also names
    what was not verified, if anything); else a needed look that could not be taken is exit 9
    (incomplete), never "ok"; without root the firewall rows are skipped and the line says to
    re-run with sudo, but the exit status stays 0: the packet probes, the proof that the cage
    holds, ran (README, "Verifying the cage")."""
    bad = report.failed(rows)
    gap = not_verified(rows)
    if bad:
        return EXIT_VERIFY, "fail", "%s: %s%s" % (
            report.summary(rows), ", ".join(r.check for r in bad),
            "; also NOT verified: %s" % gap if gap else "")
    if gap:
        return EXIT_INCOMPLETE, "fail", "incomplete, NOT verified: %s; %s" % (
            gap, report.summary(rows))
    if not is_root:
        return 0, "warn", ("%s; firewall rules and persistence not read without root: re-run "
                           "with sudo to check them too" % report.summary(rows))
    return 0, "ok", report.summary(rows)


def main(args):
    directory = paths.install_dir(args.dir)
    if args.dir and not os.path.isdir(directory):
        raise UsageError("--dir %s: no such directory" % args.dir)
    try:
        netns = probes.test_netns()
        internet = probe_plan.internet_target()
        timeout = probes.command_timeout(probes.start_timeout_from())
    except ValueError as err:
        raise UsageError(str(err))
    net, problem = network_of(directory)
    bridge, subnet = net.bridge, net.subnet
    rows = collect(directory, bridge, subnet, netns, internet, timeout,
                   first=[problem] if problem else ())
    status, level, line = verdict(rows, os.geteuid() == 0)
    if args.json:
        sys.stdout.write(report.render_json(rows) + "\n")
        return status
    ui = UI()
    ui.info("claw-cage verification of %s (bridge %s, %s)\n" % (directory, bridge, subnet))
    ui.info(report.render_table(rows, color=ui.color))
    ui.info("")
    {"fail": ui.fail, "warn": ui.warn, "ok": ui.ok}[level](line)
    return status
