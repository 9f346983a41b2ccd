"""The command-line conventions every sixlab CLI shares: options spelled, checked and explained alike.

A sixlab command is a map from options onto its package's config dataclass, then one call::

    @app.command()
    @exit_on_user_error
    @config_options(FitConfig, into="config", exclude=("seed",))
    def fit(
        data: Path = typer.Argument(...),
        out: Path = out_option(),
        seed: int = seed_option(),
        device: str | None = device_option(),
        threads: int | None = threads_option(),
        config_file: str | None = config_option(),
        verbose: int = verbose_option(),
        *,
        config: FitConfig,
    ) -> None:
        ...

:func:`config_options` adds one ``--option`` per dataclass field, with the dataclass's default and the field's
docstring as help, so the dataclass is the one table of defaults. The shared options validate their values while
the command line is parsed, before the command body runs (so before any output folder exists), and every error
they find is one line on stderr with exit status 2, as :func:`~sixlab_shared.errors.exit_on_user_error` prints.

This module imports typer, a dependency of sixlab-shared (the CLI library of every package).
"""

from __future__ import annotations

import ast
import dataclasses
import enum
import functools
import inspect
import os
import re
import sys
import textwrap
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import typer
from typer.core import TyperGroup

from sixlab_shared.config import read_toml_config
from sixlab_shared.device import DEVICE_ENV_VAR, get_device
from sixlab_shared.errors import USER_ERROR_EXIT_CODE, UserError, print_user_error
from sixlab_shared.threads import set_threads

F = TypeVar("F", bound=Callable[..., Any])

#: Help texts of the shared options, one wording for all five CLIs (a root test compares them).
HELP = {
    "out": "Output folder (run directory).",
    "seed": "Random seed (a non-negative integer).",
    "device": f"cpu, cuda, cuda:N or mps (default: {DEVICE_ENV_VAR} if set, else the best available).",
    "threads": "CPU threads for torch and BLAS (default: the libraries' choice; 1 is fastest on busy small machines).",
    "config": "TOML file setting any option of this command (command-line options win).",
    "verbose": "More logging on stderr (-v info, -vv debug).",
    "fast": "Seconds-long smoke version (its numbers are not the package's results).",
    "resume": "Continue the run in --out from its last checkpoint.",
    "overwrite": "Replace what --out already holds.",
}


def fail(message: str) -> typer.Exit:
    """Print ``error: <message>`` on one line to stderr and return the exit (status 2) to raise."""
    print_user_error(message)
    return typer.Exit(code=USER_ERROR_EXIT_CODE)


# typer vendors click in recent releases; its exception classes are reached through the ones typer exports.
_CLICK_EXCEPTION: type[Exception] = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")


class OneLineErrorGroup(TyperGroup):
    """A typer command group whose command-line mistakes are one line on stderr and exit status 2.

    Click prints a usage box for an option it cannot parse (``--seed abc``, an unknown option, a missing argument);
    with ``typer.Typer(cls=OneLineErrorGroup)`` the same mistake prints ``error: <what is wrong> (see '<cmd>
    --help')``, as every other user error of a sixlab CLI does. Help, ``--version`` and the commands' own exit codes
    are unchanged.
    """

    def invoke(self, ctx: Any) -> None:
        super().invoke(ctx)  # a command's return value is not an exit code (see main)

    def main(self, args: Any = None, prog_name: Any = None, complete_var: Any = None, standalone_mode: bool = True,
             **extra: Any) -> Any:  # fmt: skip
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except _CLICK_EXCEPTION as err:
            context = getattr(err, "ctx", None)
            if type(err).__name__ == "NoArgsIsHelpError" and context is not None:  # bare command: show its help
                print(context.get_help())
                raise SystemExit(0) from None
            where = f" (see '{context.command_path} --help')" if context is not None else ""
            print_user_error(f"{err.format_message()}{where}")  # type: ignore[attr-defined]
            raise SystemExit(USER_ERROR_EXIT_CODE) from None
        except typer.Abort:
            print("Aborted!", file=sys.stderr)
            raise SystemExit(1) from None
        raise SystemExit(code if isinstance(code, int) else 0)


