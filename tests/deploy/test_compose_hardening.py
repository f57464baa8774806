"""The hardening of deploy/docker-compose.yml, read back from what the real Docker Compose v2
resolves (`docker compose config --format json`), service by service, with and without
`--profile cli`, with the shipped .env and sample ones; each check shown to fail on a mutated
copy."""

import os
import re
import subprocess
import sys

import pytest

from compose_support import (CLI_SERVICES, COMPOSE_PATH, GIB, HOME, INIT, MIB, ROOT, SERVICES,
                             TOKEN_VAR, VOLUMES, compose_cmd, compose_config, config_for,
                             hardening_problems, heap_mb, init_problems, installed_env,
                             network_problems, one_gb_advice, one_gb_env, project, read,
                             tmpfs_entries, tmpfs_size, to_bytes)


def test_compose_is_the_real_v2_binary():
    r = subprocess.run(list(compose_cmd()) + ["version", "--short"], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=30)
    assert r.returncode == 0, r.stderr
    assert re.match(r"v?2\.\d+\.\d+", r.stdout.decode().strip()), r.stdout


def test_profiles_gateway_alone_by_default_cli_on_request(tmp_path):
    d = project(tmp_path, installed_env())
    plain = compose_config(d)
    assert plain["name"] == "claw-cage"
    assert set(plain["services"]) == {"openclaw", INIT}
    with_cli = compose_config(d, profiles=("cli",))
    assert set(with_cli["services"]) == set(SERVICES) | {INIT}


@pytest.mark.parametrize("service", SERVICES)
def test_service_is_hardened_with_installed_env(tmp_path, service):
    cfg = config_for(tmp_path, installed_env())
    svc = cfg["services"][service]
    assert hardening_problems(service, svc) == []
    # The defaults, as OpenClaw's own Kubernetes manifest sizes them (2 GiB, 1536 MB heap).
    assert to_bytes(svc["mem_limit"]) == 2 * GIB
    assert heap_mb(svc) == 1536
    assert float(svc["cpus"]) == 1.0
    assert int(svc["pids_limit"]) == 512
    assert {k: v["size"] for k, v in tmpfs_entries(svc).items()} == {
        "/tmp": "64m", "/tmp/openclaw": "64m", HOME + "/.cache": "32m", HOME + "/.config": "8m"}


def test_volumes_init_is_root_with_chown_only_and_no_network(tmp_path):
    cfg = config_for(tmp_path, installed_env())
    assert init_problems(cfg["services"][INIT]) == []


def test_gateway_and_cli_share_image_and_volumes(tmp_path):
    cfg = config_for(tmp_path, installed_env())
    gw = cfg["services"]["openclaw"]
    others = [cfg["services"][n] for n in CLI_SERVICES + (INIT,)]
    assert all(o["image"] == gw["image"] for o in others)
    # A release pinned by tag AND digest, never a moving tag.
    assert re.match(r"^ghcr\.io/openclaw/openclaw:\d{4}\.\d+\.\d+@sha256:[0-9a-f]{64}$",
                    gw["image"]), gw["image"]
    assert all(o["volumes"] == gw["volumes"] for o in others)
    assert all(cfg["services"][n]["tmpfs"] == gw["tmpfs"] for n in CLI_SERVICES)
    assert sorted(cfg["volumes"]) == sorted(v for _, v, _ in VOLUMES)


def test_network_matches_what_the_firewall_reads(tmp_path):
    cfg = config_for(tmp_path, installed_env())
    assert network_problems(cfg) == []
    # The installer/firewall read the same two facts with their own stdlib parser: it must agree
    # with what the real Compose resolves.
    sys.path.insert(0, os.path.join(ROOT, "bootstrap"))
    try:
        from claw_cage import composefile
    finally:
        sys.path.pop(0)
    bridge, subnet = composefile.read_network(read(COMPOSE_PATH))
    net = cfg["networks"]["claw-net"]
    assert bridge == net["driver_opts"]["com.docker.network.bridge.name"]
    assert str(subnet) == net["ipam"]["config"][0]["subnet"]


