"""Command-line interface of eb-ensembles: options map onto the config dataclasses, then one library call.

``train`` builds the config chain :class:`~eb_ensembles.runs.RunConfig` → :class:`~eb_ensembles.methods.MethodConfig`
→ :class:`~eb_ensembles.training.config.TrainConfig` from one ``--option`` per field
(:func:`sixlab_shared.cli.config_options`; defaults and help come from the dataclasses). ``experiment`` dispatches
through :data:`eb_ensembles.experiments.EXPERIMENTS`. The shared options (``--out --seed --device --threads
--config -v``) come from :mod:`sixlab_shared.cli` and are checked while parsing, before any folder is made.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
from pathlib import Path

import typer

from eb_ensembles import __version__
from eb_ensembles.data import DATASETS
from eb_ensembles.experiments import EXPERIMENTS, check_experiment_options, run_experiment
from eb_ensembles.methods import MethodConfig
from eb_ensembles.runs import RunConfig, evaluate_run, train_run
from eb_ensembles.training.config import TrainConfig
from sixlab_shared import RunDir, exit_on_user_error, is_main_process, setup_logging
from sixlab_shared.cli import (
    HELP,
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
    "eb-ensembles", "Deep ensembles as empirical Bayes: train, evaluate, run experiments E1/E2/E5, demo.", __version__
)

#: MethodConfig fields `train` does not expose: it trains a deep ensemble, which uses none of them (the BNN
#: baselines run inside `experiment E5` and `demo`), and `device` is the shared --device option.
TRAIN_EXCLUDED_METHOD_FIELDS = (
    "train",
    "device",
    "prior_precision",
    "samples",
    "dropout",
    "laplace_subset",
    "laplace_backend",
    "swag_rank",
    "swag_epochs",
    "swag_lr",
    "hmc_chains",
    "hmc_warmup",
    "hmc_draws",
    "hmc_leapfrog",
    "hmc_target_accept",
    "hmc_adapt_mass",
)


def attribute_help(config_cls: type) -> dict[str, str]:
    """Each field's one-line help from the ``Attributes:`` section of a dataclass's docstring."""
    doc = inspect.getdoc(config_cls) or ""
    section = doc.split("Attributes:", 1)[1] if "Attributes:" in doc else ""
    out: dict[str, str] = {}
    current: list[str] = []
    for line in section.splitlines():
        match = re.match(r"^    (\w+(?:, \w+)*): (.*)$", line)
        if match:
            current = match.group(1).split(", ")
            for name in current:
                out[name] = match.group(2).strip()
        elif line.startswith("        ") and current:
            for name in current:
                out[name] += " " + line.strip()
        elif line.strip() and not line.startswith(" "):
            break
    return {k: re.sub(r":\w+:`~?([^`]+)`", r"\1", v).replace("``", "") for k, v in out.items()}


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
@config_options(
    RunConfig,
    into="run_config",
    exclude=("method",),
    rename={"holdout_classes": "--holdout"},
    help={**attribute_help(RunConfig), "dataset": f"One of {', '.join(DATASETS)}."},
)
@config_options(MethodConfig, into="method", exclude=TRAIN_EXCLUDED_METHOD_FIELDS, help=attribute_help(MethodConfig))
@config_options(TrainConfig, into="train_config", help=attribute_help(TrainConfig))
def train(
    out: Path = out_option(Path("runs/eb-ensembles-train")),
    device: str | None = device_option(),
    threads: int | None = threads_option(),
    resume: bool = resume_option(),
    overwrite: bool = overwrite_option(),
    config_file: str | None = config_option(),
    verbose: int = verbose_option(),
    *,
    train_config: TrainConfig,
    method: MethodConfig,
    run_config: RunConfig,
) -> None:
    """Train an ensemble of MLPs and save one checkpoint per member."""
    setup_logging(verbose)
    method = dataclasses.replace(method, train=train_config, device=device)
    run_config = dataclasses.replace(run_config, method=method)
    summary = train_run(run_config, out, resume=resume, overwrite=overwrite, device=device)
    if not is_main_process():  # a sharded job's other processes print nothing
        return
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
    out: Path = out_option(Path("runs/eb-ensembles-eval")),
    fast: bool = fast_option(
        help=f"{HELP['fast']} Here: two corruptions at severities 1, 3, 5 and 200 points per synthetic OOD set."
    ),
    seed: int = seed_option(),
    device: str | None = device_option(),
    threads: int | None = threads_option(),
    overwrite: bool = overwrite_option(),
    config_file: str | None = config_option(),
    verbose: int = verbose_option(),
) -> None:
    """Evaluate a trained ensemble (test metrics, shift, OOD; --seed seeds the corruptions and OOD sets)."""
    setup_logging(verbose)
    result = evaluate_run(run, out, fast=fast, seed=seed, device=device, overwrite=overwrite)
    test = result["test"]
    typer.echo(_table({f"ensemble M={result['members']}": test}, tuple(test)[:6]))


@app.command()
@exit_on_user_error
def experiment(
    name: str = typer.Argument(..., help=f"One of {', '.join(EXPERIMENTS)}."),
    out: Path = out_option(Path("runs/eb-ensembles-experiment")),
    seed: int = seed_option(),
    fast: bool = fast_option(),
    members: int | None = typer.Option(
        None, help="E1: ensemble size (default 20); E5: the largest M of the M-curve 1,2,5,10,... (default 10)."
    ),
    dataset: str = typer.Option("digits", help="E5 only: digits or mnist1d."),
    device: str | None = device_option(),
    threads: int | None = threads_option(),
    overwrite: bool = overwrite_option(),
    config_file: str | None = config_option(),
    verbose: int = verbose_option(),
) -> None:
    """Run one experiment of EXPERIMENTS; writes metrics.json and PNG figures."""
    setup_logging(verbose)
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
    out: Path = out_option(Path("runs/eb-ensembles-demo")),
    seed: int = seed_option(),
    fast: bool = fast_option(),
    device: str | None = device_option(),
    threads: int | None = threads_option(),
    overwrite: bool = overwrite_option(),
    config_file: str | None = config_option(),
    verbose: int = verbose_option(),
) -> None:
    """E1 (exact EB on linear interpolators) and a small E5 on digits, with a methods x metrics table."""
    from eb_ensembles.demo import run_demo

    setup_logging(verbose)
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
    columns = ("acc", "nll", "brier", "ece", "auroc_heldout_entropy", "shift_nll_sev5", "agree_hmc", "tv_hmc")
    typer.echo(_table(result["E5"]["table"], columns))
    run.write_summary({"E1": e1, "E5": {"table": result["E5"]["table"], "eb": result["E5"]["eb"]}})


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
