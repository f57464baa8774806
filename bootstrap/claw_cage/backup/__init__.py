"""Backups of the agent's state, restore, and upgrades that can go back (--backup, --restore,
--rollback, and the installer's guard around an image change)."""

from .modes import main  # noqa: F401
from . import keep, schedule  # noqa: F401  (--verify's backup rows read them)
from .stack import LAST  # noqa: F401
from .upgrade import after as after_upgrade, before as before_upgrade  # noqa: F401
