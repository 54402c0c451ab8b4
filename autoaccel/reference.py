"""Write the config's references, generated from the code:

python -m autoaccel.reference > docs/config.md
python -m autoaccel.reference --schema > docs/autoaccel.schema.json
"""

from __future__ import annotations

import json
import sys

from autoaccel.config import json_schema, reference_markdown

if __name__ == "__main__":
    if "--schema" in sys.argv[1:]:
        sys.stdout.write(json.dumps(json_schema(), indent=2) + "\n")
    else:
        sys.stdout.write(reference_markdown())
