"""--firewall: the cage of the chosen profile, over the two services it is made of.

    sudo python3 claw-cage.pyz --firewall [--allow SPEC]... [--profile P] [--no-persist]
    sudo python3 claw-cage.pyz --firewall --remove

  flow   every profile: the proxy's checks first (its keys and routes; api-only and
         local-only: its list too), then the rules, then the proxy's service; --remove
         takes both out

Exposes main(args) for cli. Imports firewall and egress through their faces; nothing imports
it but cli.
"""

from .flow import main

__all__ = ["main"]
