"""/etc/claw-cage/proxy.json: what the egress proxy listens on, lets through and forwards.

The proxy runs `--proxy --config` on this file (its keys are the proxy's contract). Written
root-owned 0644, atomically (a temporary file in the same folder, fsynced, renamed over).
"""

import json

from .. import deployment

ETC_DIR = "/etc/claw-cage"
PATH = ETC_DIR + "/proxy.json"
RUN_DIR = "/run/claw-cage"
EGRESS_SOCKET = RUN_DIR + "/egress/proxy.sock"     # the agent's relay connects here
GATEWAY_SOCKET = RUN_DIR + "/gateway/gateway.sock"  # the gateway's relay listens here
GATEWAY_PORT = deployment.GATEWAY_ADDRESS           # where the SSH tunnel arrives on the host
AGENT_PROXY = ("127.0.0.1", 3128)                   # the proxy as the agent sees it


def render(allow, ports=(443,)):
    """proxy.json text for the allowed names (exact, or *.suffix), on ports; local-only gives
    HOST:PORT entries and no ports (an entry without its own port then opens nothing)."""
    config = {
        "listen": ["unix:" + EGRESS_SOCKET],
        "allow": list(allow),
        "ports": list(ports),
        "forward": [{"listen": GATEWAY_PORT, "to": "unix:" + GATEWAY_SOCKET}],
        "log": "-",
        "max_conns": 256,
        "header_timeout": 10,
        "idle_timeout": 300,
    }
    return json.dumps(config, indent=2) + "\n"


def parse(text):
    """The config dict of proxy.json text; ValueError when it is not the shape render() makes."""
    config = json.loads(text)
    if not isinstance(config, dict) or not isinstance(config.get("allow"), list) or \
            not isinstance(config.get("listen"), list):
        raise ValueError("no allow or listen list")
    return config
