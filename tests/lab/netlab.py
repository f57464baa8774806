"""A network-namespace lab that looks like a Docker host, for proving firewall rules with packets.

Nothing here touches the root namespace's network or firewall: every address, route, rule and
probe lives in namespaces the lab creates, and the lab deletes them on exit (also on failure).
Needs root, iproute2 and iptables.

Topology (names get a unique per-run prefix; `lab.host` etc. hold the real names):

    ctr  172.30.0.2  fd30::2  --\\                         /-- lan: one address in every blocked
    ctr2 172.30.0.3  fd30::3  ---[claw-cage0]-- host --+        range (TARGETS), fd00:1::5
                                  172.30.0.1 fd30::1    \\-- wan: 203.0.113.10, 2001:db8::10
                                                               (documentation ranges = "internet")

  host  the Docker host: bridge claw-cage0 (the pinned name, subnet 172.30.0.0/24), forwarding on,
        br_netfilter semantics on the bridge, and - after `lab.dockerd_start()` - the filter/nat
        chains dockerd makes: DOCKER-USER (created only if missing; with Docker <= 28.2.1's
        trailing RETURN if `docker_return=True`), `-I FORWARD -j DOCKER-USER`, FORWARD policy DROP
        with the per-bridge ACCEPT rules, and a published port (DNAT 28789 -> ctr:18789).
        Services: TCP 8080/8081 and UDP 8053 on every address, also on 127.0.0.0/8 reached
        through route_localnet (as Docker sets it for 127.0.0.1 publishing without docker-proxy),
        and UDP 8053 joined to multicast group 239.255.255.250 on the bridge.
  ctr   the claw-cage container (default route via 172.30.0.1); serves TCP 18789 (the gateway).
  ctr2  a second container on claw-net; serves TCP 8080.
  lan   every special-purpose IPv4 range the firewall blocks; TCP 8080/8081, UDP 8053.
  wan   the internet; TCP 8080/8081, UDP 8053.

API
  Lab(docker=True, docker_return=False, backend="iptables")   context manager
      docker=False: a freshly booted host, dockerd not started yet (call lab.dockerd_start()).
      backend: "iptables" (whatever is on PATH), "iptables-legacy" or "iptables-nft": which
      iptables flavour the simulated dockerd writes its chains with.
  lab.host / lab.ctr / lab.ctr2 / lab.lan / lab.wan    namespace names
  lab.exec(ns, argv, check=True, timeout=60, **popen_kw) -> CompletedProcess (text)
  lab.sh(ns, script, check=True)                     -> CompletedProcess (bash -c in ns)
  lab.dockerd_start()          what dockerd does to the filter table when it starts (idempotent,
                               like a Docker restart)
  lab.add_user_rules()         pre-existing rules of the user in DOCKER-USER, FORWARD and INPUT
  lab.save(family=4)           iptables-save of the host ns, counters and comments stripped
  lab.probe(probes, retry=())  run Probe tuples concurrently; returns {probe: bool reached};
                               probes in `retry` that failed get one slower second try
  lab.compose_dir              a directory holding the repo's deploy/docker-compose.yml
  lab.firewall(pyz, *args, **kw)  run `pyz --firewall ARGS --dir lab.compose_dir` in the host ns
  lab.run_program(argv, etc_overlay=None, user=None, timeout=120) -> CompletedProcess
                               run a command in the host ns, optionally inside a private mount
                               namespace whose /etc is an overlay (writes land in etc_overlay,
                               the real /etc stays untouched), optionally as another uid.
  Probe(name, src, proto, addr, port)     proto: "tcp" | "udp" | "udp-bcast"
  blocked_probes(lab) / open_probes(lab)  the standard matrix rows (see TARGETS)
  netlab                 pytest fixture (function scope): `from netlab import netlab` in a test
                         module, then take `netlab` as an argument.
"""

import collections
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

from lab.namespaces import Namespaces

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PY = sys.executable
BRIDGE = "claw-cage0"
SUBNET = "172.30.0.0/24"
TCP_PORT, TCP_OTHER, UDP_PORT, GATEWAY_PORT, PUBLISHED = 8080, 8081, 8053, 18789, 28789
MCAST_GROUP = "239.255.255.250"

