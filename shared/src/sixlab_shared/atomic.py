"""Atomic file writes: write a temporary file beside the target, fsync it, rename it over the target.

A crash at any point leaves either the old file or the new one, never a half-written file. The new file gets the
permissions a plain ``open(path, "w")`` would give it (the user's umask, or the mode of the file it replaces), not
the 0600 of a temporary file, so results can be shared.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

from sixlab_shared.errors import UserError


def _current_umask() -> int:
    # Linux reports it without changing it (os.umask would, briefly, for every thread of the process).
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _final_mode(path: Path) -> int:
    """The mode ``path`` would have if written in place: that of the file it replaces, else 0666 less the umask."""
    try:
        return path.stat().st_mode & 0o7777
    except OSError:
        return 0o666 & ~_current_umask()


def _set_mode(fd: int, mode: int) -> None:
    if hasattr(os, "fchmod"):  # not on Windows before Python 3.13, where files are not created 0600 anyway
        os.fchmod(fd, mode)


def _prepare_target(path: str | os.PathLike[str]) -> Path:
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{str(path)!r} is a folder; expected the path of a file to write")
    if path.parent.exists() and not path.parent.is_dir():
        raise UserError(f"cannot write {str(path)!r}: {str(path.parent)!r} is a file, not a folder")
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _fsync_dir(directory: Path) -> None:
    # Persist the rename itself. Not every platform lets a directory be opened; there it is a no-op.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike[str]) -> Iterator[BinaryIO]:
    """Open a binary file for writing that replaces ``path`` only if the block finishes without error.

    Example:
        >>> import tempfile, pathlib
        >>> target = pathlib.Path(tempfile.mkdtemp()) / "out.bin"
        >>> with atomic_open(target) as f:
        ...     _ = f.write(b"data")
        >>> target.read_bytes()
        b'data'
    """
    path = _prepare_target(path)
    mode = _final_mode(path)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            _set_mode(handle.fileno(), mode)
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def atomic_write_with(path: str | os.PathLike[str], writer: Callable[[Path], Any]) -> None:
    """Atomically create ``path`` with a writer that needs a file *name* (e.g. ``safetensors.save_file``).

    ``writer(tmp_path)`` writes a temporary file in the same folder; it is fsynced and renamed over ``path``.
    """
    path = _prepare_target(path)
    mode = _final_mode(path)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        writer(tmp)
        with open(tmp, "rb+") as handle:
            _set_mode(handle.fileno(), mode)
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Atomically replace ``path`` with ``data``."""
    with atomic_open(path) as handle:
        handle.write(data)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Atomically replace ``path`` with ``text`` encoded as UTF-8."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike[str], obj: Any, *, indent: int = 2) -> None:
    """Atomically replace ``path`` with ``obj`` as JSON (keys kept in insertion order, trailing newline).

    Non-finite floats are written as ``NaN``/``Infinity`` (Python's JSON dialect) rather than rejected, so a
    diverged metric is recorded, not lost.
    """
    atomic_write_text(path, json.dumps(obj, indent=indent, default=_json_default) + "\n")


def _json_default(obj: Any) -> Any:
    # numpy scalars/arrays, torch tensors, paths: the values results dictionaries hold in practice.
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")
