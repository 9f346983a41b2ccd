"""``--config FILE``: a TOML file that sets any CLI option, for every sixlab command.

Options given on the command line win over the file; the file wins over the defaults. Keys are option names,
dashed or underscored (``batch-size`` or ``batch_size``); an unknown key is an error, so a typo never goes unnoticed.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

from sixlab_shared.errors import UserError


def read_toml_config(path: str | os.PathLike[str], *, allowed: set[str] | None = None) -> dict[str, Any]:
    """Read a TOML config into a flat ``{option_name: value}`` dict with underscored names.

    A table named after the command (``[fit]``) is merged over top-level keys, so one file can serve several
    verbs; pass only that table's content by reading it yourself if you need otherwise.

    Args:
        path: the TOML file.
        allowed: the option names accepted (underscored); ``None`` accepts anything.

    Raises:
        UserError: the file is missing, is not valid TOML, or names an option not in ``allowed``.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"config file {str(path)!r} does not exist; pass an existing TOML file to --config")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise UserError(f"config file {str(path)!r} is not valid TOML: {err}") from err
    flat = {key.replace("-", "_"): value for key, value in data.items() if not isinstance(value, dict)}
    if allowed is not None:
        unknown = sorted(set(flat) - allowed)
        if unknown:
            raise UserError(
                f"config file {str(path)!r} sets unknown option(s) {', '.join(unknown)}; "
                f"known: {', '.join(sorted(allowed))}"
            )
    return flat


def config_option_callback(ctx: Any, param: Any, value: str | None) -> str | None:
    """Click/typer callback for an eager ``--config`` option: loads the file into the command's defaults.

    Kept for commands written before :func:`sixlab_shared.cli.config_option`, which uses the same loader: values
    from the file become the defaults of the command's other options (explicit options still win), and a missing,
    invalid, unknown-key or wrong-type file is one line on stderr and exit status 2.
    """
    from sixlab_shared.cli import _load_config_file  # imported here: the package root does not load typer

    return _load_config_file(ctx, param, value)
