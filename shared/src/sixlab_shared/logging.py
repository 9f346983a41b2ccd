"""Logging setup for every sixlab CLI, and progress bars that stay quiet where they would be noise.

Diagnostics go to stderr through :mod:`logging` (one logger per module, ``logging.getLogger(__name__)``); stdout
carries only a command's result table.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable
from typing import Any, TypeVar

from tqdm.auto import tqdm

from sixlab_shared.device import is_main_process

T = TypeVar("T")

_HANDLER_NAME = "sixlab-stderr"


def setup_logging(verbose: int = 0) -> None:
    """Send log records to stderr: WARNING by default, INFO with ``-v``, DEBUG with ``-vv``.

    Processes other than the main one log warnings and errors only, so a multi-process run prints each
    message once. Calling it again replaces the handler (no duplicated lines).

    Args:
        verbose: number of ``-v`` flags given.
    """
    level = logging.WARNING if verbose <= 0 else logging.INFO if verbose == 1 else logging.DEBUG
    if not is_main_process():
        level = max(level, logging.WARNING)
    root = logging.getLogger()
    for handler in list(root.handlers):
        if handler.get_name() == _HANDLER_NAME:
            root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S"))
    root.addHandler(handler)
    root.setLevel(level)


def progress_enabled(stream: Any = None) -> bool:
    """Whether a progress bar should be drawn: the stream is a terminal and this is the main process."""
    stream = sys.stderr if stream is None else stream
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty()) and is_main_process()


def progress(iterable: Iterable[T] | None = None, *, disable: bool | None = None, **kwargs: Any) -> tqdm:
    """A tqdm progress bar on stderr, disabled when stderr is not a terminal or this is not the main process.

    Args:
        iterable: what to iterate over (or ``None`` and call ``update`` by hand, with ``total=``).
        disable: force the bar off (``True``) or on (``False``); ``None`` decides with :func:`progress_enabled`.
        **kwargs: passed to ``tqdm`` (``total``, ``desc``, ``unit``, ...).
    """
    if disable is None:
        disable = not progress_enabled()
    kwargs.setdefault("file", sys.stderr)
    kwargs.setdefault("dynamic_ncols", True)
    return tqdm(iterable, disable=disable, **kwargs)
