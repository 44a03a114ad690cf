"""The ``dreamsound`` command line: thin commands over the library, one module per command.

Each command parses its options (dream knobs through :mod:`dreamsound.cli.options`), calls the
library and prints the result (a rich table, or one JSON object on stdout with ``--json``).
"""

from __future__ import annotations

import sys

# Importing the command modules registers their commands on the app.
from dreamsound.cli import classify, dream, evaluate, models, studio, train  # noqa: F401
from dreamsound.cli.common import app, err_console

__all__ = ["app", "main"]


def main() -> None:
    """Console entry point."""
    try:
        app()
    except KeyboardInterrupt:
        err_console.print("[red]interrupted[/]")
        sys.exit(130)
