"""Command-line interface of fusemix (thin: parses options and calls the library)."""

from __future__ import annotations

import typer

from fusemix import __version__

app = typer.Typer(
    name="fusemix",
    help="fusemix: see `fusemix COMMAND --help`.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"fusemix {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version_callback, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """fusemix command-line tool."""


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
