"""Where the egress proxy's files are, and the list it gets: /etc/claw-cage/proxy.json is
rendered and validated by the proxy's own config module (its format's one owner). Written
root-owned 0644, atomically (a temporary file in the same folder, fsynced, renamed over).
"""

from .. import deployment

ETC_DIR = "/etc/claw-cage"
PATH = ETC_DIR + "/proxy.json"
RUN_DIR = "/run/claw-cage"
EGRESS_SOCKET = RUN_DIR + "/egress/proxy.sock"     # the agent's relay connects here
GATEWAY_SOCKET = RUN_DIR + "/gateway/gateway.sock"  # the gateway's relay listens here
GATEWAY_PORT = deployment.GATEWAY_ADDRESS           # where the SSH tunnel arrives on the host
AGENT_PROXY = ("127.0.0.1", 3128)                   # the proxy as the agent sees it


def owner():
    """The proxy's config module, the format's owner. Deferred: the proxy package starts its
    server module (asyncio, about 45 ms), which only a run that writes or reads this file needs."""
    from ..proxy import config
    return config


def render(allow, ports=(443,), expires=None, log="-", routes=(), routes_listen=(), keys_dir=None,
           namespace=True, routes_clients=()):
    """proxy.json text for the allowed names (exact, or *.suffix), on ports; local-only gives
    HOST:PORT entries and no ports (an entry without its own port then opens nothing).
    expires: {entry: unix time} of temporary entries. routes: the keys-contract's routes,
    served on routes_listen; keys_dir: where the proxy reads the keys where systemd's
    LoadCredential= does not hand them over. namespace False (the internet profile): routes
    only, no CONNECT listener and no gateway forward (Docker publishes the gateway's port
    itself). routes_clients: the networks a TCP routes_listen serves (the claw-cage
    network's subnet, composefile's); any other peer is refused. ValueError when the proxy
    would refuse it."""
    fmt = owner()
    return fmt.render(
        listen=["unix:" + EGRESS_SOCKET] if namespace else [], allow=list(allow),
        ports=list(ports), routes=list(routes), routes_listen=list(routes_listen),
        routes_clients=list(routes_clients), keys_dir=keys_dir, log=log,
        forward=[{"listen": GATEWAY_PORT, "to": "unix:" + GATEWAY_SOCKET}] if namespace else [],
        expires=dict((n, fmt.stamp(t)) for n, t in sorted((expires or {}).items())))


def parse(text):
    """The proxy's Config of proxy.json text; ValueError, one line, when the proxy refuses it."""
    return owner().parse(text)
