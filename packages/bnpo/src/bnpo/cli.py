"""Command-line interface of bnpo (thin: parses options and calls the library)."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from bnpo import __version__
from bnpo.downstream import DownstreamConfig
from bnpo.fit import FitConfig
from bnpo.workflows import (
    collect_job,
    demo_job,
    evaluate_job,
    fit_job,
    format_table,
    rl_job,
    rl_rows,
    segment_job,
    summary_rows,
)
from sixlab_shared import UserError, config_option_callback, exit_on_user_error, setup_logging

app = typer.Typer(
    name="bnpo",
    help="bnpo: offline option discovery with Bayesian nonparametrics. See `bnpo COMMAND --help`.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

CONFIG_OPTION = typer.Option(
    None, "--config", is_eager=True, callback=config_option_callback, help="TOML file setting any option."
)
VERBOSE_OPTION = typer.Option(0, "--verbose", "-v", count=True, help="More logging (-v info, -vv debug).")
DEVICE_OPTION = typer.Option(None, "--device", help="cpu | cuda | mps (default: best available).")


def _json_object(text: str) -> dict:
    """``--env-kwargs`` as a dict, or a one-line error."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise UserError(f"--env-kwargs must be a JSON object, got {text!r} ({err.msg})") from err
    if not isinstance(value, dict):
        raise UserError(f"--env-kwargs must be a JSON object, got {text!r}")
    return value


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"bnpo {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version_callback, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """bnpo command-line tool."""


@app.command()
@exit_on_user_error
def collect(
    env: str = typer.Argument(..., help="gymnasium id, e.g. bnpo/Room-v0, bnpo/Line-v0, bnpo/Landmarks-v0."),
    out: Path = typer.Option(..., "--out", help="Dataset file to write (.npz)."),
    episodes: int = typer.Option(1000, "--episodes", help="Number of episodes."),
    policy: str = typer.Option("expert", "--policy", help="expert (bnpo envs) or random."),
    epsilon: float = typer.Option(None, "--epsilon", help="Expert's random-action probability (env default)."),
    max_steps: int = typer.Option(None, "--max-steps", help="Cap on episode length."),
    env_kwargs: str = typer.Option(
        "{}", "--env-kwargs", help='JSON keyword arguments for gym.make, e.g. {"n_rooms": 3}.'
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --out file."),
    seed: int = typer.Option(0, "--seed", help="Environment and expert seed."),
    config: str = CONFIG_OPTION,
    verbose: int = VERBOSE_OPTION,
) -> None:
    """Collect expert (or random) trajectories from a gymnasium environment into a .npz dataset."""
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
def fit(
    data: Path = typer.Argument(..., help="Dataset (.npz, see bnpo.data)."),
    out: Path = typer.Option(..., "--out", help="Run directory."),
    k: int = typer.Option(None, "--k", help="Fixed number of options (fixed-K BNPO)."),
    nonparametric: bool = typer.Option(
        False, "--nonparametric", help="Grow K from 1 (the default when --k is absent)."
    ),
    epochs: int = typer.Option(500, "--epochs", help="Training epochs."),
    batch_size: int = typer.Option(512, "--batch-size", help="Trajectories per minibatch."),
    lr: float = typer.Option(1e-3, "--lr", help="Adam learning rate."),
    seq_len: int = typer.Option(None, "--seq-len", help="Steps per trajectory (default: shortest episode)."),
    estimator: str = typer.Option("plugin", "--estimator", help="plugin (paper code) or mc (corrected Monte Carlo)."),
    entropy_initial: float = typer.Option(5.0, "--entropy-initial", help="Initial usage-entropy weight."),
    entropy_decay: float = typer.Option(
        0.999, "--entropy-decay", help="Entropy weight decay per epoch (paper: 0.995)."
    ),
    tau_initial: float = typer.Option(1.0, "--tau-initial", help="Initial temperature of the relaxations."),
    tau_decay: float = typer.Option(0.999, "--tau-decay", help="Temperature decay per epoch."),
    relaxation: str = typer.Option("concrete", "--relaxation", help="concrete (paper) or straight_through."),
    objective: str = typer.Option(
        "relaxed", "--objective", help="relaxed (paper ELBO) or exact (options marginalised by the forward algorithm)."
    ),
    growth_tol: float = typer.Option(0.5, "--growth-tol", help="Grow when every usage >= tol / K."),
    split_epoch: list[int] = typer.Option(
        [], "--split-epoch", help="Run a split trial at the start of this epoch (repeatable; README)."
    ),
    holdout: float = typer.Option(0.01, "--holdout", help="Held-out fraction for the exact log-likelihood."),
    restarts: int = typer.Option(
        1, "--restarts", help="Random restarts; keeps the best exact held-out (else training) log-likelihood."
    ),
    restart_epochs: int = typer.Option(
        None, "--restart-epochs", help="Warm-up epochs per restart before selecting (default: all epochs)."
    ),
    restart_select: str = typer.Option(
        "heldout", "--restart-select", help="Score restarts on heldout (else training) or train trajectories."
    ),
    seed: int = typer.Option(0, "--seed", help="Seed."),
    device: str = DEVICE_OPTION,
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out from its last checkpoint."),
    config: str = CONFIG_OPTION,
    verbose: int = VERBOSE_OPTION,
) -> None:
    """Fit options offline (fixed K with --k, or nonparametric), then evaluate and plot usage and K."""
    setup_logging(verbose)
    if k is not None and nonparametric:
        raise UserError("pass either --k K (fixed) or --nonparametric, not both")
    fit_config = FitConfig(
        nonparametric=k is None,
        k=3 if k is None else k,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        seq_len=seq_len,
        estimator=estimator,
        entropy_initial=entropy_initial,
        entropy_decay=entropy_decay,
        tau_initial=tau_initial,
        tau_decay=tau_decay,
        relaxation=relaxation,
        objective=objective,
        growth_tol=growth_tol,
        split_epochs=list(split_epoch),
        holdout_fraction=holdout,
        restarts=restarts,
        restart_epochs=restart_epochs,
        restart_select=restart_select,
        seed=seed,
    )
    summary = fit_job(data, out, fit_config, device=device, resume=resume)
    typer.echo(format_table(summary_rows(summary)))


@app.command()
@exit_on_user_error
def segment(
    model: Path = typer.Argument(..., help="Checkpoint file or run directory."),
    data: Path = typer.Argument(..., help="Dataset (.npz)."),
    out: Path = typer.Option(..., "--out", help="Folder for segments.json and segmentation.png."),
    n_plot: int = typer.Option(12, "--n-plot", help="Trajectories drawn in the figure."),
    seq_len: int = typer.Option(None, "--seq-len", help="Steps per trajectory (default: shortest episode)."),
    config: str = CONFIG_OPTION,
    verbose: int = VERBOSE_OPTION,
) -> None:
    """Viterbi segmentation of trajectories into options, with a figure coloured by option."""
    setup_logging(verbose)
    result = segment_job(model, data, out, n_plot=n_plot, seq_len=seq_len)
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
    out: Path = typer.Option(..., "--out", help="Folder for evaluation.json."),
    seq_len: int = typer.Option(None, "--seq-len", help="Steps per trajectory (default: shortest episode)."),
    config: str = CONFIG_OPTION,
    verbose: int = VERBOSE_OPTION,
) -> None:
    """Exact held-out log-likelihood, K and usage, and (with ground truth) matched accuracy and boundary F1."""
    setup_logging(verbose)
    typer.echo(format_table(summary_rows(evaluate_job(model, data, out, seq_len=seq_len))))


@app.command()
@exit_on_user_error
def rl(
    env: str = typer.Argument(..., help="gymnasium id with Discrete actions, e.g. bnpo/LandmarksGoal-v0."),
    out: Path = typer.Option(..., "--out", help="Run directory (curves.json, curves.png, summary.json)."),
    options: Path = typer.Option(
        None, "--options", help="Fitted model (checkpoint or run directory) whose options join the actions."
    ),
    no_options: bool = typer.Option(False, "--no-options", help="Primitive actions only (the baseline)."),
    baseline: bool = typer.Option(
        True, "--baseline/--no-baseline", help="With --options, also run the primitive-only baseline."
    ),
    seeds: int = typer.Option(5, "--seeds", help="Number of seeds: --seed, --seed + 1, ..."),
    steps: int = typer.Option(20_000, "--steps", help="Primitive environment steps per run."),
    option_steps: int = typer.Option(15, "--option-steps", help="Cap on the primitive steps of one option call."),
    env_kwargs: str = typer.Option("{}", "--env-kwargs", help="JSON keyword arguments for gym.make."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a run already in --out."),
    seed: int = typer.Option(0, "--seed", help="First seed."),
    config: str = CONFIG_OPTION,
    verbose: int = VERBOSE_OPTION,
) -> None:
    """Downstream SMDP PPO (Stable-Baselines3) with and without learned options; success-vs-steps AUC over seeds."""
    setup_logging(verbose)
    if (options is None) == (not no_options):
        raise UserError("pass exactly one of --options MODEL or --no-options")
    if seeds < 1:
        raise UserError(f"--seeds must be >= 1, got {seeds}")
    if seed < 0:
        raise UserError(f"--seed must be >= 0, got {seed}")
    rl_config = DownstreamConfig(steps=steps, seeds=list(range(seed, seed + seeds)), option_steps=option_steps)
    summary = rl_job(
        env,
        out,
        rl_config,
        options=options,
        baseline=baseline,
        env_kwargs=_json_object(env_kwargs),
        overwrite=overwrite,
    )
    typer.echo(format_table(rl_rows(summary)))


@app.command()
@exit_on_user_error
def demo(
    out: Path = typer.Option(Path("bnpo-demo"), "--out", help="Run directory."),
    env: str = typer.Option("room", "--env", help="room (Room(6)) or landmarks."),
    fast: bool = typer.Option(False, "--fast", help="Seconds-long smoke version (Room(3), 12 epochs)."),
    seed: int = typer.Option(0, "--seed", help="Seed."),
    device: str = DEVICE_OPTION,
    config: str = CONFIG_OPTION,
    verbose: int = VERBOSE_OPTION,
) -> None:
    """Collect expert data, fit options nonparametrically, print K and scores, draw the segmentation."""
    setup_logging(verbose)
    summary = demo_job(out, env=env, fast=fast, seed=seed, device=device)
    typer.echo(format_table(summary_rows(summary)))


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
