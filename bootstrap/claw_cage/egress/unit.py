"""The egress proxy's systemd unit: the root-owned copy of claw-cage.pyz, run unprivileged.

Why these settings:
- ExecStart runs /usr/local/lib/claw-cage/claw-cage.pyz, a root-owned copy: never the file in
  the user's home, which the user (and so a compromised agent's owner account) can rewrite.
  The same command runs in the foreground on hosts without systemd.
- DynamicUser: a throwaway uid with no files of its own; ProtectSystem=strict, ProtectHome,
  PrivateTmp, NoNewPrivileges, no capabilities; only Unix and IP sockets; memory and task caps.
- RuntimeDirectory makes /run/claw-cage/egress (the proxy's socket; UMask=0000 so the
  relay's uid can connect to it); ExecStartPre, as root, makes /run/claw-cage/gateway owned by
  the relay's uid (deployment.RELAY_UID), where the relay puts the gateway's socket. Both are kept
  across restarts: the containers bind-mount them, and a folder made anew would leave them on
  the old one.
- LoadCredential=, one line per key in /etc/claw-cage/keys (systemd 252 also takes a folder,
  but names each file ID_FILE; the proxy reads $CREDENTIALS_DIRECTORY/<VAR>): the throwaway
  uid reads its keys from a private copy that only it can read, never the root-only store.
- Before=docker.service: at boot the folders exist before Docker starts the containers that
  mount them (Docker would otherwise create them root-owned). So the proxy always starts
  before Docker has made the claw-cage bridge, whose own address (172.30.0.1) the internet
  profile's routes listen on; no ordering can wait for it (After=docker.service would be a
  cycle). The proxy binds that listener with IP_FREEBIND (proxy/server.py) and serves as soon
  as the address is up, and again after `docker compose down` and `up` make the bridge anew.
"""

import os

from .. import deployment
from . import config

UNIT_NAME = "claw-cage-proxy.service"
UNIT_DIR = "/etc/systemd/system"
UNIT = UNIT_DIR + "/" + UNIT_NAME
WANTS = UNIT_DIR + "/multi-user.target.wants/" + UNIT_NAME
LIB_DIR = "/usr/local/lib/claw-cage"
PROGRAM = LIB_DIR + "/claw-cage.pyz"
PYTHON = "/usr/bin/python3"
# every unit that runs PROGRAM: the copy goes only with the last of them
PROGRAM_USERS = (UNIT, UNIT_DIR + "/claw-cage-backup.service")
EXEC_START = [PYTHON, PROGRAM, "--proxy", "--config", config.PATH]

TEXT = """\
# Installed by `sudo python3 claw-cage.pyz --firewall --profile api-only`;
# `--firewall --remove` removes it. The api-only cage's only way out: the agent's namespace
# has no network, and reaches this proxy through the socket in /run/claw-cage/egress.
[Unit]
Description=claw-cage egress proxy (the agent reaches only what its list names)
After=network.target
Before=docker.service
StartLimitIntervalSec=60
StartLimitBurst=10

[Service]
Type=simple
ExecStartPre=+/usr/bin/install -d -o %(uid)d -g %(uid)d -m 0755 %(run)s/gateway
ExecStart=%(exec)s
ExecReload=/bin/kill -HUP $MAINPID
Restart=on-failure
RestartSec=2
DynamicUser=yes
UMask=0000
RuntimeDirectory=claw-cage/egress
RuntimeDirectoryMode=0755
RuntimeDirectoryPreserve=yes
ProtectSystem=strict
ProtectHome=yes
PrivateTmp=yes
PrivateDevices=yes
NoNewPrivileges=yes
CapabilityBoundingSet=
AmbientCapabilities=
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6
RestrictNamespaces=yes
RestrictRealtime=yes
LockPersonality=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectControlGroups=yes
SystemCallArchitectures=native
%(credentials)sMemoryMax=256M
TasksMax=512
LimitNOFILE=8192

[Install]
WantedBy=multi-user.target
"""


def text(keys=(), store=None):
    """The unit, loading each named key of the store (keys.STORE) as a credential."""
    return TEXT % {"uid": deployment.RELAY_UID, "run": config.RUN_DIR,
                   "exec": " ".join(EXEC_START), "credentials": "".join("LoadCredential=%s:%s/%s\n" % (k, store, k)
                                          for k in keys)}


def foreground_command():
    """The unit's ExecStart, to run by hand where there is no systemd."""
    return " ".join(EXEC_START)


def program_used_by(besides):
    """True while a unit other than `besides` (a path of PROGRAM_USERS) runs PROGRAM."""
    return any(os.path.lexists(u) for u in PROGRAM_USERS if u != besides)
