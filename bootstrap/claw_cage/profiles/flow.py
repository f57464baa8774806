"""Which parts a profile needs, in which order: every check before any change, the firewall's
rules before the proxy that relies on them, and on --remove the proxy first (it owns
/etc/claw-cage, which the firewall's removal may then leave empty)."""

import os

from .. import egress, firewall
from ..errors import ClawCageError, PrereqError
from ..ui import UI

NOT_ROOT = "--firewall changes the host firewall: run it with sudo"


def main(args):
    ui = UI()
    if os.geteuid() != 0:
        raise PrereqError(NOT_ROOT)
    if args.remove:
        egress_changed = egress.remove(args, ui, args.dry_run)   # before: /etc/claw-cage
        result = firewall.remove_rules(args, ui)                 # may then be empty
        if egress_changed:
            result.update(changed=True, egress_removed=True)
        return result
    plan = egress.prepare(args)   # every profile: the keys leave the agent for the proxy;
    # every check first: a refusal changes nothing; local-only's Ollama endpoint (a route
    # now, so out of plan.names but still in plan.why) judged as --allow
    result = firewall.apply_rules(args, ui, [
        (egress.domains.allow_spec(n), why) for n, why in plan.why.items()
        if plan.local and not why.startswith("--allow ")])
    if args.profile in ("api-only", "local-only"):
        ui.info("  %s: the agent's namespace has no network; these rules are the "
                "second layer for anything attached to %s"
                % (args.profile, result.get("bridge", "the claw-cage bridge")))
    try:
        result["egress"] = egress.install(plan, ui, args.dry_run)
    except ClawCageError as err:   # systemctl or a file: say what state is left
        err.args = ("%s; the firewall rules are applied but the proxy (keys, routes) is not "
                    "complete: fix that and run this again" % err,)
        raise   # its own type: a failed command keeps the mode's code (cli.MODES)
    return result
