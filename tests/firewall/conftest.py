"""Fixtures of the firewall tests.

  _lab_possible  the namespace lab can run here (root, ip netns, iptables, ...): otherwise the
                 test fails under CI and is skipped loudly elsewhere (netlab.require_lab).
                 Lab modules use it with `pytestmark = pytest.mark.usefixtures("_lab_possible")`.
"""

import pytest

from lab import netlab


@pytest.fixture
def _lab_possible():
    netlab.require_lab()
