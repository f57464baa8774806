"""Packet probes run from the claw-cage network, and the one script that implements them.

The commands --verify runs (the e2e stand-in image supports both shapes):

  All probes in ONE throwaway container, each probe its own `node -e PROBE_JS` process, all at
  once (BATCH_SH; starting a container costs ~0.3 s, so one per probe would eat the 5 s budget).
  The container mirrors the gateway's pinned resolvers (--dns, from `docker inspect`):

    docker run --rm --pull never --network <project>_claw-net [--dns ADDR ...] \
        --user 1000:1000 --cap-drop ALL --read-only --security-opt no-new-privileges \
        --entrypoint sh <gateway image id> -c <BATCH_SH> sh <PROBE_JS> \
        "tcp 10.0.0.1 80 1500" "dns api.anthropic.com 1500" ...

  Fallback when the image has no `sh` (docker exits 126/127): one container per probe, in
  parallel, with the same argv up to the image and then

        --entrypoint node <gateway image id> -e <PROBE_JS> <mode> <args...>

Time. Starting the container is not charged to the probes: BATCH_SH prints READY first, and
each probe bounds its own wait (PROBE_MS, a hard timer in PROBE_JS). The command as a whole
gets START_TIMEOUT (default 30 s, CLAW_CAGE_PROBE_START_TIMEOUT) for the container to start,
plus the probes' budget: a cold `docker run` on a Raspberry Pi no longer turns every probe into
a skip. On a normal host the batch takes about 2 s (tests/bench/bench_verify.py).

PROBE PROTOCOL (shared with the compose healthcheck and the e2e stand-in image):

    node -e PROBE_JS http URL TIMEOUT_MS        exit 0 iff an HTTP GET answers 2xx
    node -e PROBE_JS tcp HOST PORT TIMEOUT_MS   exit 0 iff a TCP connection opens
    node -e PROBE_JS dns NAME TIMEOUT_MS        exit 0 iff the name resolves

On failure the script writes one short reason on stderr (an error code such as ETIMEDOUT or
ECONNREFUSED, or "HTTP 503"): never a URL, header or body, so nothing secret can leak.
The image's own `node` runs it because the real OpenClaw image may have no curl.

Test mode: with CLAW_CAGE_PROBE_NETNS=NAME, the same BATCH_SH and PROBE_JS run with the host's
`sh` and `node` inside network namespace NAME (`ip netns exec NAME sh -c BATCH_SH ...`) instead of
in a container. The namespace lab of the test suite uses it: it has no Docker, but it has a
"container" namespace on the claw-cage bridge. Targets, verdicts and timeouts are unchanged.
"""

import os
import re

from .. import deployment, runner

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

# Prints READY (the container has started), then runs every probe given as an argument
# ("MODE ARG... MS", words without spaces) at once and prints one line per probe:
# "<index> <exit status> <last line of its stderr>". Each line is one short write, so lines
# of parallel probes never interleave. Nothing is written to disk (the root is read-only).
# set -f: no word of a probe is ever globbed.
BATCH_SH = r"""
set -f
echo ready
nl='
'
js=$1; shift; i=0
for spec in "$@"; do
  ( r=$(node -e "$js" $spec 2>&1 >/dev/null); rc=$?
    set -- ${r##*$nl}; printf '%s %s %s\n' "$i" "$rc" "$*" ) &
  i=$((i + 1))
done
wait
""".strip()

READY = "ready"
NETNS_ENV = "CLAW_CAGE_PROBE_NETNS"
START_ENV = "CLAW_CAGE_PROBE_START_TIMEOUT"
# A probe word: addresses, names, ports, modes. Anything else is refused before it reaches sh.
_WORD_RE = re.compile(r"[A-Za-z0-9_.:/%\[\]-]{1,255}")
_NETNS_RE = re.compile(r"[A-Za-z0-9_.-]{1,64}")

# How long one probe may wait for an answer (every LAN probe of a working cage hits this
# limit); how long the probe container may take to start (a cold `docker run` on a Raspberry
# Pi can take seconds); and the slack for node's own start and the batch's output.
PROBE_MS = 1500
START_TIMEOUT = 30.0
SLACK = 2.5


