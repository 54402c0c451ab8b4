"""Write ``docs/config.md``: ``python -m autoaccel.reference > docs/config.md``."""

from __future__ import annotations

import sys

from autoaccel.config import reference_markdown

if __name__ == "__main__":
    sys.stdout.write(reference_markdown())
