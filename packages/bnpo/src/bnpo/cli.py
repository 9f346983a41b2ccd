"""Command-line interface of bnpo (thin: maps options onto the config dataclasses and calls one job each).

``bnpo fit`` takes one option per :class:`bnpo.fit.FitConfig` field (``sixlab_shared.cli.config_options``: the
dataclass is the one table of defaults and help), except ``k``/``nonparametric``, which keep their meaning: ``--k K``
fits K options, no ``--k`` grows K from 1.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import typer

from bnpo import __version__
from bnpo.demo import demo_job
from bnpo.downstream import DownstreamConfig
from bnpo.fit import FitConfig
from bnpo.workflows import (
    apply_preset,
    collect_job,
    evaluate_job,
    fit_job,
    format_table,
    rl_job,
    rl_rows,
    segment_job,
    summary_rows,
)
from sixlab_shared import UserError, exit_on_user_error, setup_logging
from sixlab_shared.cli import (
    config_option,
    config_options,
    device_option,
    fast_option,
    make_app,
    out_option,
    overwrite_option,
    resume_option,
    seed_option,
    threads_option,
    verbose_option,
)

app = make_app(
    "bnpo", "bnpo: offline option discovery with Bayesian nonparametrics. See `bnpo COMMAND --help`.", __version__
)

#: FitConfig fields whose options keep their established names.
FIT_RENAME = {"holdout_fraction": "--holdout", "split_epochs": "--split-epoch"}
#: FitConfig fields the fit command sets itself from --k / --nonparametric.
FIT_OWN = ("k", "nonparametric")


def _json_object(text: str) -> dict:
    """``--env-kwargs`` as a dict, or a one-line error."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise UserError(f"--env-kwargs must be a JSON object, got {text!r} ({err.msg})") from err
    if not isinstance(value, dict):
        raise UserError(f"--env-kwargs must be a JSON object, got {text!r}")
    return value


@app.command()
@exit_on_user_error
def collect(
    env: str = typer.Argument(..., help="gymnasium id, e.g. bnpo/Room-v0, bnpo/Line-v0, bnpo/Landmarks-v0."),
    out: Path = out_option(help="Dataset file to write (.npz)."),
    episodes: int = typer.Option(1000, "--episodes", help="Number of episodes."),
    policy: str = typer.Option(
        "expert", "--policy", help="expert (bnpo envs), random, or module:callable (a policy(obs, info) factory)."
    ),
    epsilon: float = typer.Option(None, "--epsilon", help="Expert's random-action probability (env default)."),
    max_steps: int = typer.Option(None, "--max-steps", help="Cap on episode length."),
    env_kwargs: str = typer.Option(
        "{}", "--env-kwargs", help='JSON keyword arguments for gym.make, e.g. {"n_rooms": 3}.'
    ),
    overwrite: bool = overwrite_option(),
    seed: int = seed_option(),
    device: str | None = device_option(),
    threads: int | None = threads_option(),
    config_file: str | None = config_option(),
    verbose: int = verbose_option(),
) -> None:
    """Collect expert (or random, or your policy's) trajectories from a gymnasium environment into a .npz dataset.

    No model runs here: --device is accepted for uniformity with the other verbs and unused.
    """
    setup_logging(verbose)
    kwargs = _json_object(env_kwargs)
    data = collect_job(
        env,
        out,
        episodes=episodes,
        policy=policy,
        epsilon=epsilon,
        max_steps=max_steps,
        env_kwargs=kwargs,
        seed=seed,
        overwrite=overwrite,
    )
    rows = [
        ("episodes", str(data.n_episodes)),
        ("steps", str(len(data.actions))),
        ("obs_dim", str(data.obs_dim)),
        ("n_actions", str(data.n_actions)),
        ("options", "yes" if data.options is not None else "no"),
        ("file", str(out)),
    ]
    typer.echo(format_table(rows))


@app.command()
@exit_on_user_error
@config_options(FitConfig, into="config", exclude=FIT_OWN, rename=FIT_RENAME)
def fit(
    data: Path = typer.Argument(..., help="Dataset (.npz, see bnpo.data)."),
    out: Path = out_option(help="Run directory."),
    k: int | None = typer.Option(None, "--k", help="Fixed number of options (fixed-K BNPO); absent: grow K from 1."),
    nonparametric: bool = typer.Option(
        False, "--nonparametric", help="Grow K from 1 (the default when --k is absent)."
    ),
    preset: str | None = typer.Option(
        None,
        "--preset",
        help="A documented recipe applied to every option left at its default: room (Room(V): --objective exact "
        "and split trials at epochs 150-400).",
    ),
    device: str | None = device_option(),
    threads: int | None = threads_option(),
    resume: bool = resume_option(),
    overwrite: bool = overwrite_option(),
    config_file: str | None = config_option(),
    verbose: int = verbose_option(),
    *,
    config: FitConfig,
) -> None:
    """Fit options offline (fixed K with --k, or nonparametric), then evaluate and plot usage and K.

    --method compile fits the CompILE baseline instead (NP-CompILE without --k); the --compile-* options are its
    settings.
    """
    setup_logging(verbose)
    if k is not None and nonparametric:
        raise UserError("pass either --k K (fixed) or --nonparametric, not both")
    config = dataclasses.replace(config, nonparametric=k is None, k=FitConfig.k if k is None else k)
    config = apply_preset(config, preset)
    summary = fit_job(data, out, config, device=device, resume=resume, overwrite=overwrite)
    typer.echo(format_table(summary_rows(summary)))


