"""The deployment's facts, as deploy/docker-compose.yml fixes them: one place in the program
for each (tests/deploy/test_deployment_facts.py reads them back from the compose file, and
finds any copy of them elsewhere in bootstrap/)."""

PROJECT = "claw-cage"                # the compose project (`name:`): containers, volumes
STATE, SECRETS = "claw-data", "claw-secrets"   # the volumes a backup holds (the rest: caches)
UID = 1000                           # the node user of the OpenClaw image (`user: 1000:1000`)
USER = "%d:%d" % (UID, UID)
# The api-only relay's uid (docker-compose.api-only.yml, openclaw-netns's `user:`): in the range
# Debian reserves and never allocates (65000-65533), so no host account owns the gateway
# socket's folder (--verify's "gateway socket" row checks it)
RELAY_UID = 65100
GATEWAY_PORT = 18789                 # published on the host's 127.0.0.1 only
GATEWAY_ADDRESS = "127.0.0.1:%d" % GATEWAY_PORT
HEALTH_URL = "http://%s/healthz" % GATEWAY_ADDRESS
TOKEN_VAR = "OPENCLAW_GATEWAY_TOKEN"   # in .env: the token every client must present
