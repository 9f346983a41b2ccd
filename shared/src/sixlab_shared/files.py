"""Reading the files users pass, with one-line errors instead of the libraries' tracebacks.

Each reader turns what goes wrong with a user's file (missing, a folder, truncated, the wrong kind of file) into a
:class:`~sixlab_shared.errors.UserError` that names the file and says what was expected. Numbers inside the files
are the packages' business; these only check that the file is what it claims to be.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from sixlab_shared.errors import UserError


def require_file(path: str | os.PathLike[str], what: str = "input file") -> Path:
    """Check that ``path`` names an existing regular file.

    Args:
        path: the path the user gave.
        what: how the message names it (``"dataset"``, ``"--weights file"``).

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        UserError: it does not exist, or it is a folder.

    Example:
        >>> import tempfile
        >>> require_file(tempfile.gettempdir(), "dataset")
        Traceback (most recent call last):
        ...
        sixlab_shared.errors.UserError: dataset '...' is a folder; expected a file
    """
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{what} {str(path)!r} is a folder; expected a file")
    if not path.is_file():
        raise UserError(f"{what} {str(path)!r} does not exist; pass the path of an existing file")
    return path


def require_output_file(path: str | os.PathLike[str], *, overwrite: bool, what: str = "output file") -> Path:
    """Check that ``path`` may be written as a file: not a folder, and not an existing file unless ``overwrite``.

    Raises:
        UserError: it is a folder, or it exists and ``overwrite`` is false (the message names ``--overwrite``).
    """
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{what} {str(path)!r} is a folder; expected the path of a file to write")
    if path.exists() and not overwrite:
        raise UserError(f"{what} {str(path)!r} already exists; pass --overwrite to replace it")
    if path.parent.exists() and not path.parent.is_dir():
        raise UserError(f"cannot write {what} {str(path)!r}: {str(path.parent)!r} is a file, not a folder")
    return path


def load_npz(path: str | os.PathLike[str], what: str = "file") -> dict[str, np.ndarray]:
    """Read every array of a ``.npz`` file into memory, refusing pickled objects.

    Args:
        path: the ``.npz`` file.
        what: how the message names it.

    Returns:
        ``{name: array}`` in the file's order.

    Raises:
        UserError: missing, a folder, not a zip archive (random bytes, another format), truncated or corrupt, or
            holding object arrays (which would need pickle, i.e. running code from the file).
    """
    path = require_file(path, what)
    if not zipfile.is_zipfile(path):  # np.load would try to unpickle it and complain about pickles
        raise UserError(f"{what} {str(path)!r} is not a valid .npz archive (not a zip file)")
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
        for name, value in arrays.items():
            if not isinstance(value, np.ndarray):  # numpy hands back the raw bytes of a member that is no .npy
                raise UserError(f"{what} {str(path)!r} is not a valid .npz archive (member {name!r} is no array)")
        return arrays
    except ValueError as err:
        if "pickle" in str(err).lower():
            raise UserError(
                f"{what} {str(path)!r} holds Python objects (pickled); save plain numeric/string arrays"
            ) from err
        raise UserError(f"{what} {str(path)!r} is not a valid .npz archive ({_short(err)})") from err
    except (zipfile.BadZipFile, EOFError, OSError, KeyError) as err:
        raise UserError(f"{what} {str(path)!r} is not a valid .npz archive ({_short(err)})") from err


def load_safetensors(path: str | os.PathLike[str], what: str = "file", *, device: str = "cpu") -> dict[str, Any]:
    """Read every tensor of a ``.safetensors`` file.

    Returns:
        ``{name: torch.Tensor}`` on ``device``.

    Raises:
        UserError: missing, a folder, truncated, or not a safetensors file.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = require_file(path, what)
    try:
        return load_file(str(path), device=device)
    except (SafetensorError, OSError, ValueError, RuntimeError) as err:
        raise UserError(f"{what} {str(path)!r} is not a readable safetensors file ({_short(err)})") from err


def _short(err: BaseException) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    return text if len(text) <= 120 else text[:117] + "..."
