"""Entry point when the package runs as `python3 -m claw_cage` (from a source checkout)."""

import sys

from .cli import main

sys.exit(main())
