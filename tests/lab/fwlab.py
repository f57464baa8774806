"""Firewall neighbours and helpers shared by the namespace lab tests (tests/firewall) and the
end-to-end neighbour test (tests/e2e/test_e2e_neighbours.py).

  settled(save_text)     an iptables-save listing with the tables that hold nothing dropped: a
                         table with no rules, no own chains and every policy ACCEPT filters
                         nothing, exactly as an absent one (the kernel cannot unload a table
                         once something created it, so a removal or rollback leaves it empty)
  NEIGHBOURS             what other tools on a Docker host do to its firewall, each as a
                         function(run, iptables, ip6tables) where run(argv, input=None) runs a
                         command where the firewall lives (a lab namespace, or the host)
  FailingTools           a directory of wrappers for iptables*-save/-restore put first on PATH:
                         each call is passed to the real tool, except the Nth of one name,
                         which fails (exit 1) without running it - to prove the rollback call
                         by call - or runs and is followed by a given change
"""

import os
import re
import stat

_POLICY = re.compile(r"^:(\S+) (\S+)")


def settled(text):
    """save text with its empty tables (no rules, no own chains, all policies ACCEPT) left
    out, and counters and comments stripped."""
    out, table = [], []
    for line in text.splitlines():
        line = re.sub(r"\s*\[\d+:\d+\]$", "", line)
        if line.startswith("#") or not line.strip():
            continue
        table.append(line)
        if line == "COMMIT":
            body = table[1:-1]
            empty = all(_POLICY.match(l) and _POLICY.match(l).group(2) == "ACCEPT"
                        for l in body)
            if not empty:
                out += table
            table = []
    return "\n".join(out) + "\n"


# ---- neighbours --------------------------------------------------------------------------------
# Each is what the tool itself writes (from its source or a real install), with one stand-in:
# Tailscale's tailscale0 is played by `via`, the interface the LAN lies behind.

def tailscale(run, ipt, ip6t, via="lan0"):
    """tailscaled (netfilter on) started after dockerd: its ts-input and ts-forward chains,
    jumped to at INPUT 1 and FORWARD 1 (tailscale/util/linuxfw, iptables_runner.go)."""
    for tool in (ipt, ip6t):
        script = """
            ipt=%s
            for c in ts-input ts-forward; do $ipt -w -N $c 2>/dev/null || $ipt -w -F $c; done
            $ipt -w -A ts-input -i %s -j ACCEPT
            $ipt -w -A ts-forward -i %s -j MARK --set-xmark 0x40000/0xff0000
            $ipt -w -A ts-forward -m mark --mark 0x40000/0xff0000 -j ACCEPT
            $ipt -w -A ts-forward -o %s -j ACCEPT
            $ipt -w -D INPUT -j ts-input 2>/dev/null || true
            $ipt -w -I INPUT 1 -j ts-input
            $ipt -w -D FORWARD -j ts-forward 2>/dev/null || true
            $ipt -w -I FORWARD 1 -j ts-forward
        """ % (tool, via, via, via)
        run(["bash", "-euo", "pipefail", "-c", script])


def tailscale_undo(run, ipt, ip6t):
    for tool in (ipt, ip6t):
        run(["bash", "-c", """
            ipt=%s
            $ipt -w -D INPUT -j ts-input 2>/dev/null; $ipt -w -D FORWARD -j ts-forward 2>/dev/null
            for c in ts-input ts-forward; do $ipt -w -F $c 2>/dev/null; $ipt -w -X $c 2>/dev/null; done
            true""" % tool])


# ufw-docker's block in /etc/ufw/after.rules (chaifeng/ufw-docker), as `ufw reload` restores it
# with `iptables-restore -n`: it declares DOCKER-USER, so it flushes it, then RETURNs every
# private source - the container's 172.30.0.2 among them - to Docker's own ACCEPT.
UFW_DOCKER_V4 = """*filter
:ufw-user-forward - [0:0]
:ufw-docker-logging-deny - [0:0]
:DOCKER-USER - [0:0]
-A DOCKER-USER -j ufw-user-forward
-A DOCKER-USER -j RETURN -s 10.0.0.0/8
-A DOCKER-USER -j RETURN -s 172.16.0.0/12
-A DOCKER-USER -j RETURN -s 192.168.0.0/16
-A DOCKER-USER -p udp -m udp --sport 53 --dport 1024:65535 -j RETURN
-A DOCKER-USER -j ufw-docker-logging-deny -p tcp -m tcp --tcp-flags FIN,SYN,RST,ACK SYN -d 192.168.0.0/16
-A DOCKER-USER -j ufw-docker-logging-deny -p tcp -m tcp --tcp-flags FIN,SYN,RST,ACK SYN -d 10.0.0.0/8
-A DOCKER-USER -j ufw-docker-logging-deny -p tcp -m tcp --tcp-flags FIN,SYN,RST,ACK SYN -d 172.16.0.0/12
-A DOCKER-USER -j ufw-docker-logging-deny -p udp -m udp --dport 0:32767 -d 192.168.0.0/16
-A DOCKER-USER -j ufw-docker-logging-deny -p udp -m udp --dport 0:32767 -d 10.0.0.0/8
-A DOCKER-USER -j ufw-docker-logging-deny -p udp -m udp --dport 0:32767 -d 172.16.0.0/12
-A DOCKER-USER -j RETURN
-A ufw-docker-logging-deny -j DROP
COMMIT
"""
UFW_DOCKER_V6 = """*filter
:ufw-user-forward - [0:0]
:DOCKER-USER - [0:0]
-A DOCKER-USER -j ufw-user-forward
-A DOCKER-USER -j RETURN
COMMIT
"""


