"""Command-line interface of bnpo (thin: parses options and calls the library)."""

from __future__ import annotations

import typer

from bnpo import __version__

app = typer.Typer(
    name="bnpo",
    help="bnpo: see `bnpo COMMAND --help`.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"bnpo {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version_callback, is_eager=True, help="Print the version and exit."),
) -> None:
    """bnpo command-line tool."""


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
