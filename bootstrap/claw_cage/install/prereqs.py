"""Step 1 of the install: check what the host must already have, before touching the disk.

Python >= 3.8 was checked by the launcher. Here: docker on PATH and Compose v2 answering
`docker compose version`. The architecture is reported, and a Docker daemon that does not
answer is only a warning: the files can be installed before Docker is started.
"""

import platform
import re

from .. import runner
from ..errors import PrereqError

DOCKER_HINT = "install Docker Engine: https://docs.docker.com/engine/install/"
COMPOSE_HINT = ("install the Compose v2 plugin (Debian/Ubuntu: apt-get install "
                "docker-compose-plugin; see https://docs.docker.com/compose/install/linux/)")


def compose_major(version_output):
    """Major version from `docker compose version` output ('Docker Compose version v2.29.1')."""
    m = re.search(r"\bv?(\d+)\.\d+", version_output)
    return int(m.group(1)) if m else None


def check(ui):
    """Raise PrereqError naming the first missing prerequisite; report what was found."""
    docker = runner.which("docker")
    if docker is None:
        raise PrereqError("docker not found on PATH: " + DOCKER_HINT)
    try:
        result = runner.run([docker, "compose", "version"], check=False, timeout=30)
    except runner.CommandError as err:
        raise PrereqError("`docker compose version` failed (%s): %s" % (err, COMPOSE_HINT))
    major = compose_major(result.stdout) if result.ok else None
    if major is None or major < 2:
        raise PrereqError("Docker Compose v2 not found (`docker compose version` did not "
                          "answer with v2 or newer): " + COMPOSE_HINT)
    ui.ok("docker and %s" % result.stdout.strip().splitlines()[0])
    ui.ok("architecture %s" % platform.machine())
    try:
        daemon = runner.run([docker, "info", "--format", "{{.ServerVersion}}"], check=False,
                            timeout=15)
        answered = daemon.ok and daemon.stdout.strip()
    except runner.CommandError:
        answered = False
    if answered:
        ui.ok("Docker daemon %s answers" % daemon.stdout.strip())
    else:
        ui.warn("the Docker daemon does not answer (is it running? are you in the docker "
                "group?): installing the files anyway; start Docker before `docker compose up`")
