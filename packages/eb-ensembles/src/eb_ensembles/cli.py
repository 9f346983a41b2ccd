"""Command-line interface of eb-ensembles (thin: parses options and calls the library)."""

from __future__ import annotations

from pathlib import Path

import typer

from eb_ensembles import __version__
from sixlab_shared import RunDir, UserError, config_option_callback, exit_on_user_error, get_device, setup_logging

app = typer.Typer(
    name="eb-ensembles",
    help="Deep ensembles as empirical Bayes: train, evaluate, run experiments E1/E2/E5, demo.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

_CONFIG_HELP = "TOML file setting any option of this command (command-line options win)."


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"eb-ensembles {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version_callback, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """eb-ensembles command-line tool."""


def _ints(text: str, option: str) -> tuple[int, ...]:
    text = text.strip()
    if not text:
        return ()
    try:
        return tuple(int(part) for part in text.split(","))
    except ValueError:
        raise UserError(f"{option} must be comma-separated integers like '100,100', got {text!r}") from None


def _check_common(seed: int | None, device: str | None) -> None:
    """One-line errors for a negative seed or an unusable device, before any folder is made."""
    if seed is not None and seed < 0:
        raise UserError(f"--seed must be >= 0, got {seed}")
    if device is not None:
        get_device(device)


def _table(rows: dict[str, dict[str, float]], columns: tuple[str, ...]) -> str:
    width = max(len(name) for name in rows) + 2
    widths = [max(10, len(c)) + 2 for c in columns]
    lines = ["method".ljust(width) + "".join(c.rjust(w) for c, w in zip(columns, widths, strict=True))]
    for name, row in rows.items():
        cells = ""
        for c, w in zip(columns, widths, strict=True):
            value = row.get(c, "-")
            cells += (f"{value:.4f}" if isinstance(value, float) else str(value)).rjust(w)
        lines.append(name.ljust(width) + cells)
    return "\n".join(lines)


@app.command()
@exit_on_user_error
def train(
    dataset: str = typer.Option("digits", help="cubic, gap, moons, circles, blobs, digits or mnist1d."),
    members: int = typer.Option(5, help="Ensemble size M."),
    epochs: int = typer.Option(30, help="Training epochs per member."),
    batch_size: int = typer.Option(64, help="Minibatch size."),
    lr: float = typer.Option(1e-3, help="Adam learning rate."),
    weight_decay: float = typer.Option(0.0, help="L2 coefficient; 0 = maximum likelihood (the paper's setting)."),
    hidden: str = typer.Option("100", help="Hidden widths, comma-separated."),
    holdout: str = typer.Option("", help="Classes held out of training, comma-separated (e.g. '8,9')."),
    vectorise: bool = typer.Option(
        True, "--vectorise/--no-vectorise", help="Train all members at once (stacked parameters)."
    ),
    dtype: str = typer.Option("float32", help="float32 or float64."),
    checkpoint_every: int = typer.Option(5, help="Save work in progress every N epochs."),
    out: Path = typer.Option(Path("runs/eb-ensembles-train"), "--out", help="Run directory."),
    seed: int = typer.Option(0, help="Run seed (members derive their own)."),
    device: str | None = typer.Option(None, help="cpu, cuda or mps (default: cpu tensors on cpu)."),
    resume: bool = typer.Option(False, "--resume", help="Continue a killed run in --out."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace the run already in --out."),
    config: str | None = typer.Option(
        None, "--config", is_eager=True, callback=config_option_callback, help=_CONFIG_HELP
    ),
    verbose: int = typer.Option(0, "--verbose", "-v", count=True, help="-v info, -vv debug."),
) -> None:
    """Train an ensemble of MLPs and save one checkpoint per member."""
    from eb_ensembles.methods import MethodConfig
    from eb_ensembles.runs import RunConfig, train_run
    from eb_ensembles.training.config import TrainConfig

    setup_logging(verbose)
    _check_common(seed, device)
    run_config = RunConfig(
        dataset=dataset,
        holdout_classes=_ints(holdout, "--holdout"),
        method=MethodConfig(
            hidden=_ints(hidden, "--hidden"),
            train=TrainConfig(
                members=members,
                epochs=epochs,
                batch_size=batch_size,
                lr=lr,
                weight_decay=weight_decay,
                vectorise=vectorise,
                seed=seed,
                checkpoint_every=checkpoint_every,
                dtype=dtype,
            ),
        ),
    )
    summary = train_run(run_config, out, resume=resume, overwrite=overwrite, device=device)
    rows = {
        f"member {r['index']}": {"status": r["status"], "epochs": r["epochs"], "train_nll": r["train_nll"]}
        for r in summary["members"]
    }
    typer.echo(_table(rows, ("status", "epochs", "train_nll")))
    typer.echo(f"EB gap to best member: {summary['eb/gap_to_best_member']:.4g} nats; run in {out}")


@app.command()
@exit_on_user_error
def evaluate(
    run: Path = typer.Option(..., "--run", help="A training run directory written by `train`."),
    out: Path = typer.Option(Path("runs/eb-ensembles-eval"), "--out", help="Where metrics.json goes."),
    fast: bool = typer.Option(False, "--fast", help="Fewer corruptions and OOD points."),
    seed: int | None = typer.Option(None, help="Seed of corruptions and OOD sets (default: the run's seed)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace the evaluation already in --out."),
    device: str | None = typer.Option(None, help="cpu, cuda or mps for the members' forward passes."),
    config: str | None = typer.Option(
        None, "--config", is_eager=True, callback=config_option_callback, help=_CONFIG_HELP
    ),
    verbose: int = typer.Option(0, "--verbose", "-v", count=True, help="-v info, -vv debug."),
) -> None:
    """Evaluate a trained ensemble: test metrics, shift, OOD; writes metrics.json."""
    from eb_ensembles.runs import evaluate_run

    setup_logging(verbose)
    _check_common(seed, device)
    result = evaluate_run(run, out, fast=fast, seed=seed, device=device, overwrite=overwrite)
    test = result["test"]
    typer.echo(_table({f"ensemble M={result['members']}": test}, tuple(test)[:6]))


@app.command()
@exit_on_user_error
def experiment(
    name: str = typer.Argument(..., help="E1, E2 or E5."),
    out: Path = typer.Option(Path("runs/eb-ensembles-experiment"), "--out", help="Run directory."),
    seed: int = typer.Option(0, help="Seed."),
    fast: bool = typer.Option(False, "--fast", help="Smoke-test budget (seconds)."),
    members: int | None = typer.Option(
        None, help="E1: ensemble size (default 20); E5: the largest M of the M-curve 1,2,5,10,... (default 10)."
    ),
    dataset: str = typer.Option("digits", help="E5 only: digits or mnist1d."),
    device: str | None = typer.Option(None, help="E5 training device: cpu, cuda or mps."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace the run already in --out."),
    config: str | None = typer.Option(
        None, "--config", is_eager=True, callback=config_option_callback, help=_CONFIG_HELP
    ),
    verbose: int = typer.Option(0, "--verbose", "-v", count=True, help="-v info, -vv debug."),
) -> None:
    """Run one experiment of EXPERIMENTS; writes metrics.json and PNG figures."""
    from eb_ensembles.experiments import check_experiment_options, run_experiment

    setup_logging(verbose)
    _check_common(seed, device)
    spec = check_experiment_options(name, members=members, dataset=dataset)
    run = RunDir(out, overwrite=overwrite, flags=("--overwrite",))
    options = {"name": spec.name, "seed": seed, "fast": fast, "members": members, "dataset": dataset}
    run.write_config(options, seed=seed, device=device, packages=("eb-ensembles",))
    spec, result = run_experiment(spec.name, out, seed=seed, fast=fast, members=members, dataset=dataset, device=device)
    if spec.summary_keys:
        typer.echo("\n".join(f"{k:<36}{result[k]:.6g}" for k in spec.summary_keys))
        run.write_summary(result)
    else:
        typer.echo(_table(result["table"], spec.table_columns))
        run.write_summary({k: result[k] for k in ("table", "eb") if k in result})


@app.command()
@exit_on_user_error
def demo(
    out: Path = typer.Option(Path("runs/eb-ensembles-demo"), "--out", help="Run directory."),
    seed: int = typer.Option(0, help="Seed."),
    fast: bool = typer.Option(False, "--fast", help="Finish in seconds (smoke test; its numbers mean nothing)."),
    device: str | None = typer.Option(None, help="E5 training device: cpu, cuda or mps."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace the run already in --out."),
    config: str | None = typer.Option(
        None, "--config", is_eager=True, callback=config_option_callback, help=_CONFIG_HELP
    ),
    verbose: int = typer.Option(0, "--verbose", "-v", count=True, help="-v info, -vv debug."),
) -> None:
    """E1 (exact EB on linear interpolators) and a small E5 on digits, with a methods x metrics table."""
    from eb_ensembles.demo import run_demo

    setup_logging(verbose)
    _check_common(seed, device)
    run = RunDir(out, overwrite=overwrite, flags=("--overwrite",))
    run.write_config({"seed": seed, "fast": fast}, seed=seed, device=device, packages=("eb-ensembles",))
    result = run_demo(out, seed=seed, fast=fast, device=device)
    e1 = result["E1"]
    typer.echo(
        f"E1 ({e1['members']} interpolating members, d={e1['d']} > n={e1['n']}): EB gap {e1['eb_gap']:.2e} nats, "
        f"|posterior - prior| {e1['max_abs_posterior_minus_prior']:.1e}, |BMA - ensemble| "
        f"{e1['max_abs_bma_minus_ensemble']:.1e}, spread on data {e1['max_spread_on_training_points']:.1e} "
        f"vs off data {e1['mean_spread_outside_data_range']:.3f}"
    )
    if fast:
        typer.echo("SMOKE RUN (--fast): a few epochs and M <= 3; these numbers only show the pipeline runs.")
    typer.echo("E5 digits (classes 8, 9 held out as OOD), one row per method:")
    typer.echo(_table(result["E5"]["table"], ("acc", "nll", "brier", "ece", "auroc_heldout_entropy", "shift_nll_sev5")))
    run.write_summary({"E1": e1, "E5": {"table": result["E5"]["table"], "eb": result["E5"]["eb"]}})


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
