"""The ``medtune`` command line.

Every module in this package that defines ``register(app)`` adds its command(s) to the app. Command
modules import only typer/rich at module level; heavy libraries (torch, transformers) are imported inside
the command bodies, so ``medtune --help`` stays fast and torch-free.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys

import typer

from medtune.errors import UserError

app = typer.Typer(
    name="medtune",
    help="Fine-tune open LLMs for medical QA (LoRA/QLoRA), evaluate them honestly, serve them safely.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback()
def _root() -> None:
    """Fine-tune open LLMs for medical QA (LoRA/QLoRA), evaluate them honestly, serve them safely."""


def _register_commands() -> None:
    """Import every command module of this package and let it register its commands."""
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        register = getattr(module, "register", None)
        if register is not None:
            register(app)


_registered = False


def get_app() -> typer.Typer:
    """Return the app with all commands registered (idempotent)."""
    global _registered
    if not _registered:
        _register_commands()
        _registered = True
    return app


def main() -> None:
    """Entry point: run the CLI; user errors become one line on stderr and exit code 2."""
    cli = get_app()
    try:
        cli()  # standalone mode: click handles usage errors (exit 2) and --help itself
    except UserError as error:
        from rich.markup import escape

        from medtune.cli._console import err_console

        # escaped: a fix such as pip install 'medtune[gpu]' must not be read as rich markup
        err_console.print(f"[bold red]error:[/] {escape(str(error))}", highlight=False, soft_wrap=True)
        sys.exit(error.exit_code)
