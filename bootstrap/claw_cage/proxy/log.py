"""One line per connection of the egress side: when, which name, which address, the verdict,
bytes each way and how long; and one per request on a route: when, the route, the method, the
path without its query, the status, body bytes each way, how long. Only fields the proxy
itself computed or checked go in (a validated name, an address, a route's name, a fixed
reason); never a header, a body, a query string or a key.

    2026-12-02T14:00:00Z proxy api.anthropic.com:443 160.79.104.10:443 allowed up=517 down=6120 ms=84
    2026-12-02T14:00:01Z proxy example.org:443 - refused-403 up=0 down=0 ms=0 name not on the allow list

    2026-12-02T14:00:02Z route anthropic POST /v1/messages 200 up=1893 down=20514 ms=2210

The name is NAME:PORT as the client asked (a forward's is "forward"); --refused reads these
lines. kind: proxy, forward or route; verdict: allowed, relayed (a forward), refused-STATUS, closed-early,
cannot-connect (a forward); the reason, when there is one, ends the line.
"""

import re
import sys
import time

# A field the proxy computed is already clean; this keeps the promise of one line whatever
# slips through: anything outside printable ASCII is written as \xNN.
_UNPRINTABLE = re.compile(r"[^\x20-\x7e]")


class Log:
    def __init__(self, target):
        self.stream = sys.stderr if target == "-" else open(target, "a", buffering=1)

    def line(self, conn):
        self.write(conn.kind, conn.name or "-", conn.address or "-", conn.verdict, conn.up,
                   conn.down, conn.started, conn.why)

    def write(self, kind, a, b, verdict, up, down, started, why):
        ms = (time.monotonic() - started) * 1000
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        text = "%s %s %s %s %s up=%d down=%d ms=%d%s" % (
            stamp, kind, a, b, verdict, up, down, ms, " " + why if why else "")
        text = _UNPRINTABLE.sub(lambda m: "\\x%02x" % ord(m.group()), text) + "\n"
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):
            pass   # a full disk or closed journal must not take the proxy down
