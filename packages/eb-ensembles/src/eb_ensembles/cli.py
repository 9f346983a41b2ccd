"""Command-line interface of eb-ensembles (thin: parses options and calls the library)."""

from __future__ import annotations

from pathlib import Path

import typer

from eb_ensembles import __version__
from sixlab_shared import RunDir, UserError, config_option_callback, exit_on_user_error, setup_logging

app = typer.Typer(
    name="eb-ensembles",
    help="Deep ensembles as empirical Bayes: train, evaluate, run experiments E1/E2/E5, demo.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

EXPERIMENT_NAMES = ("E1", "E2", "E5")
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
    config: str | None = typer.Option(
        None, "--config", is_eager=True, callback=config_option_callback, help=_CONFIG_HELP
    ),
    verbose: int = typer.Option(0, "--verbose", "-v", count=True, help="-v info, -vv debug."),
) -> None:
    """Train an ensemble of MLPs and save one checkpoint per member."""
    from eb_ensembles.ensemble import EnsembleConfig
    from eb_ensembles.runs import TrainRunConfig, train_run

    setup_logging(verbose)
    run_config = TrainRunConfig(
        dataset=dataset,
        holdout_classes=_ints(holdout, "--holdout"),
        hidden=_ints(hidden, "--hidden"),
        ensemble=EnsembleConfig(
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
    )
    summary = train_run(run_config, out, resume=resume, device=device)
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
    device: str | None = typer.Option(None, help="cpu, cuda or mps for the members' forward passes."),
    config: str | None = typer.Option(
        None, "--config", is_eager=True, callback=config_option_callback, help=_CONFIG_HELP
    ),
    verbose: int = typer.Option(0, "--verbose", "-v", count=True, help="-v info, -vv debug."),
) -> None:
    """Evaluate a trained ensemble: test metrics, shift, OOD; writes metrics.json."""
    from eb_ensembles.runs import evaluate_run

    setup_logging(verbose)
    result = evaluate_run(run, out, fast=fast, seed=seed, device=device)
    test = result["test"]
    typer.echo(_table({f"ensemble M={result['members']}": test}, tuple(test)[:6]))


@app.command()
@exit_on_user_error
def experiment(
    name: str = typer.Argument(..., help="E1, E2 or E5."),
    out: Path = typer.Option(Path("runs/eb-ensembles-experiment"), "--out", help="Run directory."),
    seed: int = typer.Option(0, help="Seed."),
    fast: bool = typer.Option(False, "--fast", help="Smoke-test budget (seconds)."),
    members: int = typer.Option(
        20, help="E1: ensemble size; E5: the largest M of the M-curve (1,2,5,10,... up to it)."
    ),
    dataset: str = typer.Option("digits", help="E5 only: digits or mnist1d."),
    device: str | None = typer.Option(None, help="E5 training device: cpu, cuda or mps."),
    config: str | None = typer.Option(
        None, "--config", is_eager=True, callback=config_option_callback, help=_CONFIG_HELP
    ),
    verbose: int = typer.Option(0, "--verbose", "-v", count=True, help="-v info, -vv debug."),
) -> None:
    """Run experiment E1, E2 or E5; writes metrics.json and PNG figures."""
    from eb_ensembles.experiments.e5 import E5_DATASETS

    setup_logging(verbose)
    name = name.upper()
    if name not in EXPERIMENT_NAMES:
        raise UserError(f"unknown experiment {name!r}; choose one of {', '.join(EXPERIMENT_NAMES)}")
    if members < 1:
        raise UserError(f"--members must be >= 1, got {members}")
    if name == "E5" and dataset not in E5_DATASETS:
        raise UserError(f"E5 runs on {', '.join(E5_DATASETS)}, got --dataset {dataset!r}")
    run = RunDir(out)
    options = {"name": name, "seed": seed, "fast": fast, "members": members, "dataset": dataset}
    run.write_config(options, seed=seed, device=device, packages=("eb-ensembles",))
    if name == "E1":
        from eb_ensembles.experiments.e1 import run_e1

        result = run_e1(out, seed=seed, members=members, fast=fast)
        keys = ("eb_gap", "max_residual", "max_abs_posterior_minus_prior", "max_abs_bma_minus_ensemble")
        typer.echo("\n".join(f"{k:<36}{result[k]:.3e}" for k in keys))
    elif name == "E2":
        from eb_ensembles.experiments.e2 import run_e2

        result = run_e2(out, seed=seed, fast=fast)
        keys = ("log_sup", "shared_log_marginal_final", "shared_mass_on_argmax", "kw_log_marginal_final")
        typer.echo("\n".join(f"{k:<36}{result[k]:.6g}" for k in keys))
    else:
        from eb_ensembles.experiments.e5 import run_e5

        sizes = tuple(m for m in (1, 2, 5, 10, 20, 50) if m < members) + (members,)
        result = run_e5(out, seed=seed, dataset=dataset, fast=fast, sizes=sizes, device=device)
        typer.echo(_table(result["table"], ("acc", "nll", "brier", "ece", "auroc_heldout_entropy")))
    run.write_summary(result if name != "E5" else {"table": result["table"], "eb": result["eb"]})


@app.command()
@exit_on_user_error
def demo(
    out: Path = typer.Option(Path("runs/eb-ensembles-demo"), "--out", help="Run directory."),
    seed: int = typer.Option(0, help="Seed."),
    fast: bool = typer.Option(False, "--fast", help="Finish in seconds (smoke test)."),
    device: str | None = typer.Option(None, help="E5 training device: cpu, cuda or mps."),
    config: str | None = typer.Option(
        None, "--config", is_eager=True, callback=config_option_callback, help=_CONFIG_HELP
    ),
    verbose: int = typer.Option(0, "--verbose", "-v", count=True, help="-v info, -vv debug."),
) -> None:
    """E1 (exact EB on linear interpolators) and a small E5 on digits, with a methods x metrics table."""
    from eb_ensembles.demo import run_demo

    setup_logging(verbose)
    run = RunDir(out)
    run.write_config({"seed": seed, "fast": fast}, seed=seed, device=device, packages=("eb-ensembles",))
    result = run_demo(out, seed=seed, fast=fast, device=device)
    e1 = result["E1"]
    typer.echo(
        f"E1 ({e1['members']} interpolating members, d={e1['d']} > n={e1['n']}): EB gap {e1['eb_gap']:.2e} nats, "
        f"|posterior - prior| {e1['max_abs_posterior_minus_prior']:.1e}, |BMA - ensemble| "
        f"{e1['max_abs_bma_minus_ensemble']:.1e}, spread on data {e1['max_spread_on_training_points']:.1e} "
        f"vs off data {e1['mean_spread_outside_data_range']:.3f}"
    )
    typer.echo("E5 digits (classes 8, 9 held out as OOD); BNN baselines not built yet:")
    typer.echo(_table(result["E5"]["table"], ("acc", "nll", "brier", "ece", "auroc_heldout_entropy", "shift_nll_sev5")))
    run.write_summary({"E1": e1, "E5": {"table": result["E5"]["table"], "eb": result["E5"]["eb"]}})


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
