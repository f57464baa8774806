"""The deployment the end-to-end tests on the real Docker engine run against, and its fixtures.

  standin   (fixture, module) the stand-in image of OpenClaw, built once (e2e_support.StandIn)
  stack     (fixture, module) a Stack: installed as a user does (the piped one-liner from the
            repo's deploy/), the stand-in tagged as the compose file's image, a LAN and a WAN
            peer in namespaces of their own, the egress guard, `--firewall --no-persist`, then
            `docker compose up`; everything undone afterwards, and iptables must then equal
            what it was before (a failure otherwise)
  Stack     the deployment: the program run from its installed copy with a private /etc,
            compose, the running gateway, probes from inside it
  LEFT_BY_DESIGN   what `--firewall --remove` rightly leaves in iptables-save

A test module uses it with `from lab.stack import stack, standin`.
"""

import json
import os
import re
import shutil
import subprocess

import pytest

from conftest import ROOT, PYTHON, require_docker, run_file
from lab import e2e_support as e2e
from lab.e2e_support import GATEWAY_PORT, PEER_PORT, PROBE_MS, WAN_CANDIDATES, sh

LAN_CANDIDATES = ["10.231.%d.0/24" % i for i in range(7, 15)] + \
                 ["192.168.231.0/24", "192.168.232.0/24"]
HEALTHY_WITHIN = 120   # seconds; the compose healthcheck runs every 30 s


