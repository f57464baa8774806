"""Packet probes run from the claw-cage network, and the one script that implements them.

The exact command --verify runs for each probe (one throwaway container per probe, all in
parallel; the e2e stand-in image matches this shape):

    docker run --rm --pull never --network <project>_claw-net --user 1000:1000 \
        --cap-drop ALL --read-only --security-opt no-new-privileges \
        --entrypoint node <gateway image id> -e <PROBE_JS> <mode> <args...>

PROBE PROTOCOL (shared with the compose healthcheck and the e2e stand-in image):

    node -e PROBE_JS http URL TIMEOUT_MS        exit 0 iff an HTTP GET answers 2xx
    node -e PROBE_JS tcp HOST PORT TIMEOUT_MS   exit 0 iff a TCP connection opens
    node -e PROBE_JS dns NAME TIMEOUT_MS        exit 0 iff the name resolves

On failure the script writes one short reason on stderr (an error code such as ETIMEDOUT or
ECONNREFUSED, or "HTTP 503"): never a URL, header or body, so nothing secret can leak.
The image's own `node` runs it because the real OpenClaw image may have no curl.

Test mode: with CLAW_CAGE_PROBE_NETNS=NAME, the same PROBE_JS runs with the host's `node`
inside network namespace NAME (`ip netns exec NAME node -e ...`) instead of in a container.
The namespace lab of the test suite uses it: it has no Docker, but it has a "container"
namespace on the claw-cage bridge. Everything else (targets, verdicts, timeouts) is unchanged.
"""

import os
import re

from . import runner

# Node >= 18: fetch, net and dns are built in. A hard timer guarantees the process ends even if
# a socket never settles, so a probe can never outlive its budget.
PROBE_JS = r"""
const [mode, a, b, c] = process.argv.slice(1);
const ms = (v) => { const n = parseInt(v, 10); return n > 0 && n <= 60000 ? n : 3000; };
const done = (code, why) => { if (why) process.stderr.write(String(why).slice(0, 60) + "\n");
                               process.exit(code); };
const limit = (t) => setTimeout(() => done(1, "ETIMEDOUT"), t);
if (mode === "http") {
  const t = ms(b); limit(t);
  fetch(a, { redirect: "manual", signal: AbortSignal.timeout(t) }).then(
    (r) => done(r.status >= 200 && r.status < 300 ? 0 : 1, r.ok ? "" : "HTTP " + r.status),
    (e) => done(1, (e.cause && e.cause.code) || e.name));
} else if (mode === "tcp") {
  limit(ms(c));
  const s = require("net").connect({ host: a, port: parseInt(b, 10) });
  s.on("connect", () => { s.destroy(); done(0); });
  s.on("error", (e) => done(1, e.code || "error"));
} else if (mode === "dns") {
  limit(ms(b));
  require("dns").lookup(a, (e) => done(e ? 1 : 0, e ? e.code : ""));
} else {
  done(2, "usage: http URL MS | tcp HOST PORT MS | dns NAME MS");
}
""".strip()

NETNS_ENV = "CLAW_CAGE_PROBE_NETNS"
_NETNS_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")

# How long one probe may wait for an answer, and the wall-clock cap on the command running it
# (container start-up included). Every LAN probe of a working cage hits the first limit.
PROBE_MS = 1500
COMMAND_TIMEOUT = 4.0


class Probe:
    """One packet test: `mode`/`args` in PROBE PROTOCOL terms, and whether it should get through."""

    __slots__ = ("name", "mode", "args", "expect_reach", "why")

    def __init__(self, name, mode, args, expect_reach, why):
        self.name, self.mode, self.args = name, mode, tuple(str(a) for a in args)
        self.expect_reach, self.why = expect_reach, why

    def protocol_args(self, ms=PROBE_MS):
        return [self.mode] + list(self.args) + [str(ms)]

    def __repr__(self):
        return "Probe(%r, %r, %r, %r)" % (self.name, self.mode, self.args, self.expect_reach)


def docker_argv(network, image, probe, ms=PROBE_MS):
    """The throwaway-container command for one probe (shape documented at the top)."""
    return (["docker", "run", "--rm", "--pull", "never", "--network", network,
             "--user", "1000:1000", "--cap-drop", "ALL", "--read-only",
             "--security-opt", "no-new-privileges", "--entrypoint", "node", image,
             "-e", PROBE_JS] + probe.protocol_args(ms))


def netns_argv(netns, probe, ms=PROBE_MS):
    """The test-mode command: the same script, run by the host's node inside a namespace."""
    return ["ip", "netns", "exec", netns, "node", "-e", PROBE_JS] + probe.protocol_args(ms)


def test_netns(environ=None):
    """The namespace named by CLAW_CAGE_PROBE_NETNS, or None. A malformed name is refused
    rather than passed to `ip`."""
    value = (environ if environ is not None else os.environ).get(NETNS_ENV, "")
    if not value:
        return None
    if not _NETNS_RE.match(value):
        raise ValueError("%s=%r is not a namespace name" % (NETNS_ENV, value))
    return value


class Outcome:
    """What a probe run showed: reached (bool) or None when the probe itself could not run."""

    __slots__ = ("reached", "reason")

    def __init__(self, reached, reason):
        self.reached, self.reason = reached, reason


def run_probe(argv, timeout=COMMAND_TIMEOUT):
    """Run one probe command. Exit 0: reached. Exit 1: not reached (reason from stderr).
    Anything else (no docker, image gone, timeout of the command itself): could not tell."""
    try:
        result = runner.run(argv, check=False, timeout=timeout)
    except runner.CommandError as err:
        return Outcome(None, str(err).split(": ", 1)[-1][:80])
    lines = [ln for ln in result.stderr.strip().splitlines() if ln.strip()]
    last = lines[-1].strip()[:80] if lines else ""
    if result.returncode == 0:
        return Outcome(True, "connected")
    if result.returncode == 1:
        return Outcome(False, last or "no answer")
    return Outcome(None, "probe exited %d%s" % (result.returncode, ": " + last if last else ""))