def test_env_reaches_every_service_and_overrides_limits(tmp_path):
    advice = one_gb_advice()
    assert set(advice) == {"CLAW_MEM_LIMIT", "CLAW_NODE_HEAP_MB", "CLAW_TMP_SIZE",
                           "CLAW_LOG_SIZE"}, advice
    sample = one_gb_env(["ANTHROPIC_API_KEY=sk-ant-sample",
                         "OPENCLAW_IMAGE=registry.example/openclaw:test",
                         "CLAW_CPUS=0.5", "CLAW_PIDS_LIMIT=256"])
    cfg = config_for(tmp_path, sample)
    assert cfg["services"][INIT]["image"] == "registry.example/openclaw:test"
    for name in SERVICES:
        svc = cfg["services"][name]
        assert hardening_problems(name, svc) == [], name
        assert svc["image"] == "registry.example/openclaw:test"
        assert "ANTHROPIC_API_KEY" not in svc["environment"]   # no env_file: the proxy's
        assert svc["environment"][TOKEN_VAR] == "0123abcd"
        assert to_bytes(svc["mem_limit"]) == 768 * MIB
        assert heap_mb(svc) == int(advice["CLAW_NODE_HEAP_MB"])
        assert float(svc["cpus"]) == 0.5
        assert int(svc["pids_limit"]) == 256
        assert tmpfs_size(svc) == advice["CLAW_TMP_SIZE"]
        assert tmpfs_size(svc, "/tmp/openclaw") == advice["CLAW_LOG_SIZE"]


def test_node_options_in_env_cannot_unpin_the_heap(tmp_path):
    # environment: beats env_file, so a NODE_OPTIONS line in .env cannot drop the heap cap.
    cfg = config_for(tmp_path, "%s=x\nNODE_OPTIONS=--max-old-space-size=8192\n" % TOKEN_VAR)
    assert heap_mb(cfg["services"]["openclaw"]) == 1536


# Each mutation breaks one promise; the checks above must notice every one of them.
MUTATIONS = [
    ("read_only: true", "read_only: false"),
    ("init: true", "init: true\n    privileged: true"),
    ("      - ALL", "      - NET_RAW"),
    ("    cap_drop:", "    cap_add:\n      - NET_ADMIN\n    cap_drop:"),
    ("init: true", "init: true\n    pid: host"),
    ("      - claw-data:/home/node/.openclaw",
     "      - /var/run/docker.sock:/var/run/docker.sock\n      - claw-data:/home/node/.openclaw"),
    ("      - claw-secrets:/home/node/.config/openclaw\n", "\n"),
    ("size=${CLAW_TMP_SIZE:-64m},", ""),
    # each writable path taken away, or made root's
    ("      - /tmp:size=${CLAW_TMP_SIZE:-64m},mode=1777,nosuid,nodev\n", ""),
    ("      - /tmp/openclaw:size=${CLAW_LOG_SIZE:-64m},uid=1000,gid=1000,mode=0700,nosuid,nodev,noexec\n", ""),
    ("      - /home/node/.cache:size=32m,uid=1000,gid=1000,mode=0700,nosuid,nodev\n", ""),
    ("      - /home/node/.config:size=8m,uid=1000,gid=1000,mode=0700,nosuid,nodev\n", ""),
    ("/home/node/.cache:size=32m,uid=1000,gid=1000,", "/home/node/.cache:size=32m,"),
    ("/tmp/openclaw:size=${CLAW_LOG_SIZE:-64m},uid=1000,gid=1000,mode=0700",
     "/tmp/openclaw:size=${CLAW_LOG_SIZE:-64m},uid=1000,gid=1000,mode=1777"),
    ("      - claw-npm:/home/node/.npm\n", ""),
    ("      - claw-local:/home/node/.local\n", ""),
    ("      NODE_DISABLE_COMPILE_CACHE: \"1\"\n", ""),
    ("      OPENCLAW_STATE_DIR: /home/node/.openclaw\n", ""),
    ("    network_mode: \"service:openclaw\"\n", "    networks:\n      - claw-net\n"),
    ("    network_mode: \"service:openclaw\"\n", ""),
    ("    network_mode: none\n    entrypoint:", "    networks:\n      - claw-net\n    entrypoint:"),
    ("user: \"1000:1000\"", "user: \"0:0\""),
    ("${CLAW_NODE_HEAP_MB:-1536}", "4096"),
    ("      - no-new-privileges:true", "      - apparmor:unconfined"),
    ("max-size: 10m", "compress: \"true\""),
    ("\"127.0.0.1:18789:18789\"", "\"18789:18789\""),
    ("      - lan\n", "      - loopback\n"),
    ("      - token\n", "      - none\n"),
    ("      - http://127.0.0.1:18789/healthz", "      - http://127.0.0.1:18789/"),
    ("      - cli\n", "      - tools\n"),
    ("    stdin_open: true\n", ""),
    ("    depends_on:\n      volumes-init:\n"
     "        condition: service_completed_successfully\n", ""),
    ("      - CHOWN\n", "      - CHOWN\n      - DAC_OVERRIDE\n"),
    ("    network_mode: none\n", ""),
    ("    user: \"0:0\"\n", ""),
    ("      - \"1000:1000\"\n", "      - -R\n      - \"1000:1000\"\n"),
    ("      - /home/node/.local\n    user:", "    user:"),
]