def make_app(name: str, help: str, version: str) -> typer.Typer:
    """The root command group of a sixlab CLI: one-line usage errors (:class:`OneLineErrorGroup`), help on a bare
    call, plain tracebacks for bugs, and ``--version`` printing ``<name> <version>``.

    >>> app = make_app("demo-cli", "A demo.", "1.2.3")
    >>> from typer.testing import CliRunner
    >>> @app.command()
    ... def hello() -> None:
    ...     print("hello")
    >>> CliRunner().invoke(app, ["--version"]).output
    'demo-cli 1.2.3\\n'
    """
    app = typer.Typer(cls=OneLineErrorGroup, name=name, help=help, no_args_is_help=True, pretty_exceptions_enable=False)

    def print_version(value: bool) -> None:
        if value:
            typer.echo(f"{name} {version}")
            raise typer.Exit()

    @app.callback()
    def root(
        version: bool = typer.Option(
            False, "--version", callback=print_version, is_eager=True, help="Print the version and exit."
        ),
    ) -> None:
        pass

    root.__doc__ = f"{name} command-line tool."
    return app


# ------------------------------------------------------------------------------------------------ shared options


def _check_seed(value: int | None) -> int | None:
    if value is not None and not 0 <= value < 2**32:
        raise fail(f"--seed must be an integer in [0, 2**32), got {value}")
    return value


def _check_device(value: str | None) -> str | None:
    if value is None and not os.environ.get(DEVICE_ENV_VAR):
        return value
    try:
        get_device(value)
    except UserError as err:
        raise fail(str(err)) from None
    return value


def _apply_threads(value: int | None) -> int | None:
    if value is None:
        return value
    if value < 1:
        raise fail(f"--threads must be at least 1, got {value}")
    set_threads(value)
    return value


def out_option(default: Any = ..., *, help: str | None = None) -> Any:
    """``--out PATH``: where the command writes; required unless ``default`` is given."""
    return typer.Option(default, "--out", help=help or HELP["out"])


def seed_option(default: int = 0) -> Any:
    """``--seed N``: a seed in [0, 2**32); default 0 in every package."""
    return typer.Option(default, "--seed", help=HELP["seed"], callback=_check_seed)


def device_option() -> Any:
    """``--device``: checked while parsing (an unknown or unavailable device is one line and exit 2)."""
    return typer.Option(None, "--device", help=HELP["device"], callback=_check_device)


def threads_option() -> Any:
    """``--threads N``: applied while parsing, before the command body runs (see :func:`set_threads`)."""
    return typer.Option(None, "--threads", help=HELP["threads"], callback=_apply_threads)


def verbose_option() -> Any:
    """``-v/--verbose``, counted."""
    return typer.Option(0, "--verbose", "-v", count=True, help=HELP["verbose"])


def fast_option(help: str | None = None) -> Any:
    """``--fast``: the demo's smoke version."""
    return typer.Option(False, "--fast", help=help or HELP["fast"])


def resume_option() -> Any:
    """``--resume``."""
    return typer.Option(False, "--resume", help=HELP["resume"])


def overwrite_option() -> Any:
    """``--overwrite``."""
    return typer.Option(False, "--overwrite", help=HELP["overwrite"])


def config_option() -> Any:
    """``--config FILE``: TOML values become the command's defaults; every problem is one line and exit 2."""
    return typer.Option(None, "--config", help=HELP["config"], is_eager=True, callback=_load_config_file)


def _load_config_file(ctx: typer.Context, param: typer.CallbackParam, value: str | None) -> str | None:
    if not value:
        return value
    names = {p.name for p in ctx.command.params if p.name and p.expose_value and p.name != param.name}
    annotations = _command_annotations(ctx.command.callback)
    try:
        values = read_toml_config(value, allowed=names)
        for name, item in values.items():
            problem = _type_problem(annotations.get(name, Any), item)
            if problem:
                raise UserError(f"config file {value!r}: {name.replace('_', '-')} must be {problem}, got {item!r}")
    except UserError as err:
        raise fail(str(err)) from None
    ctx.default_map = {**(ctx.default_map or {}), **values}
    return value


