"""One line per connection: when, which name, which address, the verdict, bytes each way and
how long. Only fields the proxy itself computed go in (a validated name, an address, a fixed
reason); never a request line, a header, a body or a query string.

    2026-12-02T14:00:00Z proxy api.anthropic.com:443 160.79.104.10:443 allowed up=517 down=6120 ms=84
    2026-12-02T14:00:01Z proxy example.org:443 - refused-403 up=0 down=0 ms=0 name not on the allow list

The name is NAME:PORT as the client asked (a forward's is "forward"); --refused reads these
lines. kind: proxy or forward; verdict: allowed, relayed (a forward), refused-STATUS, closed-early,
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
        ms = (time.monotonic() - conn.started) * 1000
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        text = "%s %s %s %s %s up=%d down=%d ms=%d%s" % (
            stamp, conn.kind, conn.name or "-", conn.address or "-", conn.verdict, conn.up,
            conn.down, ms, " " + conn.why if conn.why else "")
        text = _UNPRINTABLE.sub(lambda m: "\\x%02x" % ord(m.group()), text) + "\n"
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):
            pass   # a full disk or closed journal must not take the proxy down