@app.command()
@exit_on_user_error
def segment(
    model: Path = typer.Argument(..., help="Checkpoint file or run directory."),
    data: Path = typer.Argument(..., help="Dataset (.npz)."),
    out: Path = out_option(help="Folder for segments.json and segmentation.png."),
    n_plot: int = typer.Option(12, "--n-plot", help="Trajectories drawn in the figure."),
    seq_len: int = typer.Option(None, "--seq-len", help="Steps per window (default: the shortest episode)."),
    padding: bool = typer.Option(False, "--padding", help="Whole episodes padded with a mask instead of windows."),
    overwrite: bool = overwrite_option(),
    device: str | None = device_option(),
    threads: int | None = threads_option(),
    config_file: str | None = config_option(),
    verbose: int = verbose_option(),
) -> None:
    """Segmentation of trajectories into options (Viterbi; CompILE: its encoder), with a figure coloured by option."""
    setup_logging(verbose)
    result = segment_job(
        model, data, out, n_plot=n_plot, seq_len=seq_len, overwrite=overwrite, device=device, padding=padding
    )
    typer.echo(
        format_table(
            [
                ("trajectories", str(result["n_trajectories"])),
                ("K", str(result["K"])),
                ("figure", str(out / "segmentation.png")),
            ]
        )
    )


@app.command()
@exit_on_user_error
def evaluate(
    model: Path = typer.Argument(..., help="Checkpoint file or run directory."),
    data: Path = typer.Argument(..., help="Dataset (.npz)."),
    out: Path = out_option(help="Folder for evaluation.json."),
    seq_len: int = typer.Option(None, "--seq-len", help="Steps per window (default: the shortest episode)."),
    padding: bool = typer.Option(False, "--padding", help="Whole episodes padded with a mask instead of windows."),
    overwrite: bool = overwrite_option(),
    device: str | None = device_option(),
    threads: int | None = threads_option(),
    config_file: str | None = config_option(),
    verbose: int = verbose_option(),
) -> None:
    """Exact held-out log-likelihood, K and usage, and (with ground truth) matched accuracy and boundary F1."""
    setup_logging(verbose)
    result = evaluate_job(model, data, out, seq_len=seq_len, overwrite=overwrite, device=device, padding=padding)
    typer.echo(format_table(summary_rows(result)))


@app.command()
@exit_on_user_error
@config_options(DownstreamConfig, into="rl_config", exclude=("seeds",))
def rl(
    env: str = typer.Argument(..., help="gymnasium id with Discrete actions, e.g. bnpo/LandmarksGoal-v0."),
    out: Path = out_option(help="Run directory (curves.json, curves.png, summary.json)."),
    options: Path = typer.Option(
        None, "--options", help="Fitted model (checkpoint or run directory) whose options join the actions."
    ),
    no_options: bool = typer.Option(False, "--no-options", help="Primitive actions only (the baseline)."),
    baseline: bool = typer.Option(
        True, "--baseline/--no-baseline", help="With --options, also run the primitive-only baseline."
    ),
    control: bool = typer.Option(
        False, "--control", help="With --options, also run the control: the options of an untrained model, same size."
    ),
    seeds: int = typer.Option(5, "--seeds", help="Number of seeds: --seed, --seed + 1, ..."),
    env_kwargs: str = typer.Option("{}", "--env-kwargs", help="JSON keyword arguments for gym.make."),
    overwrite: bool = overwrite_option(),
    seed: int = seed_option(),
    device: str | None = device_option(),
    threads: int | None = threads_option(),
    config_file: str | None = config_option(),
    verbose: int = verbose_option(),
    *,
    rl_config: DownstreamConfig,
) -> None:
    """Downstream SMDP PPO (Stable-Baselines3) with and without learned options; success-vs-steps AUC over seeds."""
    setup_logging(verbose)
    if (options is None) == (not no_options):
        raise UserError("pass exactly one of --options MODEL or --no-options")
    if seeds < 1:
        raise UserError(f"--seeds must be >= 1, got {seeds}")
    rl_config = dataclasses.replace(rl_config, seeds=list(range(seed, seed + seeds)))
    kwargs = _json_object(env_kwargs)
    summary = rl_job(
        env,
        out,
        rl_config,
        options=options,
        baseline=baseline,
        control=control,
        env_kwargs=kwargs,
        overwrite=overwrite,
        device=device,
    )
    typer.echo(format_table(rl_rows(summary)))


@app.command()
@exit_on_user_error
def demo(
    out: Path = out_option(Path("bnpo-demo"), help="Run directory."),
    env: str = typer.Option("room", "--env", help="room (Room(6)) or landmarks."),
    fast: bool = fast_option(),
    overwrite: bool = overwrite_option(),
    seed: int = seed_option(),
    device: str | None = device_option(),
    threads: int | None = threads_option(),
    config_file: str | None = config_option(),
    verbose: int = verbose_option(),
) -> None:
    """Collect expert data, fit options nonparametrically, print K and scores, draw the segmentation, and compare
    downstream PPO with and without the options."""
    setup_logging(verbose)
    summary = demo_job(out, env=env, fast=fast, seed=seed, device=device, overwrite=overwrite)
    typer.echo(format_table(summary_rows(summary)))


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
