"""Rewrite the generated tables of docs/plugins.md from the code: ``python -m mmapps.testing.docs docs/plugins.md``.

The page marks each table with ``<!-- contracts:start -->`` / ``<!-- contracts:end -->`` and
``<!-- errors:start -->`` / ``<!-- errors:end -->``; ``tests/test_docs_plugins.py`` fails when a
table differs from what this writes.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from mmapps.testing.contracts import contracts_markdown, error_types_markdown

TABLES = {"contracts": contracts_markdown, "errors": error_types_markdown}


def refresh(text: str) -> str:
    """`text` with every marked table replaced by the one generated from the code."""
    for name, make in TABLES.items():
        pattern = re.compile(rf"(<!-- {name}:start -->\n).*?(\n<!-- {name}:end -->)", flags=re.S)
        if not pattern.search(text):
            raise ValueError(f"no <!-- {name}:start --> ... <!-- {name}:end --> markers in the page")
        text = pattern.sub(lambda m: m.group(1) + make() + m.group(2), text)
    return text


def main(argv: list[str]) -> int:
    path = Path(argv[0] if argv else "docs/plugins.md")
    path.write_text(refresh(path.read_text()))
    print(f"refreshed the generated tables of {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