def command_timeout(start_timeout=START_TIMEOUT):
    """The wall-clock cap on one probe command: the container's start, then the probes."""
    return start_timeout + PROBE_MS / 1000.0 + SLACK


def start_timeout_from(environ=None):
    """Seconds the probe container may take to start: CLAW_CAGE_PROBE_START_TIMEOUT or 30."""
    value = (environ if environ is not None else os.environ).get(START_ENV, "")
    if not value:
        return START_TIMEOUT
    try:
        seconds = float(value)
    except ValueError:
        seconds = 0
    if not 1 <= seconds <= 600:
        raise ValueError("%s must be a number of seconds from 1 to 600, not %r"
                         % (START_ENV, value))
    return seconds


class Probe:
    """One packet test: `mode`/`args` in PROBE PROTOCOL terms, and whether it should get through."""

    __slots__ = ("name", "mode", "args", "expect_reach", "why", "soft")

    def __init__(self, name, mode, args, expect_reach, why, soft=False):
        self.name, self.mode, self.args = name, mode, tuple(str(a) for a in args)
        self.expect_reach, self.why = expect_reach, why
        self.soft = soft  # a miss is a warning, not a failure

    def protocol_args(self, ms=PROBE_MS):
        return [self.mode] + list(self.args) + [str(ms)]

    def __repr__(self):
        return "Probe(%r, %r, %r, %r)" % (self.name, self.mode, self.args, self.expect_reach)


def _container(network, image, entrypoint, dns=()):
    return ["docker", "run", "--rm", "--pull", "never", "--network", network] + \
        sum((["--dns", d] for d in dns), []) + [
            "--user", deployment.USER, "--cap-drop", "ALL", "--read-only",
            "--security-opt", "no-new-privileges", "--entrypoint", entrypoint, image]


def spec(probe, ms=PROBE_MS):
    """One probe as a BATCH_SH argument: its protocol words joined by spaces."""
    words = probe.protocol_args(ms)
    bad = [w for w in words if not _WORD_RE.fullmatch(w)]
    if bad:
        raise ValueError("unsafe probe argument %r" % bad[0])
    return " ".join(words)


def batch_docker_argv(network, image, plan, ms=PROBE_MS, dns=()):
    """Every probe of the plan in one throwaway container (shape documented at the top)."""
    return (_container(network, image, "sh", dns) + ["-c", BATCH_SH, "sh", PROBE_JS] +
            [spec(p, ms) for p in plan])


def batch_netns_argv(netns, plan, ms=PROBE_MS):
    """Test mode: the same batch, run by the host's sh and node inside a network namespace."""
    return (["ip", "netns", "exec", netns, "sh", "-c", BATCH_SH, "sh", PROBE_JS] +
            [spec(p, ms) for p in plan])


def docker_argv(network, image, probe, ms=PROBE_MS, dns=()):
    """The one-container-per-probe fallback, for an image without sh."""
    return _container(network, image, "node", dns) + ["-e", PROBE_JS] + probe.protocol_args(ms)


def test_netns(environ=None):
    """The namespace named by CLAW_CAGE_PROBE_NETNS, or None. A malformed name is refused
    rather than passed to `ip`."""
    value = (environ if environ is not None else os.environ).get(NETNS_ENV, "")
    if not value:
        return None
    if not _NETNS_RE.fullmatch(value):
        raise ValueError("%s=%r is not a namespace name" % (NETNS_ENV, value))
    return value


class Outcome:
    """What a probe run showed: reached (bool) or None when the probe itself could not run."""

    __slots__ = ("reached", "reason")

    def __init__(self, reached, reason):
        self.reached, self.reason = reached, reason


REASON_MAX = 100
# The lines of our own scripts: an error message that quotes one (a node stack trace, a shell
# syntax error, a CommandError carrying the whole argv) is program text, never a reason.
# Compared with runs of white space folded (BATCH_SH's `set -- $r` folds them).
_PROGRAM_LINES = frozenset(" ".join(ln.split()) for ln in (PROBE_JS + "\n" + BATCH_SH)
                           .splitlines() if len(ln.strip()) >= 4)


