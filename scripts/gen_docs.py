#!/usr/bin/env python3
"""Write docs/parameters.md from the schema and the profiles (engine/docs.py).

    python scripts/gen_docs.py          # write the page
    python scripts/gen_docs.py --check  # exit 1 when the committed page is stale
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine import docs  # noqa: E402


def main(argv: list[str]) -> int:
    if "--check" in argv:
        if docs.is_stale():
            print(f"{docs.DOC_PATH} is stale: run python scripts/gen_docs.py", file=sys.stderr)
            return 1
        print(f"{docs.DOC_PATH} is up to date")
        return 0
    p = docs.write()
    print(f"wrote {p}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
