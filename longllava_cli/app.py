"""The `longllava` entry point. The commands arrive with the CLI issue; this stub keeps the
console script importable."""

from __future__ import annotations

import sys


def main() -> None:
    print("longllava: the command line is not built yet", file=sys.stderr)
    sys.exit(1)
