"""--firewall --profile api-only: the agent reaches only listed domains, through the egress
proxy that runs as a hardened system service.

  domains   the list: providers in .env, channels in openclaw.json, --allow-domain
  config    /etc/claw-cage/proxy.json (the proxy's configuration)
  unit      the systemd unit and the root-owned copy of the program it runs
  envfile   COMPOSE_FILE in the user's .env (picks docker-compose.api-only.yml)
  keys      keys outside the agent: the root-only store, the routes, openclaw.routes.json
  setup     prepare (checks only), install, remove
  temporary --allow-domain NAME --for 2h: entries that end on their own; the proxy's reload
  refused   --refused: what the proxy refused, and the command that opens each

Imports only the shared plumbing beside it. The firewall mode calls it; the backup schedule
shares its root-owned program copy (copy_program, unit.PROGRAM_USERS).
"""

from . import config, domains, envfile, keys, refused, temporary, unit
from .setup import copy_program, install, installed, prepare, remove, systemd_running

__all__ = ["config", "copy_program", "domains", "envfile", "install", "installed", "keys",
           "prepare", "refused", "remove", "systemd_running", "temporary", "unit"]
