"""/etc/claw-cage/proxy.json: what the egress proxy listens on, lets through and forwards.

The proxy runs `--proxy --config` on this file (its keys are the proxy's contract). Written
root-owned 0644, atomically (a temporary file in the same folder, fsynced, renamed over).
"""

import json

ETC_DIR = "/etc/claw-cage"
PATH = ETC_DIR + "/proxy.json"
RUN_DIR = "/run/claw-cage"
EGRESS_SOCKET = RUN_DIR + "/egress/proxy.sock"     # the agent's relay connects here
GATEWAY_SOCKET = RUN_DIR + "/gateway/gateway.sock"  # the gateway's relay listens here
GATEWAY_PORT = "127.0.0.1:18789"                    # where the SSH tunnel arrives on the host
AGENT_PROXY = ("127.0.0.1", 3128)                   # the proxy as the agent sees it


def render(allow, ports=(443,), routes=(), routes_listen=(), keys_dir=None, namespace=True):
    """proxy.json text for the allowed names (exact, or *.suffix), on ports; local-only gives
    HOST:PORT entries and no ports (an entry without its own port then opens nothing).
    routes: the keys-contract's routes, served on routes_listen; keys_dir: where the proxy
    reads the keys where systemd's LoadCredential= does not hand them over. namespace False
    (the internet profile): routes only, no CONNECT listener and no gateway forward (Docker
    publishes the gateway's port itself)."""
    config = {
        "listen": ["unix:" + EGRESS_SOCKET] if namespace else [],
        "allow": list(allow),
        "ports": list(ports),
        "forward": [{"listen": GATEWAY_PORT, "to": "unix:" + GATEWAY_SOCKET}] if namespace
        else [],
        "log": "-",
        "max_conns": 256,
        "header_timeout": 10,
        "idle_timeout": 300,
    }
    if routes:
        config.update(routes=list(routes), routes_listen=list(routes_listen))
    if keys_dir:
        config["keys_dir"] = keys_dir
    return json.dumps(config, indent=2) + "\n"


def parse(text):
    """The config dict of proxy.json text; ValueError when it is not the shape render() makes."""
    config = json.loads(text)
    if not isinstance(config, dict) or not isinstance(config.get("allow"), list) or \
            not isinstance(config.get("listen"), list):
        raise ValueError("no allow or listen list")
    return config