def ufw_docker(run, ipt, ip6t):
    """`ufw reload` with ufw-docker installed: DOCKER-USER re-declared (claw-cage's jump gone)."""
    run([ipt + "-restore", "-w", "-n"], input=UFW_DOCKER_V4)
    run([ip6t + "-restore", "-w", "-n"], input=UFW_DOCKER_V6)


def reset_script(run, ipt, ip6t):
    """A firewall reset script: FORWARD flushed, its policy ACCEPT."""
    for tool in (ipt, ip6t):
        run([tool, "-w", "-F", "FORWARD"])
        run([tool, "-w", "-P", "FORWARD", "ACCEPT"])


def nft_docker29(bridge, published, target):
    """Docker 29 with "firewall-backend": "nftables" (moby daemon/libnetwork/internal/nftables):
    tables ip/ip6 docker-bridges, a forward chain at priority filter accepting the bridge, a
    DNAT for the published port; no DOCKER-USER, nothing in iptables."""
    return """
table ip docker-bridges {
    chain filter-FORWARD {
        type filter hook forward priority filter; policy accept;
        oifname "%(br)s" ct state established,related accept
        iifname "%(br)s" accept
    }
    chain nat-PREROUTING {
        type nat hook prerouting priority dstnat; policy accept;
        tcp dport %(pub)d dnat to %(target)s
    }
}
table ip6 docker-bridges {
    chain filter-FORWARD {
        type filter hook forward priority filter; policy accept;
        oifname "%(br)s" ct state established,related accept
        iifname "%(br)s" accept
    }
}
""" % {"br": bridge, "pub": published, "target": target}


# ---- failing tools -----------------------------------------------------------------------------

WRAPPER = """#!/bin/sh
# %(name)s call counter: passes every call to the real tool except call number %(fail)d.
n=$(cat "%(dir)s/%(name)s.count" 2>/dev/null || echo 0)
n=$((n + 1))
echo "$n" > "%(dir)s/%(name)s.count"
echo "%(name)s $*" >> "%(dir)s/calls.log"
if [ "$n" -eq %(fail)d ] && [ -z '%(after)s' ]; then
    %(drain)s
    echo "%(name)s: injected failure (call $n)" >&2
    exit 1
fi
if [ "$n" -eq %(fail)d ]; then
    %(real)s "$@" && %(after)s
    exit $?
fi
exec %(real)s "$@"
"""

TOOL_NAMES = ["%s%s-%s" % (base, flavour, kind) for base in ("iptables", "ip6tables")
              for flavour in ("", "-nft", "-legacy") for kind in ("save", "restore")]


def failing_tools(directory, name, call, after=""):
    """Write wrappers for every iptables*-save/-restore into `directory`: call number `call`
    of `name` fails, or (with `after`, a shell command) runs and then does `after` - a
    neighbour changing the rules between the commit and the read-back. Returns the directory
    (to put first on PATH)."""
    os.makedirs(directory, exist_ok=True)
    for tool in TOOL_NAMES:
        real = "/usr/sbin/" + tool
        if not os.path.exists(real):
            continue
        path = os.path.join(directory, tool)
        with open(path, "w") as f:
            f.write(WRAPPER % {"name": tool, "dir": directory, "real": real,
                               "fail": call if tool == name else 0, "after": after,
                               "drain": "cat >/dev/null" if tool.endswith("restore") else ":"})
        os.chmod(path, stat.S_IRWXU | stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH)
    return directory


def calls(directory):
    try:
        with open(os.path.join(directory, "calls.log")) as f:
            return f.read().splitlines()
    except FileNotFoundError:
        return []
