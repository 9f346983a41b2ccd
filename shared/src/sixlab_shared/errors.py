"""The user-error convention shared by every sixlab command-line tool.

Library code raises :class:`UserError` (or a subclass) for anything the user can fix: a missing file, a bad
option, a shape mismatch, weights not available offline. The CLIs wrap each command with
:func:`exit_on_user_error`, which prints the message on one line to stderr and exits with status 2, with no
traceback. Any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
R = TypeVar("R")

#: Exit status of a command that stopped on a user error.
USER_ERROR_EXIT_CODE = 2


class UserError(Exception):
    """An error the user caused and can fix; its message says what is wrong and how to fix it.

    The message must fit on one line: CLIs print it as ``error: <message>``.
    """


def print_user_error(message: object) -> None:
    """Print ``error: <message>`` on one line to stderr: the one format every sixlab user error is shown in."""
    print(f"error: {' '.join(str(message).split())}", file=sys.stderr, flush=True)


def exit_on_user_error(func: Callable[P, R]) -> Callable[P, R]:
    """Decorate a CLI command so a :class:`UserError` becomes one line on stderr and exit status 2.

    The wrapper keeps the signature (``functools.wraps``), so typer still sees the command's options.

    Example:
        >>> @exit_on_user_error
        ... def command():
        ...     raise UserError("file 'x.npz' not found; pass an existing file")
        >>> try:
        ...     command()
        ... except SystemExit as exit_:
        ...     print(exit_.code)
        2
    """

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except UserError as err:
            print_user_error(err)
            raise SystemExit(USER_ERROR_EXIT_CODE) from None

    return wrapper