# One address inside every special-purpose range the firewall blocks, held by the lan namespace.
# (range, address, why it matters). 127/8, 224/4 and 255.255.255.255 are proven against the host
# itself (INPUT), since a router never forwards them: see HOST_TARGETS.
TARGETS = [
    ("0.0.0.0/8", "0.1.2.3", "'this network'"),
    ("10.0.0.0/8", "10.1.2.3", "RFC 1918"),
    ("100.64.0.0/10", "100.100.100.100", "CGNAT / Tailscale (MagicDNS)"),
    ("169.254.0.0/16", "169.254.169.254", "link-local, cloud metadata"),
    ("172.16.0.0/12", "172.17.0.2", "RFC 1918 (other Docker networks)"),
    ("192.0.0.0/24", "192.0.0.9", "IETF protocol assignments"),
    ("192.168.0.0/16", "192.168.1.1", "RFC 1918 (home router)"),
    ("198.18.0.0/15", "198.18.0.1", "benchmarking"),
    ("240.0.0.0/4", "240.0.0.1", "reserved"),
]
LAN_V6 = "fd00:1::5"          # ULA (fc00::/7)
WAN_V4, WAN_V6 = "203.0.113.10", "2001:db8::10"
HOST_LAN_SIDE, HOST_WAN_SIDE = "10.255.0.1", "198.51.100.1"

Probe = collections.namedtuple("Probe", "name src proto addr port")


def blocked_probes(lab):
    """Rows the firewall must block, each of which reaches its target without the rules."""
    rows = []
    for rng, addr, why in TARGETS:
        rows.append(Probe("%s %s tcp (%s)" % (rng, addr, why), lab.ctr, "tcp", addr, TCP_PORT))
        rows.append(Probe("%s %s udp (%s)" % (rng, addr, why), lab.ctr, "udp", addr, UDP_PORT))
    rows += [
        Probe("host via gateway 172.30.0.1 tcp", lab.ctr, "tcp", "172.30.0.1", TCP_PORT),
        Probe("host via gateway 172.30.0.1 udp", lab.ctr, "udp", "172.30.0.1", UDP_PORT),
        Probe("host LAN-side address %s tcp" % HOST_LAN_SIDE, lab.ctr, "tcp", HOST_LAN_SIDE,
              TCP_PORT),
        Probe("host loopback 127.0.0.1 tcp (route_localnet)", lab.ctr, "tcp", "127.0.0.1",
              TCP_PORT),
        Probe("host multicast %s udp" % MCAST_GROUP, lab.ctr, "udp", MCAST_GROUP, UDP_PORT),
        Probe("host broadcast 255.255.255.255 udp", lab.ctr, "udp-bcast", "255.255.255.255",
              UDP_PORT),
        Probe("IPv6 ULA %s tcp" % LAN_V6, lab.ctr, "tcp", LAN_V6, TCP_PORT),
        Probe("IPv6 ULA %s udp" % LAN_V6, lab.ctr, "udp", LAN_V6, UDP_PORT),
        Probe("IPv6 internet %s tcp" % WAN_V6, lab.ctr, "tcp", WAN_V6, TCP_PORT),
        Probe("IPv6 host fd30::1 tcp", lab.ctr, "tcp", "fd30::1", TCP_PORT),
        Probe("IPv6 host fd30::1 udp", lab.ctr, "udp", "fd30::1", UDP_PORT),
    ]
    return rows


def open_probes(lab):
    """Rows that must stay reachable with the rules in place (default profile)."""
    return [
        Probe("internet %s tcp" % WAN_V4, lab.ctr, "tcp", WAN_V4, TCP_PORT),
        Probe("internet %s udp" % WAN_V4, lab.ctr, "udp", WAN_V4, UDP_PORT),
        Probe("other container 172.30.0.3 tcp (claw-net)", lab.ctr, "tcp", "172.30.0.3",
              TCP_PORT),
        Probe("host -> container 172.30.0.2:%d (docker-proxy path)" % GATEWAY_PORT, lab.host,
              "tcp", "172.30.0.2", GATEWAY_PORT),
        Probe("lan -> published port %s:%d (DNAT)" % (HOST_LAN_SIDE, PUBLISHED), lab.lan,
              "tcp", HOST_LAN_SIDE, PUBLISHED),
    ]


# -- helper programs run inside namespaces (plain python3, stdlib) -----------------------------

