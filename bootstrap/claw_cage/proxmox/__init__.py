"""--proxmox: print /etc/pve/firewall/<VMID>.fw for the VM that runs claw-cage.

  vmfile   the file, rendered from --firewall's rule table, and what it needs to know of this
           VM (the admin's SSH source, its own addresses, its resolvers)

Exposes main(args) for cli, and render for the tests. May import firewall (its __init__ names).
"""

from .vmfile import main, render

__all__ = ["main", "render"]
