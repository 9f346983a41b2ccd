"""Command-line interface of dgm-eval (thin: options map onto the config dataclasses, then one job call).

Every verb's options come from :mod:`dgm_eval.config` (``sixlab_shared.cli.config_options``: one option per field,
the dataclass's default and docstring); the shared options (``--out --seed --device --threads --config -v``,
``--fast`` on the demo) come from ``sixlab_shared.cli``. ``--metrics`` choices and help come from the metric
registry.
"""

from __future__ import annotations

import dataclasses

import typer

from dgm_eval._version import __version__
from dgm_eval.config import ComputeConfig, EncoderConfig, FeaturesConfig, StatsConfig
from dgm_eval.demo import DemoConfig
from dgm_eval.metric_registry import METRIC_NAMES
from sixlab_shared import UserError, exit_on_user_error, setup_logging
from sixlab_shared.cli import (
    config_option,
    config_options,
    device_option,
    fast_option,
    make_app,
    out_option,
    threads_option,
    verbose_option,
)

app = make_app(
    "dgm-eval",
    "dgm-eval: evaluate generative image models (Stein et al., NeurIPS 2023). See `dgm-eval COMMAND --help`.",
    __version__,
)

#: the encoder options every extracting verb shares (``device`` is the shared --device).
ENCODER_OPTIONS = config_options(EncoderConfig, into="encoder_cfg", exclude=("device",))
METRICS_HELP = (
    "Metrics (repeat the option or separate by commas; 'all' for every one): "
    + ", ".join(METRIC_NAMES)
    + ". See `dgm-eval metrics`."
)


@app.command()
@exit_on_user_error
@config_options(ComputeConfig, exclude=("ref", "gens", "out", "encoder"), help={"metrics": METRICS_HELP})
@ENCODER_OPTIONS
def compute(
    paths: list[str] = typer.Argument(
        ...,
        help="REF GEN [GEN ...]: reference (train) set, then generated sets (PATH:train: a training set, "
        "drawn with replacement, in a generated set's place).",
    ),
    out: str = out_option(ComputeConfig.out),
    device: str | None = device_option(),
    threads: int | None = threads_option(),
    config_file: str | None = config_option(),
    verbose: int = verbose_option(),
    *,
    config: ComputeConfig,
    encoder_cfg: EncoderConfig,
) -> None:
    """Compute metrics of each GEN against REF; prints a table and writes results.json/results.csv/config.json."""
    from dgm_eval.evaluation import run_compute
    from dgm_eval.results import format_table

    setup_logging(verbose)
    if len(paths) < 2:
        raise UserError("pass a reference set and at least one generated set: dgm-eval compute REF GEN [GEN ...]")
    cfg = dataclasses.replace(
        config,
        ref=paths[0],
        gens=list(paths[1:]),
        out=str(out),
        encoder=dataclasses.replace(encoder_cfg, device=device),
    )
    results = run_compute(cfg)
    typer.echo(format_table(results))


@app.command()
@exit_on_user_error
@config_options(FeaturesConfig, exclude=("path", "out", "encoder"))
@ENCODER_OPTIONS
def features(
    path: str = typer.Argument(..., help="Image folder or ADM .npz."),
    out: str = out_option(),
    device: str | None = device_option(),
    threads: int | None = threads_option(),
    config_file: str | None = config_option(),
    verbose: int = verbose_option(),
    *,
    config: FeaturesConfig,
    encoder_cfg: EncoderConfig,
) -> None:
    """Extract features of images into the .npz file --out (usable as REF/GEN/--test of `compute`)."""
    from dgm_eval.evaluation import run_features

    setup_logging(verbose)
    cfg = dataclasses.replace(config, path=path, out=str(out), encoder=dataclasses.replace(encoder_cfg, device=device))
    feats = run_features(cfg)
    typer.echo(f"wrote {out}: {feats.features.shape[0]} x {feats.features.shape[1]} features ({feats.skipped} skipped)")


@app.command()
@exit_on_user_error
@config_options(StatsConfig, exclude=("path", "out", "encoder"))
@ENCODER_OPTIONS
def stats(
    path: str = typer.Argument(..., help="Image folder, ADM .npz or features .npz."),
    out: str = out_option(),
    device: str | None = device_option(),
    threads: int | None = threads_option(),
    config_file: str | None = config_option(),
    verbose: int = verbose_option(),
    *,
    config: StatsConfig,
    encoder_cfg: EncoderConfig,
) -> None:
    """Write reference statistics (float64 mean/covariance, streaming) to the .npz file --out."""
    from dgm_eval.evaluation import run_stats

    setup_logging(verbose)
    cfg = dataclasses.replace(config, path=path, out=str(out), encoder=dataclasses.replace(encoder_cfg, device=device))
    result = run_stats(cfg)
    typer.echo(f"wrote {out}: mean and covariance of {result.n} samples, D={result.dim}")


@app.command()
@exit_on_user_error
def encoders(
    json_output: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
    config_file: str | None = config_option(),
) -> None:
    """List the encoders: names, architectures, feature dims, support, weight sources and preprocessing."""
    import json

    from dgm_eval.encoders import list_encoders

    infos = list_encoders()
    if json_output:
        typer.echo(json.dumps([info.as_dict() for info in infos], indent=2))
        return
    rows = [["name", "archs (default)", "dim", "supported"]]
    for info in infos:
        archs = ",".join(info.archs) + (f" ({info.default_arch})" if info.default_arch else "") if info.archs else "-"
        rows.append([info.name, archs, str(info.dim), "yes" if info.supported else "no"])
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    typer.echo("  ".join(cell.ljust(w) for cell, w in zip(rows[0], widths, strict=True)).rstrip())
    for info, row in zip(infos, rows[1:], strict=True):
        typer.echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
        typer.echo(f"    weights:       {info.weight_source}")
        typer.echo(f"    preprocessing: {info.preprocessing}")
        if not info.supported:
            typer.echo(f"    unsupported:   {info.reason}")


@app.command()
@exit_on_user_error
def metrics(
    config_file: str | None = config_option(),
) -> None:
    """List the metrics (from the registry): name, what it measures, whether it needs --test or works from stats."""
    from dgm_eval.metric_registry import DEFAULT_METRICS, metrics_help

    typer.echo(metrics_help())
    typer.echo(f"default: {','.join(DEFAULT_METRICS)}")


@app.command()
@exit_on_user_error
@config_options(DemoConfig, exclude=("out", "device", "fast"))
def demo(
    out: str = out_option(DemoConfig.out),
    fast: bool = fast_option(),
    device: str | None = device_option(),
    threads: int | None = threads_option(),
    config_file: str | None = config_option(),
    verbose: int = verbose_option(),
    *,
    config: DemoConfig,
) -> None:
    """Degradation study on scikit-learn digits: every metric vs noise, blur, mode dropping and memorisation."""
    from dgm_eval.demo import format_demo, run_demo

    setup_logging(verbose)
    cfg = dataclasses.replace(config, out=str(out), fast=fast, device=device or DemoConfig.device)
    result = run_demo(cfg)
    typer.echo(format_demo(result))


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