SERVER = r'''
import socket, struct, sys, threading
tcp, udp, groups = sys.argv[1].split(","), sys.argv[2].split(","), sys.argv[4:]
# UDP replies must leave from the address the probe was sent to (or conntrack sees a stranger):
# bind each of the namespace's addresses when they are given, else the wildcard.
udp_addrs = [a for a in sys.argv[3].split(",") if a]
def tcp_serve(s):
    while True:
        c, _ = s.accept()
        try: c.sendall(b"ok\n")
        except OSError: pass
        c.close()
def udp_serve(s):
    while True:
        data, peer = s.recvfrom(2048)
        try: s.sendto(b"ok:" + data, peer)
        except OSError: pass
binds = []
for fam, host in ((socket.AF_INET, "0.0.0.0"), (socket.AF_INET6, "::")):
    binds += [(fam, host, socket.SOCK_STREAM, p, tcp_serve) for p in tcp]
    hosts = [a for a in udp_addrs if (":" in a) == (fam == socket.AF_INET6)] or [host]
    binds += [(fam, h, socket.SOCK_DGRAM, p, udp_serve) for h in hosts for p in udp]
for fam, host, kind, p, fn in binds:
    if not p: continue
    s = socket.socket(fam, kind)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if fam == socket.AF_INET6: s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    s.bind((host, int(p)))
    if kind == socket.SOCK_STREAM: s.listen(64)
    if kind == socket.SOCK_DGRAM and fam == socket.AF_INET:
        for g in groups:
            grp, ifaddr = g.split("@")
            s.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP,
                         socket.inet_aton(grp) + socket.inet_aton(ifaddr))
    threading.Thread(target=fn, args=(s,), daemon=True).start()
print("ready", flush=True)
sys.stdin.read()
'''

# Every probe of one batch runs at once, each bounded by the same deadline.
PROBER = r'''
import json, select, socket, sys, time
probes, timeout = json.loads(sys.argv[1]), float(sys.argv[2])
deadline = time.monotonic() + timeout
state = {}
for i, (proto, addr, port) in enumerate(probes):
    fam = socket.AF_INET6 if ":" in addr else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM)
    s.setblocking(False)
    try:
        if proto == "tcp":
            s.connect_ex((addr, port))
        else:
            if proto == "udp-bcast": s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
            if addr.startswith(("224.", "239.")):
                s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 1)
            s.sendto(b"probe", (addr, port))
        state[s] = (i, proto)
    except OSError:
        s.close()
result = [False] * len(probes)
while state and time.monotonic() < deadline:
    socks = list(state)
    r, w, _ = select.select([s for s in socks if state[s][1] != "tcp"],
                            [s for s in socks if state[s][1] == "tcp"], [],
                            max(0.0, deadline - time.monotonic()))
    for s in set(r) | set(w):
        i, proto = state.pop(s)
        try:
            if proto == "tcp":
                result[i] = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0
            else:
                result[i] = s.recvfrom(2048)[0].startswith(b"ok:")
        except OSError:
            result[i] = False
        s.close()
print(json.dumps(result))
'''


