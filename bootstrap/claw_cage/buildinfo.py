"""Facts fixed when the program is built. build.py replaces this file inside dist/claw-cage.pyz
with one holding the real values; the values below are for running from a source checkout
(`PYTHONPATH=bootstrap python3 -m claw_cage`), where no sha256 is checked."""

VERSION_SUFFIX = "+source"
# The release tag (v + __version__) of a clean build at that tag; empty otherwise.
RELEASE = ""
GIT_REF = "main"
REPO = "VelocityPulse/claw-cage"
# sha256 of each file in deploy/, by name. Empty in a source checkout: nothing to check against.
DEPLOY_SHA256 = {}
# The claw-cage Docker network, read from deploy/docker-compose.yml at build time.
BRIDGE = "claw-cage0"
SUBNET = "172.30.0.0/24"
