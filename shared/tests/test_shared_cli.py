"""sixlab_shared.cli: options generated from a config dataclass, the shared options and their one-line errors.

Every command runs in a subprocess-free CliRunner; errors are checked for one line on stderr, exit status 2, and
that the command body (which would create the output folder) never ran.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest
import torch
import typer
from typer.testing import CliRunner

from sixlab_shared import exit_on_user_error
from sixlab_shared.cli import (
    HELP,
    OneLineErrorGroup,
    config_coverage,
    config_option,
    config_options,
    device_option,
    field_docs,
    out_option,
    threads_option,
    verbose_option,
)
from sixlab_shared.cli import (
    make_app as make_root_app,
)


@dataclass
class ToyConfig:
    k: int = 3
    """Number of options."""
    lr: float = 1e-3
    """Learning rate."""
    estimator: Literal["plugin", "mc"] = "plugin"
    """Prior estimator."""
    hidden: list[int] = field(default_factory=lambda: [16, 8])
    """Trunk sizes."""
    shape: tuple[int, ...] = (2, 3)
    """A tuple field."""
    seq_len: int | None = None
    """Steps per trajectory."""
    exact: bool = False
    """Exact objective."""
    name: str = field(default="toy", metadata={"help": "Help from metadata."})
    seed: int = 0
    """Seed."""

    def __post_init__(self) -> None:
        if self.k < 1:
            raise ValueError(f"k must be >= 1, got {self.k}")


def make_app(seen: list) -> typer.Typer:
    app = typer.Typer(pretty_exceptions_enable=False)

    @app.command()
    @exit_on_user_error
    @config_options(ToyConfig, into="cfg", rename={"seq_len": "--seq"})
    def fit(
        data: Path = typer.Argument(..., help="Data file."),
        out: Path = out_option(),
        device: str | None = device_option(),
        threads: int | None = threads_option(),
        config_file: str | None = config_option(),
        verbose: int = verbose_option(),
        *,
        cfg: ToyConfig,
    ) -> None:
        out.mkdir()  # the body's first act: an error found while parsing must come before it
        seen.append((data, cfg, device, threads))

    @app.command()
    def other() -> None:
        """A second verb, so typer keeps verb names."""

    return app


def runner() -> CliRunner:
    try:  # click < 8.2 mixes stderr into the output unless told not to; 8.2 removed the switch
        return CliRunner(mix_stderr=False)
    except TypeError:
        return CliRunner()


def invoke(tmp_path: Path, *args: str):
    seen: list = []
    result = runner().invoke(make_app(seen), ["fit", "data.npz", "--out", str(tmp_path / "run"), *args])
    return result, seen


def assert_one_line_error(result, tmp_path: Path, fragment: str) -> None:
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0], result.stderr
    assert "Traceback" not in result.output and "Usage" not in result.stderr
    assert not (tmp_path / "run").exists()


def test_defaults_and_help_come_from_the_dataclass(tmp_path):
    result, seen = invoke(tmp_path)
    assert result.exit_code == 0, result.output
    assert seen[0][1] == ToyConfig()
    assert config_coverage(make_app([]), "fit", ToyConfig) == []
    text = runner().invoke(make_app([]), ["fit", "--help"], env={"COLUMNS": "200"}).output
    for fragment in ("Number of options.", "Help from metadata.", "--no-exact", "--seq", "plugin", HELP["seed"]):
        assert fragment in text
    assert field_docs(ToyConfig)["hidden"] == "Trunk sizes."


def test_every_kind_of_field_is_settable_from_the_command_line(tmp_path):
    result, seen = invoke(
        tmp_path,
        *("--k", "5", "--lr", "0.5", "--estimator", "mc", "--hidden", "4", "--hidden", "2", "--shape", "7"),
        *("--seq", "9", "--exact", "--name", "x", "--seed", "11"),
    )
    assert result.exit_code == 0, result.output
    assert seen[0][1] == ToyConfig(
        k=5, lr=0.5, estimator="mc", hidden=[4, 2], shape=(7,), seq_len=9, exact=True, name="x", seed=11
    )


def test_config_file_sets_fields_and_the_command_line_wins(tmp_path):
    config = tmp_path / "c.toml"
    config.write_text('k = 7\nhidden = [1, 2, 3]\nestimator = "mc"\nseq-len = 4\nexact = true\nthreads = 1\n')
    result, seen = invoke(tmp_path, "--config", str(config), "--k", "2")
    assert result.exit_code == 0, result.output
    assert seen[0][1] == ToyConfig(k=2, hidden=[1, 2, 3], estimator="mc", seq_len=4, exact=True)
    assert seen[0][3] == 1 and torch.get_num_threads() == 1


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (None, "does not exist"),
        ("k = \n", "is not valid TOML"),
        (b"\xff\xfe k = 1", "is not valid TOML"),
        ("kk = 1\n", "unknown option(s) kk"),
        ('k = "three"\n', "k must be an integer, got 'three'"),
        ("k = 2.5\n", "k must be an integer"),
        ("exact = 1\n", "exact must be true or false"),
        ("lr = true\n", "lr must be a number"),
        ('estimator = "zz"\n', "estimator must be one of 'plugin', 'mc'"),
        ("hidden = 3\n", "hidden must be a list"),
        ('hidden = [1, "a"]\n', "items are each an integer"),
        ('device = "tpu"\n', "is not a device"),
        ("threads = 0\n", "--threads must be at least 1"),
    ],
)
def test_every_config_file_problem_is_one_line(tmp_path, content, fragment):
    config = tmp_path / "c.toml"
    if isinstance(content, bytes):
        config.write_bytes(content)
    elif content is not None:
        config.write_text(content)
    result, seen = invoke(tmp_path, "--config", str(config))
    assert_one_line_error(result, tmp_path, fragment)
    assert seen == []


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (("--device", "tpu"), "is not a device"),
        (("--device", "cuda:7"), "cuda"),
        (("--threads", "0"), "--threads must be at least 1"),
        (("--seed", "-1"), "--seed must be an integer in [0, 2**32)"),
        (("--k", "0"), "k must be >= 1, got 0"),
    ],
)
def test_bad_shared_options_are_one_line_before_the_body_runs(tmp_path, args, fragment):
    if args[0] == "--device" and torch.cuda.device_count() > 7:
        pytest.skip("this machine has a cuda:7")
    result, seen = invoke(tmp_path, *args)
    assert_one_line_error(result, tmp_path, fragment)
    assert seen == []


def test_device_from_the_environment_is_checked_too(tmp_path, monkeypatch):
    monkeypatch.setenv("SIXLAB_DEVICE", "warp-drive")
    result, _ = invoke(tmp_path)
    assert_one_line_error(result, tmp_path, "SIXLAB_DEVICE='warp-drive' is not a device")


def test_coverage_names_missing_fields_and_wrong_defaults():
    app = typer.Typer()

    @app.command()
    def fit(k: int = typer.Option(4, "--k"), lr: float = typer.Option(1e-3, "--lr")) -> None:
        """Hand-written options that drifted from the dataclass."""

    @app.command()
    def other() -> None:
        """Second verb."""

    problems = config_coverage(app, "fit", ToyConfig, exclude=("hidden", "shape"))
    assert "default: k cli=4 dataclass=3" in problems
    assert {"missing: estimator", "missing: seq_len", "missing: exact", "missing: name", "missing: seed"} <= set(
        problems
    )
    assert not any("lr" in p or "hidden" in p for p in problems)


def test_coverage_accepts_a_required_field_as_a_required_option():
    @dataclass
    class Needs:
        manifest: Path
        """Required."""
        k: int = 1

    app = typer.Typer()

    @app.command()
    @config_options(Needs)
    def run(*, config: Needs) -> None:
        """Generated options."""

    @app.command()
    def loose(manifest: Path = typer.Option(None, "--manifest"), k: int = typer.Option(1, "--k")) -> None:
        """The required field as an optional option."""

    assert config_coverage(app, "run", Needs) == []
    assert config_coverage(app, "loose", Needs) == [
        "default: manifest has no dataclass default but the option is not required"
    ]


def test_unsupported_field_type_is_refused_when_the_command_is_defined():
    @dataclass
    class Nested:
        table: dict[str, int] = field(default_factory=dict)

    with pytest.raises(TypeError, match="table"):
        config_options(Nested)(lambda *, config: None)


def make_group_app(seen: list) -> typer.Typer:
    app = typer.Typer(cls=OneLineErrorGroup, no_args_is_help=True, pretty_exceptions_enable=False)

    @app.command()
    def fit(k: int = typer.Option(1, "--k"), hidden: list[int] = typer.Option([1], "--hidden")) -> int:
        """Returns a number, which must not become the exit status."""
        seen.append((k, hidden))
        return 5

    @app.command()
    def other() -> None:
        """Second verb."""

    return app


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["fit", "--k", "x"], "Invalid value for '--k'"),
        (["fit", "--hidden", "a"], "Invalid value for '--hidden'"),
        (["fit", "--nope"], "No such option"),  # click 8.5 says "option '--nope'.", typer's vendored click ": --nope"
        (["fit", "--k"], "requires an argument"),
        (["fitt"], "No such command 'fitt'"),
    ],
)
def test_command_line_mistakes_are_one_line(args, fragment):
    seen: list = []
    result = runner().invoke(make_group_app(seen), args)
    assert result.exit_code == 2 and seen == []
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0], result.stderr
    assert "Usage" not in result.output
    if "requires an argument" not in fragment:  # the parser raises that one without a command context
        assert "--help')" in lines[0]


def test_one_line_group_keeps_help_and_success_codes():
    seen: list = []
    ok = runner().invoke(make_group_app(seen), ["fit", "--k", "3", "--hidden", "2"])
    assert ok.exit_code == 0 and seen == [(3, [2])]  # the command's return value (5) is not an exit status
    bare = runner().invoke(make_group_app(seen), [])
    assert bare.exit_code == 0 and "Usage" in bare.output
    helped = runner().invoke(make_group_app(seen), ["fit", "--help"])
    assert helped.exit_code == 0 and "--hidden" in helped.output


def test_make_app_prints_its_version_and_keeps_one_line_errors():
    app = make_root_app("toy-cli", "A toy.", "9.8.7")

    @app.command()
    def fit(k: int = typer.Option(3, "--k")) -> None:
        print(f"k={k}")

    @app.command()
    def other() -> None:
        print("other")

    assert runner().invoke(app, ["--version"]).output == "toy-cli 9.8.7\n"
    bare = runner().invoke(app, [])
    assert bare.exit_code == 0 and "A toy." in bare.output and "--version" in bare.output
    assert runner().invoke(app, ["fit", "--k", "5"]).output == "k=5\n"
    bad = runner().invoke(app, ["fit", "--k", "x"])
    assert bad.exit_code == 2 and bad.stderr.startswith("error: ") and len(bad.stderr.strip().splitlines()) == 1