def _command_annotations(callback: Callable[..., Any] | None) -> dict[str, Any]:
    """The Python annotations of a command's parameters (typer keeps them on its wrapper of the function)."""
    if callback is None:
        return {}
    try:
        return typing.get_type_hints(callback)
    except Exception:  # unresolvable forward references: check nothing rather than fail the command
        return {}


def _type_problem(annotation: Any, value: Any) -> str | None:
    """What ``value`` (from TOML) should have been to fit ``annotation``; None when it fits."""
    inner, _ = _unwrap_optional(annotation)
    origin = typing.get_origin(inner)
    if origin is typing.Annotated:
        return _type_problem(typing.get_args(inner)[0], value)
    if origin is typing.Literal:
        choices = typing.get_args(inner)
        return None if value in choices else "one of " + ", ".join(map(repr, choices))
    if origin in (list, tuple, Sequence) or inner in (list, tuple):
        if not isinstance(value, list):
            return "a list"
        args = [a for a in typing.get_args(inner) if a is not Ellipsis]
        item_type = args[0] if len(set(args)) == 1 else Any
        problems = [_type_problem(item_type, item) for item in value]
        first = next((p for p in problems if p), None)
        return f"a list whose items are each {first}" if first else None
    if inner is bool:
        return None if isinstance(value, bool) else "true or false"
    if inner is int:
        return None if isinstance(value, int) and not isinstance(value, bool) else "an integer"
    if inner is float:
        return None if isinstance(value, int | float) and not isinstance(value, bool) else "a number"
    if inner in (str, Path):
        return None if isinstance(value, str) else "a string"
    if isinstance(inner, type) and issubclass(inner, enum.Enum):
        choices = [m.value for m in inner]
        return None if value in choices else "one of " + ", ".join(map(repr, choices))
    return None


# ------------------------------------------------------------------------------------------ dataclass -> options

#: Config fields that become the shared options instead of generated ones (same spelling and help everywhere).
_SHARED_FIELDS: dict[str, Callable[[Any], Any]] = {
    "seed": lambda default: seed_option(default),
}


def field_docs(config_cls: type) -> dict[str, str]:
    """Each field's help: ``field(metadata={"help": ...})``, else the string literal written under the field.

    Walks the class and its dataclass bases (a subclass's text wins). Whitespace is collapsed to one line.
    """
    docs: dict[str, str] = {}
    for klass in reversed(config_cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            source = textwrap.dedent(inspect.getsource(klass))
        except (OSError, TypeError):
            continue
        tree = ast.parse(source)
        body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
        for node, following in zip(body, [*body[1:], None], strict=True):
            if (
                isinstance(node, ast.AnnAssign)
                and isinstance(node.target, ast.Name)
                and isinstance(following, ast.Expr)
                and isinstance(following.value, ast.Constant)
                and isinstance(following.value.value, str)
            ):
                docs[node.target.id] = " ".join(following.value.value.split())
    for f in dataclasses.fields(config_cls):
        if "help" in f.metadata:
            docs[f.name] = str(f.metadata["help"])
    return docs


_ROLE = re.compile(r":[a-z]+:`~?([^`]+)`")


def plain_help(text: str) -> str:
    """A docstring fragment as terminal help: reST literals and roles become plain words.

    Example:
        >>> plain_help("``bnpo`` or ``compile`` (see :class:`~bnpo.fit_config.FitConfig`)")
        'bnpo or compile (see FitConfig)'
    """
    text = _ROLE.sub(lambda m: m.group(1).rsplit(".", 1)[-1], text)
    return text.replace("``", "")


def _field_default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return ...


def _unwrap_optional(tp: Any) -> tuple[Any, bool]:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(tp)) == 2:
            return args[0], True
    return tp, False