class Lab(Namespaces):
    def __init__(self, docker=True, docker_return=False, backend="iptables", timeout=1.5):
        super().__init__("ccfw")
        self.prefix = self.tag
        self.host, self.ctr, self.ctr2 = self.prefix + "-host", self.prefix + "-ctr", self.prefix + "-ctr2"
        self.lan, self.wan = self.prefix + "-lan", self.prefix + "-wan"
        self.namespaces = [self.host, self.ctr, self.ctr2, self.lan, self.wan]
        self.docker, self.docker_return, self.backend = docker, docker_return, backend
        self.ip6tables = backend.replace("iptables", "ip6tables")
        self.timeout = timeout
        self.compose_dir = os.path.join(self.tmp, "claw-cage")

    # -- running things --------------------------------------------------------------------
    def run_program(self, argv, etc_overlay=None, user=None, timeout=120, input=None):
        """Run argv in the host ns. etc_overlay: a directory; /etc is then an overlay whose
        writes land in etc_overlay/upper, inside a private mount namespace (the real /etc and
        every other process are untouched); for --firewall, /usr/local/lib and /run too (in
        etc_overlay/<name>/upper): a profile that installs the egress proxy writes in all three.
        The lab's namespace is entered first: /run/netns seen through an overlay of /run is no
        longer a namespace (so --verify, whose test mode enters namespaces, keeps the real
        /run). user: run as this uid (and gid) instead of root."""
        inner = list(argv)
        if user is not None:
            inner = ["setpriv", "--reuid=%d" % user, "--regid=%d" % user, "--clear-groups"] + inner
        if etc_overlay:
            mounts = []
            tops = [("/etc", "")] + ([("/usr/local/lib", "usr_local_lib"), ("/run", "run")]
                                     if "--firewall" in argv else [])
            for top, sub in tops:
                upper, work = (os.path.join(etc_overlay, sub, d) for d in ("upper", "work"))
                os.makedirs(upper, exist_ok=True)
                os.makedirs(work, exist_ok=True)
                mounts.append("mount -t overlay overlay -o lowerdir=%s,upperdir=%s,workdir=%s %s"
                              % (top, upper, work, top))
            mount = "mount --make-rprivate / && %s && exec \"$@\"" % " && ".join(mounts)
            inner = ["unshare", "-m", "sh", "-c", mount, "sh"] + inner
        inner = ["ip", "netns", "exec", self.host] + inner
        return subprocess.run(inner, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              universal_newlines=True, timeout=timeout, input=input)

    def firewall(self, pyz, *args, **kw):
        """Run the built program's --firewall in the host ns, reading the lab's compose file
        (unless args name a --dir or --remove). kw: as run_program. A profile that installs
        the egress proxy (local-only, api-only) runs with overlays, never on the real host."""
        argv = [PY, pyz, "--firewall"] + list(args)
        if "--dir" not in args and "--remove" not in args:
            argv += ["--dir", self.compose_dir]
        if "local-only" in args or "api-only" in args:
            kw.setdefault("etc_overlay", tempfile.mkdtemp(dir=self.tmp, prefix="overlay-"))
        return self.run_program(argv, **kw)

    def save(self, family=4):
        """iptables-save of the host ns: every table, counters and comment lines stripped."""
        tool = (self.backend if family == 4 else self.ip6tables) + "-save"
        text = self.exec(self.host, [tool]).stdout
        lines = [re.sub(r"\s*\[\d+:\d+\]$", "", l) for l in text.splitlines()
                 if not l.startswith("#")]
        return "\n".join(lines) + "\n"

    def probe(self, probes, timeout=None, retry=()):
        """Run each Probe from its source namespace; all at once. {probe: reached?}
        retry: probes that SHOULD be reached; those that were not get one more try with a
        longer timeout (a loaded CI machine can be slow; a block never turns into a reach)."""
        result = self._probe_once(probes, timeout)
        again = [p for p in retry if p in result and not result[p]]
        if again:
            result.update(self._probe_once(again, 4 * (timeout or self.timeout)))
        return result

    def _probe_once(self, probes, timeout):
        by_src = collections.OrderedDict()
        for p in probes:
            by_src.setdefault(p.src, []).append(p)
        procs = []
        for src, group in by_src.items():
            spec = json.dumps([[p.proto, p.addr, p.port] for p in group])
            procs.append((group, subprocess.Popen(
                ["ip", "netns", "exec", src, PY, "-c", PROBER, spec, str(timeout or self.timeout)],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True)))
        result = {}
        for group, proc in procs:
            out, err = proc.communicate(timeout=30)
            if proc.returncode != 0:
                raise AssertionError("prober failed: %s" % err)
            result.update(zip(group, json.loads(out)))
        return result

    # -- Docker's part ---------------------------------------------------------------------
    def dockerd_start(self):
        """What dockerd does to the filter table when it (re)starts: DOCKER-USER created only if
        missing (and, up to 28.2.1, `-A DOCKER-USER -j RETURN` unless present), `-I FORWARD -j
        DOCKER-USER` ensured at
        position 1, its own chains and per-bridge rules; nat DNAT for the published port."""
        for ipt in (self.backend, self.ip6tables):
            self.sh(self.host, """
                ipt=%(ipt)s
                $ipt -w -S DOCKER-USER >/dev/null 2>&1 || $ipt -w -N DOCKER-USER
                if [ %(ret)s = 1 ]; then   # Docker <= 28.2.1: AddReturnRule, if absent
                    $ipt -w -C DOCKER-USER -j RETURN 2>/dev/null || $ipt -w -A DOCKER-USER -j RETURN
                fi
                $ipt -w -D FORWARD -j DOCKER-USER 2>/dev/null || true
                $ipt -w -I FORWARD -j DOCKER-USER
                $ipt -w -S DOCKER >/dev/null 2>&1 || {
                    $ipt -w -N DOCKER
                    $ipt -w -P FORWARD DROP
                    $ipt -w -A FORWARD -o %(br)s -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
                    $ipt -w -A FORWARD -o %(br)s -j DOCKER
                    $ipt -w -A FORWARD -i %(br)s ! -o %(br)s -j ACCEPT
                    $ipt -w -A FORWARD -i %(br)s -o %(br)s -j ACCEPT
                }
            """ % {"ipt": ipt, "ret": int(self.docker_return), "br": BRIDGE})
        self.sh(self.host, """
            ipt=%(ipt)s
            $ipt -w -C DOCKER -d 172.30.0.2/32 ! -i %(br)s -o %(br)s -p tcp --dport %(gw)d -j ACCEPT 2>/dev/null ||
              $ipt -w -A DOCKER -d 172.30.0.2/32 ! -i %(br)s -o %(br)s -p tcp --dport %(gw)d -j ACCEPT
            $ipt -w -t nat -C PREROUTING -p tcp --dport %(pub)d -j DNAT --to-destination 172.30.0.2:%(gw)d 2>/dev/null ||
              $ipt -w -t nat -A PREROUTING -p tcp --dport %(pub)d -j DNAT --to-destination 172.30.0.2:%(gw)d
        """ % {"ipt": self.backend, "br": BRIDGE, "gw": GATEWAY_PORT, "pub": PUBLISHED})

    def add_user_rules(self):
        """Rules a user already had: they must survive --firewall and --remove untouched."""
        for ipt in (self.backend, self.ip6tables):
            self.sh(self.host, """
                ipt=%s
                $ipt -w -S DOCKER-USER >/dev/null 2>&1 || $ipt -w -N DOCKER-USER
                $ipt -w -I DOCKER-USER 1 -i lan0 -p tcp --dport 9999 -j DROP
                $ipt -w -A INPUT -p tcp --dport 2222 -j ACCEPT
                $ipt -w -I INPUT 1 -i lan0 -p udp --dport 9999 -j DROP
            """ % ipt)

    # -- building the lab ------------------------------------------------------------------
    def _build(self):
        for ns in self.namespaces:
            self.add(ns)
        h, c, c2, lan, wan = self.host, self.ctr, self.ctr2, self.lan, self.wan
        # host: bridge, forwarding, bridged traffic through iptables (Docker loads br_netfilter)
        self.sh(h, """
            ip link set lo up
            sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1
            ip link add %(br)s type bridge
            ip addr add 172.30.0.1/24 dev %(br)s
            ip addr add fd30::1/64 dev %(br)s nodad
            ip link set %(br)s up
            sysctl -qw net.ipv4.conf.%(br)s.route_localnet=1
            if [ -e /proc/sys/net/bridge/bridge-nf-call-iptables ]; then
                sysctl -qw net.bridge.bridge-nf-call-iptables=1 net.bridge.bridge-nf-call-ip6tables=1
            fi
        """ % {"br": BRIDGE})
        for ns, addr, v6 in ((c, "172.30.0.2", "fd30::2"), (c2, "172.30.0.3", "fd30::3")):
            port = "v" + ns[-4:].replace("-", "")
            self.sh(h, """
                ip link add %(port)s type veth peer name eth0 netns %(ns)s
                ip link set %(port)s master %(br)s up
            """ % {"port": port, "ns": ns, "br": BRIDGE})
            self.sh(ns, """
                ip link set lo up
                ip addr add %(addr)s/24 dev eth0
                ip addr add %(v6)s/64 dev eth0 nodad
                ip link set eth0 up
                ip route add default via 172.30.0.1
                ip -6 route add default via fd30::1
                # to prove the host's 127/8 is out of reach: let 127.0.0.1 leave through eth0
                sysctl -qw net.ipv4.conf.eth0.route_localnet=1 net.ipv4.conf.all.route_localnet=1
            """ % {"addr": addr, "v6": v6})
        # the container's own loopback keeps 127.0.0.1 only for lo-bound traffic; 127.0.0.1 as
        # a destination is routed to the host (table 100, chosen before the local table)
        self.sh(c, """
            ip rule add pref 100 lookup local
            ip rule del pref 0
            ip rule add to 127.0.0.1 iif lo lookup 100 pref 10
            ip route add 127.0.0.1/32 via 172.30.0.1 dev eth0 table 100 src 172.30.0.2
        """)
        # lan: one address per blocked range; wan: documentation ranges
        self.sh(h, """
            ip link add lan0 type veth peer name up0 netns %(lan)s
            ip addr add %(hl)s/30 dev lan0
            ip addr add fd00:ffff::1/64 dev lan0 nodad
            ip link set lan0 up
            ip link add wan0 type veth peer name up0 netns %(wan)s
            ip addr add %(hw)s/30 dev wan0
            ip addr add 2001:db8:ffff::1/64 dev wan0 nodad
            ip link set wan0 up
        """ % {"lan": lan, "wan": wan, "hl": HOST_LAN_SIDE, "hw": HOST_WAN_SIDE})
        lan_addrs = "\n".join("ip addr add %s/32 dev lo" % a for _, a, _ in TARGETS)
        lan_routes = "\n".join("ip route add %s dev lan0 via 10.255.0.2" % r
                               for r, _, _ in TARGETS if r != "10.0.0.0/8")
        self.sh(lan, """
            ip link set lo up
            ip addr add 10.255.0.2/30 dev up0
            ip addr add fd00:ffff::2/64 dev up0 nodad
            ip addr add %(v6)s/128 dev lo
            ip link set up0 up
            %(addrs)s
            ip route add default via %(hl)s
            ip -6 route add default via fd00:ffff::1
        """ % {"addrs": lan_addrs, "hl": HOST_LAN_SIDE, "v6": LAN_V6})
        self.sh(wan, """
            ip link set lo up
            ip addr add 198.51.100.2/30 dev up0
            ip addr add 2001:db8:ffff::2/64 dev up0 nodad
            ip addr add %(v4)s/32 dev lo
            ip addr add %(v6)s/128 dev lo
            ip link set up0 up
            ip route add default via %(hw)s
            ip -6 route add default via 2001:db8:ffff::1
        """ % {"v4": WAN_V4, "v6": WAN_V6, "hw": HOST_WAN_SIDE})
        self.sh(h, """
            ip route add 10.0.0.0/8 via 10.255.0.2
            %(routes)s
            ip -6 route add %(lan6)s via fd00:ffff::2
            ip route add %(wan)s via 198.51.100.2
            ip -6 route add %(wan6)s via 2001:db8:ffff::2
        """ % {"routes": lan_routes, "lan6": LAN_V6, "wan": WAN_V4, "wan6": WAN_V6})
        tcp = "%d,%d" % (TCP_PORT, TCP_OTHER)
        self._serve(h, tcp, str(UDP_PORT), groups=["%s@172.30.0.1" % MCAST_GROUP])
        self._serve(c, str(GATEWAY_PORT), "")
        self._serve(c2, str(TCP_PORT), "")
        self._serve(lan, tcp, str(UDP_PORT), [a for _, a, _ in TARGETS] + [LAN_V6])
        self._serve(wan, tcp, str(UDP_PORT), [WAN_V4, WAN_V6])
        os.makedirs(self.compose_dir)
        shutil.copy(os.path.join(ROOT, "deploy", "docker-compose.yml"), self.compose_dir)
        if self.docker:
            self.dockerd_start()

    def _serve(self, ns, tcp, udp, udp_addrs=(), groups=()):
        self.serve(ns, [PY, "-c", SERVER, tcp, udp, ",".join(udp_addrs)] + list(groups))