# docker's last line after an error ("See 'docker run --help'."): no reason in it.
_HELP_HINT_RE = re.compile(r"(See|Run) '[^']*--help'\.?")


def brief(text, fallback):
    """One short line for a row's detail, from a command's error output: its last non-empty
    line, control characters removed, at most REASON_MAX characters; `fallback` when there is
    none or when that line is (or quotes) a line of PROBE_JS or BATCH_SH."""
    lines = [ln.strip() for ln in (text or "").splitlines() if ln.strip()
             and not _HELP_HINT_RE.fullmatch(ln.strip())]
    line = " ".join(lines[-1].split()) if lines else ""
    if not line or line in _PROGRAM_LINES or any(p in line for p in _PROGRAM_LINES
                                                  if len(p) >= 8):
        return fallback
    line = re.sub(r"(\x1b\[[0-9;]*[A-Za-z]|[\x00-\x1f\x7f])+", " ", line).strip()
    if line.startswith("docker: "):
        line = line[len("docker: "):]
    return line if len(line) <= REASON_MAX else line[:REASON_MAX - 3] + "..."


def failure(err, timeout):
    """One short line for a runner.CommandError (the command itself could not run or finish):
    never its message, which carries the whole argv, scripts included."""
    if err.returncode is None and "timed out" in str(err).rsplit(": ", 1)[-1]:
        return ("no answer within %g s (the probe container's start included; on a slow "
                "host raise %s)" % (timeout, START_ENV))
    if str(err).endswith("command not found"):
        return "%s is not installed" % os.path.basename(err.argv[0] if err.argv else "docker")
    return brief(err.stderr, "%s could not run" % os.path.basename(
        err.argv[0] if err.argv else "the probe command"))


def _outcome(returncode, reason):
    if returncode == 0:
        return Outcome(True, "connected")
    if returncode == 1:
        return Outcome(False, reason or "no answer")
    return Outcome(None, "probe exited %d%s" % (returncode, ": " + reason if reason else ""))


def run_probe(argv, timeout=None):
    """Run one probe command. Exit 0: reached. Exit 1: not reached (reason from stderr).
    Anything else (no docker, image gone, timeout of the command itself): could not tell."""
    timeout = timeout or command_timeout()
    try:
        result = runner.run(argv, check=False, timeout=timeout)
    except runner.CommandError as err:
        return Outcome(None, failure(err, timeout))
    return _outcome(result.returncode, brief(result.stderr, ""))


class NoShell(Exception):
    """The batch could not start because the image has no sh: use one container per probe."""


def parse_batch(stdout, count):
    """BATCH_SH output -> one Outcome per probe; a probe without a line could not tell."""
    found = {}
    for line in stdout.splitlines():
        words = line.split(None, 2)
        if len(words) >= 2 and words[0].isdigit() and words[1].isdigit():
            found[int(words[0])] = _outcome(int(words[1]), brief(
                words[2] if len(words) > 2 else "", "unreadable reason"))
    return [found.get(i, Outcome(None, "no result from the probe batch")) for i in range(count)]


def run_batch(argv, count, timeout=None):
    """Run a batch command; one Outcome per probe. Raises NoShell when docker could not find
    sh in the image (126/127 with nothing printed). A container that never printed READY did
    not start: every probe says why, in one short line."""
    timeout = timeout or command_timeout()
    try:
        result = runner.run(argv, check=False, timeout=timeout)
    except runner.CommandError as err:
        return [Outcome(None, failure(err, timeout))] * count
    if result.returncode in (126, 127) and not result.stdout.strip():
        raise NoShell(brief(result.stderr, "exit %d" % result.returncode))
    started = READY in result.stdout.split("\n", 1)[0].split()
    if not started:
        why = brief(result.stderr, "exit %d, nothing printed" % result.returncode)
        return [Outcome(None, "the probe container did not start: %s" % why)] * count
    outcomes = parse_batch(result.stdout, count)
    if result.returncode != 0:
        why = brief(result.stderr, "exit %d" % result.returncode)
        outcomes = [o if o.reached is not None else Outcome(None, why) for o in outcomes]
    return outcomes