def _cli_type(name: str, tp: Any, default: Any) -> tuple[Any, Callable[[Any], Any], Any]:
    """For a field: the annotation typer gets, the conversion of the parsed value back, the option's default."""
    inner, optional = _unwrap_optional(tp)
    origin = typing.get_origin(inner)
    convert: Callable[[Any], Any] = lambda v: v  # noqa: E731
    if origin is typing.Literal:
        values = typing.get_args(inner)
        if not all(isinstance(v, str) for v in values):
            raise TypeError(f"field {name!r}: only Literal[str, ...] maps onto an option")
        choice = enum.Enum(f"{name}_choice", {v: v for v in values}, type=str)  # typer shows Enums as choices
        annotation: Any = choice
        convert = lambda v: v.value if isinstance(v, enum.Enum) else v  # noqa: E731
        default = choice(default) if default in values else default
    elif origin in (list, tuple, Sequence, typing.Sequence) or inner in (list, tuple):
        args = [a for a in typing.get_args(inner) if a is not Ellipsis]
        if len(set(args)) > 1:
            raise TypeError(f"field {name!r}: a fixed-shape tuple does not map onto a repeatable option")
        item = args[0] if args else str
        annotation = list[item]
        as_tuple = origin is tuple or inner is tuple
        convert = lambda v: (tuple(v) if as_tuple else list(v)) if v is not None else v  # noqa: E731
        default = list(default) if isinstance(default, list | tuple) else default
    elif inner in (bool, int, float, str, Path) or (isinstance(inner, type) and issubclass(inner, enum.Enum)):
        annotation = inner
    else:
        raise TypeError(f"field {name!r} of type {tp!r} has no command-line form; exclude it or change its type")
    return (annotation | None if optional else annotation), convert, default


def config_options(
    config_cls: type,
    *,
    into: str = "config",
    exclude: Sequence[str] = (),
    rename: Mapping[str, str] | None = None,
    help: Mapping[str, str] | None = None,
) -> Callable[[F], F]:
    """Give a typer command one option per field of ``config_cls`` and pass it the built config.

    The decorated function declares a keyword-only parameter ``into`` (annotated with the config class) instead of
    one parameter per field. Each field becomes ``--field-name`` (or ``rename[field]``) with the dataclass's default
    and the field's docstring (or ``help[field]``) as help; ``seed`` becomes the shared ``--seed``. The config is
    built with keyword arguments; a ``ValueError``/``TypeError`` from it becomes a :class:`UserError` (place the
    decorator under ``@exit_on_user_error``). Fields in ``exclude`` get their dataclass default unless the command
    sets them (it receives the config and may ``dataclasses.replace`` it).

    Args:
        config_cls: a dataclass whose fields are ``bool``, ``int``, ``float``, ``str``, ``Path``, an ``Enum``,
            ``Literal[str, ...]``, ``list[T]``/``tuple[T, ...]`` (repeatable option) or any of these ``| None``.
        into: name of the parameter that receives the config.
        exclude: fields that get no option.
        rename: option names for fields whose default spelling is not wanted (``{"holdout_fraction": "--holdout"}``).
        help: help texts that replace the fields' docstrings.

    Raises:
        TypeError: (at decoration) a field type has no command-line form, or a field clashes with a parameter.
    """
    rename = dict(rename or {})
    help_texts = dict(help or {})
    hints = typing.get_type_hints(config_cls)
    docs = field_docs(config_cls)
    fields = [f for f in dataclasses.fields(config_cls) if f.init and f.name not in set(exclude)]

    def decorate(func: F) -> F:
        signature = inspect.signature(func)
        if into not in signature.parameters:
            raise TypeError(f"{func.__name__} must declare a keyword-only parameter {into!r} for the config")
        own = [p for p in signature.parameters.values() if p.name != into]
        clashes = {p.name for p in own} & {f.name for f in fields}
        if clashes:
            raise TypeError(f"{func.__name__}: parameters {sorted(clashes)} clash with config fields; exclude them")
        converters: dict[str, Callable[[Any], Any]] = {}
        generated = []
        annotations: dict[str, Any] = {}
        for f in fields:
            annotation, converters[f.name], default = _cli_type(f.name, hints[f.name], _field_default(f))
            if f.name in _SHARED_FIELDS and f.name not in rename:
                option = _SHARED_FIELDS[f.name](default)
            else:
                flag = rename.get(f.name, "--" + f.name.replace("_", "-"))
                decls = [flag]
                inner = _unwrap_optional(hints[f.name])[0]
                if inner is bool and "/" not in flag:
                    decls = [f"{flag}/--no-{flag.removeprefix('--')}"]
                option = typer.Option(default, *decls, help=plain_help(help_texts.get(f.name, docs.get(f.name, ""))))
            generated.append(inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=option))
            annotations[f.name] = annotation

        def is_argument(p: inspect.Parameter) -> bool:
            return type(p.default).__name__ == "ArgumentInfo" or p.default is inspect.Parameter.empty

        arguments = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in own if is_argument(p)]
        options = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in own if not is_argument(p)]
        own_hints = _hints_except(func, into)
        for p in own:
            annotations[p.name] = own_hints.get(p.name, p.annotation)
        params = [*arguments, *generated, *options]
        params = [p.replace(annotation=annotations[p.name]) for p in params]

        @functools.wraps(func)
        def wrapper(**kwargs: Any) -> Any:
            values = {f.name: converters[f.name](kwargs.pop(f.name)) for f in fields}
            try:
                built = config_cls(**values)
            except (ValueError, TypeError) as err:
                raise UserError(f"invalid option: {err}") from err
            return func(**kwargs, **{into: built})

        wrapper.__signature__ = signature.replace(parameters=params)  # type: ignore[attr-defined]
        wrapper.__annotations__ = {**annotations, "return": own_hints.get("return", None)}
        wrapper.__config_class__ = config_cls  # type: ignore[attr-defined]
        return wrapper  # type: ignore[return-value]

    return decorate


