"""--firewall --profile api-only: the agent reaches only listed domains, through the egress
proxy that runs as a hardened system service.

  domains   the list: providers in .env, channels in openclaw.json, --allow-domain
  config    /etc/claw-cage/proxy.json (the proxy's configuration)
  unit      the systemd unit and the root-owned copy of the program it runs
  envfile   COMPOSE_FILE in the user's .env (picks docker-compose.api-only.yml)
  keys      keys outside the agent: the root-only store, the routes, openclaw.routes.json
  setup     prepare (checks only), install, remove

Imports only the shared plumbing beside it. The firewall mode calls it.
"""

from . import config, domains, envfile, keys, unit
from .setup import install, installed, prepare, remove

__all__ = ["config", "domains", "envfile", "install", "installed", "keys", "prepare", "remove",
           "unit"]
