"""--verify: the deployment's verification matrix in one command, read-only.

Four groups of rows, gathered at the same time (threads), so the run costs about one probe
timeout even when every LAN packet is silently dropped:
  Host       firewall chains and jumps (firewall_rows), gateway port and .env (exposure)
  Container  `docker inspect` of the running gateway (container)
  Probes     packets from a throwaway container on the claw-cage network (probe_plan, probes)
  Audit      advice from seed 003, warn only (audit)
Nothing here changes anything: it runs iptables-save, reads /proc and /etc, `docker ps`,
`docker inspect`, and one `docker run --rm` probe container (probes.py shows its argv).
Exit 0 when no row is `fail`, else errors.EXIT_VERIFY.
"""

import concurrent.futures
import ipaddress
import os
import sys

from .. import buildinfo, composefile, paths, safefile
from ..errors import EXIT_VERIFY, ClawCageError, TargetError, UsageError
from ..ui import UI
from . import audit, container, exposure, firewall_rows, probe_plan, probes, report
from .report import Row, SKIP


def network_of(directory):
    """Bridge name and subnet from the installed docker-compose.yml, else the build's. Read
    with safefile: --verify may run as root in a directory the user controls."""
    path = os.path.join(directory, "docker-compose.yml")
    text = safefile.read_text(path)
    if text is None:
        return buildinfo.BRIDGE, ipaddress.IPv4Network(buildinfo.SUBNET)
    try:
        return composefile.read_network(text, path)
    except ClawCageError as err:  # composefile's reason, as a target error (like --firewall)
        raise TargetError(str(err))


def probe_rows(netns, internet, bridge, subnet, fw):
    """Rows of the packet probes, sent from the claw-cage network: a throwaway container next
    to the gateway, or (test mode) the namespace named by CLAW_CAGE_PROBE_NETNS."""
    if netns:
        inspect = [Row(container.SECTION, "container", SKIP,
                       "test mode: probes run in network namespace %s, no container" % netns)]
        if os.geteuid() != 0:  # `ip netns exec` would fail, and a failure must not read as a block
            return inspect + [Row(probe_plan.SECTION, "probes", SKIP,
                                  "test mode: entering namespace %s needs root" % netns)]

        def batch(plan):
            return probes.batch_netns_argv(netns, plan)
        single = None
    else:
        info, why = container.find_gateway()
        if info is None:
            return [Row(container.SECTION, "container", SKIP, why),
                    Row(probe_plan.SECTION, "probes", SKIP, why)]
        inspect = container.inspect_rows(info)
        network, image = container.probe_network(info)
        if not network or not image:
            return inspect + [Row(probe_plan.SECTION, "probes", SKIP,
                                  "the gateway is not on a *%s network" %
                                  container.NETWORK_SUFFIX)]

        def batch(plan):
            return probes.batch_docker_argv(network, image, plan)

        def single(probe):
            return probes.docker_argv(network, image, probe)
    view = probe_plan.look_at_host(bridge, subnet)
    allowed = probe_plan.allow_targets(fw.allow_entries, view.bridge_address)
    plan = probe_plan.plan(view, allowed, fw.local_only, internet)
    rows, _ = probe_plan.run(plan, batch, single, internet)
    return inspect + rows


def collect(directory, bridge, subnet, netns, internet):
    """Every row, in display order. Groups run concurrently; each group orders its own rows."""
    is_root = os.geteuid() == 0
    fw = firewall_rows.read_config()
    with concurrent.futures.ThreadPoolExecutor(max_workers=5) as pool:
        host = pool.submit(firewall_rows.rows, bridge, subnet, is_root, fw)
        port = pool.submit(exposure.check_gateway_port, is_root)
        env = pool.submit(exposure.check_env, directory)
        probe = pool.submit(probe_rows, netns, internet, bridge, subnet, fw)
        advice = pool.submit(audit.run_all)
        return host.result() + [port.result(), env.result()] + probe.result() + advice.result()


def main(args):
    directory = paths.install_dir(args.dir)
    if args.dir and not os.path.isdir(directory):
        raise UsageError("--dir %s: no such directory" % args.dir)
    try:
        netns = probes.test_netns()
        internet = probe_plan.internet_target()
    except ValueError as err:
        raise UsageError(str(err))
    bridge, subnet = network_of(directory)
    rows = collect(directory, bridge, subnet, netns, internet)
    bad = report.failed(rows)
    if args.json:
        sys.stdout.write(report.render_json(rows) + "\n")
        return EXIT_VERIFY if bad else 0
    ui = UI()
    ui.info("claw-cage verification of %s (bridge %s, %s)\n" % (directory, bridge, subnet))
    ui.info(report.render_table(rows, color=ui.color))
    ui.info("")
    if os.geteuid() != 0:
        ui.warn("not root: the firewall rows could not be read (run it with sudo)")
    if bad:
        ui.fail("%s: %s" % (report.summary(rows), ", ".join(r.check for r in bad)))
        return EXIT_VERIFY
    ui.ok(report.summary(rows))
    return 0
