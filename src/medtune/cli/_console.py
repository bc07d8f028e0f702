"""Shared rich consoles for the CLI (stdout for results, stderr for errors and progress)."""

import os
import sys

from rich.console import Console

# Piped output (``medtune demo | tee demo.log``, CI logs) is not a terminal, and rich would then fold tables to 80
# columns; give it room for a whole row unless COLUMNS says otherwise.
_PIPED_WIDTH = None if sys.stdout.isatty() or os.environ.get("COLUMNS") else 132

console = Console(width=_PIPED_WIDTH)
err_console = Console(stderr=True)