def lab_skip_reason():
    """Why the lab cannot run here, or None."""
    if os.geteuid() != 0:
        return "the namespace lab needs root"
    for tool in ("ip", "iptables", "ip6tables", "unshare", "setpriv"):
        if not shutil.which(tool):
            return "the namespace lab needs %s" % tool
    return None


def require_lab():
    """Fail (on CI) or skip loudly (elsewhere) when the namespace lab cannot run here."""
    from conftest import require_root
    require_root("network-namespace firewall lab")
    reason = lab_skip_reason()
    if reason:
        import pytest
        pytest.fail(reason)


def ok(proc):
    """proc, after asserting it exited 0 (with its output in the message when not)."""
    assert proc.returncode == 0, "exit %d\nstdout: %s\nstderr: %s" % (
        proc.returncode, proc.stdout, proc.stderr)
    return proc


def wait_until(fn, timeout=5.0, step=0.05):
    end = time.monotonic() + timeout
    while True:
        if fn() or time.monotonic() > end:
            return fn()
        time.sleep(step)


try:
    import pytest
except ImportError:  # netlab also works as a plain module (tests/bench/bench_firewall.py)
    pytest = None

if pytest is not None:
    @pytest.fixture
    def netlab():
        """A fresh lab with dockerd's chains in place; deleted after the test, pass or fail."""
        require_lab()
        with Lab() as lab:
            yield lab