def _hints_except(func: Callable[..., Any], skip: str) -> dict[str, Any]:
    """The resolved annotations of ``func`` but ``skip`` (the config parameter, which may name a local class)."""
    raw = {k: v for k, v in getattr(func, "__annotations__", {}).items() if k != skip}
    namespace = dict(getattr(inspect.unwrap(func), "__globals__", {}))
    resolved = {}
    for name, annotation in raw.items():
        if isinstance(annotation, str):
            try:
                annotation = eval(annotation, namespace)  # noqa: S307 (a postponed annotation of our own code)
            except Exception:
                annotation = Any
        resolved[name] = annotation
    return resolved


def config_coverage(
    app: typer.Typer,
    verb: str | None,
    config_cls: type,
    *,
    exclude: Sequence[str] = (),
    aliases: Mapping[str, str] | None = None,
) -> list[str]:
    """What keeps ``config_cls`` from being fully settable through ``<cli> <verb>``: an empty list when nothing.

    A field is reachable when the command has a parameter of that name (or ``aliases[field]``), which is also the
    key ``--config`` accepts. Each reachable field's command-line default must equal the dataclass default; a field
    without a default must be a required option (or argument).

    Args:
        app: the package's typer app.
        verb: the command's name (``None`` for a single-command app).
        config_cls: the dataclass the command builds.
        exclude: fields the command sets itself on purpose (each needs a reason in the calling test).
        aliases: parameter names that differ from field names.

    Returns:
        One line per problem: ``"missing: field"`` or ``"default: field cli=... dataclass=..."``.
    """
    aliases = dict(aliases or {})
    command = typer.main.get_command(app)
    if verb is not None:
        command = command.commands[verb]  # type: ignore[attr-defined]
    params = {p.name: p for p in command.params}
    problems = []
    for f in dataclasses.fields(config_cls):
        if not f.init or f.name in set(exclude):
            continue
        param = params.get(aliases.get(f.name, f.name))
        if param is None:
            problems.append(f"missing: {f.name}")
            continue
        cli_default = param.default() if callable(param.default) else param.default
        expected = _field_default(f)
        if expected is ...:  # a field without a default must be a required option
            if not getattr(param, "required", False):
                problems.append(f"default: {f.name} has no dataclass default but the option is not required")
            continue
        if isinstance(expected, enum.Enum):
            expected = expected.value
        if isinstance(cli_default, enum.Enum):
            cli_default = cli_default.value
        if isinstance(expected, tuple):
            expected = list(expected)
        if isinstance(cli_default, tuple):
            cli_default = list(cli_default)
        if cli_default != expected and not (cli_default in (None, []) and expected in (None, [])):
            problems.append(f"default: {f.name} cli={cli_default!r} dataclass={expected!r}")
    return problems
