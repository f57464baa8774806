"""Step 1 of the install: check what the host must already have, before touching the disk.

Python >= 3.8 was checked by the launcher. Here: docker on PATH and Compose v2 answering
`docker compose version`. The architecture is reported, and a Docker daemon that does not
answer is only a warning: the files can be installed before Docker is started.

When Compose v2 is missing, the hint names the exact command for this host (compose_hint):
it reads /etc/os-release and asks dpkg which package installed docker. Debian 12's own
docker.io has no Compose v2 package (its docker-compose is 1.29), Debian 13 packages v2 as
docker-compose, Ubuntu as docker-compose-v2, Docker's own repository as docker-compose-plugin.
"""

import os
import re

from .. import runner
from ..errors import PrereqError

DOCKER_HINT = "install Docker Engine: https://docs.docker.com/engine/install/"
COMPOSE_HINT = ("install the Compose v2 plugin: "
                "https://docs.docker.com/compose/install/linux/")
OS_RELEASE = ("/etc/os-release", "/usr/lib/os-release")
# Release asset names of docker/compose by `uname -m`.
COMPOSE_ARCH = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "aarch64",
                "arm64": "aarch64", "armv7l": "armv7", "armv6l": "armv6",
                "ppc64le": "ppc64le", "s390x": "s390x", "riscv64": "riscv64"}
PLUGIN_DIR = "/usr/local/lib/docker/cli-plugins"


def os_release(paths=OS_RELEASE):
    """{KEY: value} of the first os-release file found ({} when none)."""
    for path in paths:
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        except (OSError, UnicodeDecodeError):
            continue
        found = {}
        for line in text.splitlines():
            key, sep, value = line.partition("=")
            if sep and re.fullmatch(r"[A-Z0-9_]+", key.strip()):
                found[key.strip()] = value.strip().strip("\"'")
        return found
    return {}


def docker_packages(paths):
    """Names of the dpkg packages that installed these files ({} without dpkg, or when
    none did: a static binary in /usr/local/bin, a snap)."""
    if not runner.which("dpkg-query"):
        return set()
    try:
        result = runner.run(["dpkg-query", "-S"] + list(paths), check=False, timeout=15)
    except runner.CommandError:
        return set()
    found = set()
    for line in result.stdout.splitlines():
        owners, sep, _path = line.partition(": ")
        if sep:
            found.update(p.strip().split(":")[0] for p in owners.split(",") if p.strip())
    return found


def standalone_plugin(machine):
    """The commands that put Docker's own Compose v2 plugin where every user's docker finds it."""
    arch = COMPOSE_ARCH.get(machine, machine)
    return ("sudo mkdir -p %s && sudo curl -fsSL -o %s/docker-compose "
            "https://github.com/docker/compose/releases/latest/download/docker-compose-linux-%s "
            "&& sudo chmod 755 %s/docker-compose" % (PLUGIN_DIR, PLUGIN_DIR, arch, PLUGIN_DIR))


def compose_hint(release, packages, machine):
    """What to run to get Compose v2 on this host. release: os_release(); packages: where
    docker came from (docker_packages()); machine: os.uname().machine. Pure."""
    ids = [release.get("ID", "")] + release.get("ID_LIKE", "").split()
    version = release.get("VERSION_ID", "")
    major = int(version.split(".")[0]) if version.split(".")[0].isdigit() else None
    if packages & {"docker-ce", "docker-ce-cli", "docker-ee", "docker-ee-cli"}:
        return ("Docker's own packages are installed: sudo apt-get install "
                "docker-compose-plugin")
    if "docker.io" in packages:
        if "ubuntu" in ids:
            return "sudo apt-get install docker-compose-v2"
        if "debian" in ids or ids[0] == "raspbian":
            name = release.get("PRETTY_NAME") or "Debian %s" % (version or "?")
            if major is None or major >= 13:
                return "sudo apt-get install docker-compose   (Compose v2 on %s)" % name
            return ("%s packages no Compose v2 (its docker-compose is v1): install Docker's "
                    "standalone plugin: %s (or docker-compose-plugin from Docker's apt "
                    "repository, https://docs.docker.com/engine/install/debian/)"
                    % (name, standalone_plugin(machine)))
    if machine in COMPOSE_ARCH:
        return "install Docker's standalone Compose v2 plugin: " + standalone_plugin(machine)
    return COMPOSE_HINT


def host_compose_hint(docker):
    """compose_hint() for this host, from /etc/os-release and dpkg."""
    files = [os.path.realpath(docker)]
    dockerd = runner.which("dockerd")
    if dockerd:
        files.append(os.path.realpath(dockerd))
    return compose_hint(os_release(), docker_packages(files), os.uname().machine)


def compose_major(version_output):
    """Major version from `docker compose version` output ('Docker Compose version v2.29.1')."""
    m = re.search(r"\bv?(\d+)\.\d+", version_output)
    return int(m.group(1)) if m else None


def check(ui):
    """Raise PrereqError naming the first missing prerequisite; report what was found.
    Returns the docker command, for daemon()."""
    docker = runner.which("docker")
    if docker is None:
        raise PrereqError("docker not found on PATH: " + DOCKER_HINT)
    try:
        result = runner.run([docker, "compose", "version"], check=False, timeout=30)
    except runner.CommandError as err:
        raise PrereqError("`docker compose version` failed (%s): %s"
                          % (err, host_compose_hint(docker)))
    major = compose_major(result.stdout) if result.ok else None
    if major is None or major < 2:
        raise PrereqError("Docker Compose v2 not found (`docker compose version` did not "
                          "answer with v2 or newer): " + host_compose_hint(docker))
    ui.ok("docker and %s" % result.stdout.strip().splitlines()[0])
    ui.ok("architecture %s" % os.uname().machine)
    return docker


def daemon(ui, docker):
    """Whether the Docker daemon answers: only a warning when it does not (the files can be
    installed before Docker is started), so the install asks while its download runs."""
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