class Stack:
    """The deployment under test and the lab around it. Methods change state on purpose and
    say so in their names."""

    def __init__(self, pyz, home, cleanup):
        self.pyz, self.cleanup = pyz, cleanup
        self.dir = os.path.join(home, "claw-cage")
        # the repo's deploy/, copied once: every install of the run sees the same files
        self.source = os.path.join(home, "source")
        shutil.copytree(os.path.join(ROOT, "deploy"), self.source)
        self.etc = os.path.join(home, "etc-overlay")
        os.makedirs(os.path.join(self.etc, "upper"))
        os.makedirs(os.path.join(self.etc, "work"))
        self.fw_lines = []
        self.image = None

    # -- the program, run as users run it --
    def install(self):
        """The one-liner: `cat claw-cage.pyz | python3 - --dir D --source <local deploy/>`."""
        return run_file(self.pyz, ["--dir", self.dir, "--source", self.source],
                        how="pipe", timeout=120)

    def program(self, *args, timeout=120, env=None):
        """`sudo python3 <dir>/claw-cage.pyz ARGS`: the copy the installer saved. Run in a
        private mount namespace whose /etc is an overlay kept in the scratch directory: the
        firewall's boot persistence (/etc/claw-cage, a systemd unit) lands there, is seen by
        every later run, and the machine's real /etc never changes. Nothing else differs: the
        same iptables, the same dockerd."""
        upper, work = os.path.join(self.etc, "upper"), os.path.join(self.etc, "work")
        mount = ("mount --make-rprivate / && mount -t overlay overlay -o "
                 "lowerdir=/etc,upperdir=%s,workdir=%s /etc && exec \"$@\"" % (upper, work))
        argv = ["unshare", "-m", "sh", "-c", mount, "sh", PYTHON,
                os.path.join(self.dir, "claw-cage.pyz")] + list(args)
        full_env = dict(os.environ)
        for name in ("CLAW_CAGE_DIR", "CLAW_CAGE_SOURCE", "CLAW_CAGE_INTERNET_PROBE"):
            full_env.pop(name, None)
        full_env.update(env or {})
        return subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, env=full_env, cwd=self.dir,
                              timeout=timeout)

    def etc_files(self):
        """What claw-cage wrote into the private /etc (relative paths)."""
        upper = os.path.join(self.etc, "upper")
        return sorted(os.path.relpath(os.path.join(d, f), upper)
                      for d, _, files in os.walk(upper) for f in files)

    def firewall_on(self, persist=False):
        res = self.program("--firewall", "--dir", self.dir,
                           *([] if persist else ["--no-persist"]))
        assert res.returncode == 0, "--firewall failed:\n%s%s" % (
            res.stdout.decode(), res.stderr.decode())
        return res

    def firewall_off(self):
        res = self.program("--firewall", "--remove", "--dir", self.dir)
        assert res.returncode == 0, "--firewall --remove failed:\n%s%s" % (
            res.stdout.decode(), res.stderr.decode())
        return res

    def verify(self, *extra):
        # The internet probe aims at the WAN peer (a namespace of ours), never the real
        # api.anthropic.com: the host would otherwise resolve and dial it.
        env = {"CLAW_CAGE_INTERNET_PROBE": "%s:%d" % (self.wan.addr, self.wan.port)}
        return self.program("--verify", "--dir", self.dir, *extra, env=env, timeout=60)

    def compose(self, *args, timeout=180, check=True):
        return sh(["docker", "compose"] + list(args), cwd=self.dir, timeout=timeout,
                  check=check)

    def up(self):
        self.compose("up", "-d", "--pull", "never")
        self.wait_healthy()

    def ensure_up(self):
        """Each test starts from a running stack, even if an earlier one stopped it and failed."""
        if not self.container_id():
            self.up()

    # -- the running gateway --
    def container_id(self):
        return e2e.gateway_container()

    def inspect(self):
        cid = self.container_id()
        assert cid, "the openclaw container is not running"
        return e2e.docker_json(["inspect", cid])[0]

    def wait_healthy(self):
        def healthy():
            cid = self.container_id()
            if not cid:
                return None
            state = e2e.docker_json(["inspect", cid])[0]["State"]
            return (state.get("Health") or {}).get("Status") == "healthy"
        ok = e2e.wait_for(healthy, HEALTHY_WITHIN, interval=1)
        if not ok:
            logs = self.compose("logs", "--no-color", "--tail", "30", check=False)
            ps = self.compose("ps", "-a", check=False)
            raise AssertionError("the gateway is not healthy within %ds\n%s\n%s%s" % (
                HEALTHY_WITHIN, ps.stdout, logs.stdout, logs.stderr))

    def reach(self, mode, *args):
        """Run one PROBE PROTOCOL probe inside the running gateway container: True iff exit 0."""
        cid = self.container_id()
        assert cid, "the gateway container is not running: a probe from it cannot run"
        res = sh(["docker", "exec", cid, "node", "-e", self.probe_js, mode]
                 + [str(a) for a in args] + [str(PROBE_MS)], check=False, timeout=30)
        # exit 1 is "not reached" only when the probe itself said so, not docker exec
        assert res.returncode in (0, 1) and "Error response from daemon" not in res.stderr, \
            "probe %s %s could not run: %s" % (mode, args, res.stderr.strip())
        return res.returncode == 0

    def matrix(self):
        """{target: reached?} from inside the container; the rows the issue asks for."""
        bridge_gw = self.bridge_gateway()
        return {
            "LAN host http": self.reach("http", "http://%s:%d/" % (self.lan.addr, self.lan.port)),
            "LAN host tcp": self.reach("tcp", self.lan.addr, self.lan.port),
            "WAN host http": self.reach("http", "http://%s:%d/" % (self.wan.addr, self.wan.port)),
            "host service via bridge %s" % bridge_gw:
                self.reach("tcp", bridge_gw, self.host_svc_bridge.port),
            "host service via its LAN address %s" % self.lan.host_addr:
                self.reach("tcp", self.lan.host_addr, self.host_svc_lan.port),
        }

    def bridge_gateway(self):
        """The host's address on the claw-cage bridge (where the container meets the host)."""
        out = sh(["ip", "-4", "-o", "addr", "show", "dev", e2e.BRIDGE]).stdout
        m = re.search(r"inet (\d+\.\d+\.\d+\.\d+)/", out)
        assert m, "no IPv4 address on %s: %s" % (e2e.BRIDGE, out)
        return m.group(1)

    def network_name(self):
        nets = self.inspect()["NetworkSettings"]["Networks"]
        names = [n for n in nets if n.endswith("_claw-net")]
        assert len(names) == 1, "gateway networks: %s" % list(nets)
        return names[0]


# What `--firewall` may create and `--firewall --remove` rightly leaves: DOCKER-USER, made when
# Docker had none (dockerd adopts an existing one, so once made it may be Docker's), and the
# built-in chains of a table that iptables-nft instantiates on first use (mangle's too: the
# cage's first anchor lives there).
LEFT_BY_DESIGN = re.compile(r"^:(DOCKER-USER -|(PRE|POST)ROUTING ACCEPT|INPUT ACCEPT|"
                            r"FORWARD ACCEPT|OUTPUT ACCEPT) ")