MUTATION_IDS = [
    'root-writable', 'privileged', 'cap-drop-net-raw', 'cap-add', 'pid-host', 'docker-socket',
    'no-secrets-volume', 'tmp-unsized', 'user-root', 'heap-over-limit', 'apparmor-unconfined',
    'logs-unbounded', 'port-all-interfaces', 'bind-loopback', 'auth-none', 'healthcheck-url',
    'cli-profile', 'cli-not-interactive', 'no-depends-on', 'init-dac-override',
    'init-network', 'init-not-root', 'init-recursive',
    'no-tmp', 'no-log-tmpfs', 'no-cache-tmpfs', 'no-config-tmpfs', 'cache-root-owned',
    'logs-world-writable', 'no-npm-volume', 'no-local-volume', 'compile-cache-on',
    'no-state-dir-env', 'cli-own-network', 'cli-no-namespace', 'repair-networked',
    'init-skips-local',
]
assert len(MUTATION_IDS) == len(MUTATIONS)


@pytest.mark.parametrize("old,new", MUTATIONS, ids=MUTATION_IDS)
def test_checks_catch_a_weakened_compose_file(tmp_path, old, new):
    text = read(COMPOSE_PATH)
    assert old in text, "mutation no longer applies: %r" % old
    # The first occurrence only: the gateway's, where a setting appears in several services.
    cfg = config_for(tmp_path, installed_env(), text.replace(old, new, 1),
                     profiles=("cli", "tools"))
    problems = [p for name in SERVICES if name in cfg["services"]
                for p in hardening_problems(name, cfg["services"][name])]
    problems += init_problems(cfg["services"][INIT])
    if "openclaw-cli" not in cfg["services"]:
        problems.append("openclaw-cli missing")
    elif cfg["services"]["openclaw-cli"].get("profiles") != ["cli"]:
        problems.append("openclaw-cli profile changed")
    assert problems, "mutation %r -> %r went unnoticed" % (old, new)


@pytest.mark.parametrize("old,new", [("enable_ipv6: false", "enable_ipv6: true"),
                                     ("bridge.name: claw-cage0", "bridge.name: docker0"),
                                     ("172.30.0.0/24", "172.31.0.0/24")])
def test_network_check_catches_changes(tmp_path, old, new):
    cfg = config_for(tmp_path, installed_env(), read(COMPOSE_PATH).replace(old, new))
    assert network_problems(cfg)
