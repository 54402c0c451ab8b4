"""``python -m autoaccel.cli``: the command line."""

from __future__ import annotations

import sys

from autoaccel.cli import main

if __name__ == "__main__":
    sys.exit(main())