def remove_firewall_leftovers(stack):
    """After `--firewall --remove`: delete what `--firewall` added (recorded when it ran) and
    is still there, so the machine ends as it began. Rules left behind are an error; chains
    are deleted only when empty and unreferenced (iptables -X refuses otherwise), built-in
    chains never."""
    left = []
    for tool, table, line in stack.fw_lines:
        if line not in e2e.snapshot_rules().get(tool, []):
            continue
        if not LEFT_BY_DESIGN.match(line):
            left.append(line)
        ipt = "iptables" if tool == "iptables-save" else "ip6tables"
        if line.startswith("-A "):
            sh([ipt, "-w", "10", "-t", table, "-D"] + line[3:].split(), check=False)
    for tool, table, line in stack.fw_lines:
        if line.startswith(":") and line.split()[1] == "-":
            ipt = "iptables" if tool == "iptables-save" else "ip6tables"
            sh([ipt, "-w", "10", "-t", table, "-X", line[1:].split()[0]], check=False)
    if left:
        raise AssertionError("--firewall --remove left rules behind: %s" % left)


@pytest.fixture(scope="module")
def standin():
    """The stand-in image, built once for the module; its build tag removed afterwards."""
    require_docker("the e2e tests build and run a stand-in image on the real Docker engine")
    cleanup = e2e.Cleanup()
    image = e2e.StandIn(cleanup)
    try:
        image.build()
        yield image
    finally:
        errors = cleanup.run()
        if errors:
            pytest.fail("stand-in cleanup: %s" % "; ".join(errors))


@pytest.fixture(scope="module")
def stack(pyz, standin, tmp_path_factory):
    with e2e.deployment("the e2e test runs --firewall (iptables) and creates network namespaces",
                        "the e2e test runs the stack on the real Docker engine",
                        GATEWAY_PORT, rules=True) as cleanup:
        standin.cleanup = cleanup    # tags made for this stack go with it
        st = Stack(pyz, str(tmp_path_factory.mktemp("home")), cleanup)
        st.probe_js = e2e.probe_js()
        # 1. install, as a user does
        res = st.install()
        assert res.returncode == 0, "install failed:\n%s%s" % (res.stdout.decode(),
                                                               res.stderr.decode())
        # 2. the stand-in image under the name the compose file runs
        cfg = json.loads(st.compose("config", "--format", "json").stdout)
        ref = cfg["services"]["openclaw"]["image"]
        repo, tag, digest = e2e.split_image_ref(ref)
        name = "%s:%s" % (repo, tag or "latest")
        if digest:
            e2e.set_env_var(os.path.join(st.dir, ".env"), "OPENCLAW_IMAGE", name)
        standin.tag_as(name)
        cfg = json.loads(st.compose("config", "--format", "json").stdout)
        st.image = cfg["services"]["openclaw"]["image"]
        assert st.image == name, "compose would run %s, not the stand-in %s" % (st.image, name)
        st.image_ref_shipped = ref
        # 3. the lab: a LAN host, a WAN host, the egress guard
        used = e2e.used_ipv4_networks()
        lan_net = e2e.pick_subnet(LAN_CANDIDATES, used)
        wan_net = e2e.pick_subnet(WAN_CANDIDATES, used)
        st.lan = e2e.Peer(cleanup, "lan", lan_net, PEER_PORT, PYTHON)
        st.wan = e2e.Peer(cleanup, "wan", wan_net, PEER_PORT, PYTHON)
        st.lan.serve_dns(cleanup, st.wan.addr, PYTHON)
        lan_nets = e2e.connected_networks({st.lan.host_if, st.wan.host_if, e2e.BRIDGE})
        e2e.EgressGuard(cleanup, [lan_net, wan_net], lan_nets)
        # 4. the firewall, before the stack (the quick start's order)
        before_fw = e2e.snapshot_rules()
        cleanup.push("firewall --remove", firewall_cleanup, st)
        res = st.program("--firewall", "--no-persist", "--dir", st.dir)
        st.fw_lines = e2e.added_lines(before_fw, e2e.snapshot_rules())
        assert res.returncode == 0, "--firewall failed:\n%s%s" % (res.stdout.decode(),
                                                                  res.stderr.decode())
        assert st.fw_lines, "--firewall exited 0 but added no rule"
        # 5. the stack
        cleanup.push("docker compose down -v", st.compose, "down", "-v", "--remove-orphans",
                     "--timeout", "5", timeout=120)
        st.up()
        st.host_svc_bridge = e2e.HostService(cleanup, st.bridge_gateway())
        st.host_svc_lan = e2e.HostService(cleanup, st.lan.host_addr)
        yield st


def firewall_cleanup(st):
    """`--firewall --remove` when claw-cage rules are in place, then the last-resort sweep."""
    present = set(sum(e2e.snapshot_rules().values(), []))
    try:
        if any(line in present for _, _, line in st.fw_lines):
            st.firewall_off()
    finally:
        remove_firewall_leftovers(st)
