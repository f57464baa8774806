"""The egress unit's descriptor limit covers what the proxy.json it renders can open: each
tunnel holds up to 8 descriptors, max_conns counts per kind (proxy, forward), and the
listeners, the log and the event loop need a few more (docs/proxy.md). At exactly 16 x
max_conns (the old 4096) the last tunnels would fail with EMFILE."""

import json
import os
import re
import sys

from conftest import ROOT

sys.path.insert(0, os.path.join(ROOT, "bootstrap"))
from claw_cage.egress import config, unit  # noqa: E402

SPARE = 64   # listeners, log, event loop, standard streams


def test_limit_nofile_leaves_room_beyond_every_tunnel():
    limit = int(re.search(r"^LimitNOFILE=(\d+)$", unit.TEXT, re.M).group(1))
    max_conns = json.loads(config.render(["example.org"]))["max_conns"]
    assert limit >= 16 * max_conns + SPARE
