"""The `longllava` console script: as little as possible runs before the SIGINT handler is in.

Importing the app (Typer, rich) takes a moment; a Ctrl-C during it must exit 130 with one line like
a Ctrl-C at any later point, not with a traceback (longllava_cli/interrupt.py).
"""

from __future__ import annotations

import sys

from longllava_cli import interrupt

EXIT_INTERRUPTED = 130  # longllava_cli.errors.EXIT_INTERRUPTED, not imported: it pulls in Typer


def main() -> None:
    interrupt.install()
    try:
        from longllava_cli.app import main as run
    except KeyboardInterrupt:
        interrupt.report()
        sys.exit(EXIT_INTERRUPTED)
    except ImportError:
        if not interrupt.was_interrupted():
            raise
        interrupt.report()
        sys.exit(EXIT_INTERRUPTED)
    run()
