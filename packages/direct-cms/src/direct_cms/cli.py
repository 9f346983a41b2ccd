"""Command-line interface of direct-cms (thin: parses options and calls the library)."""

from __future__ import annotations

import typer

from direct_cms import __version__

app = typer.Typer(
    name="direct-cms",
    help="direct-cms: see `direct-cms COMMAND --help`.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"direct-cms {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version_callback, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """direct-cms command-line tool."""


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
