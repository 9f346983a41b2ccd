"""Command-line interface of dgm-eval (thin: parses options, builds a config, calls the library)."""

from __future__ import annotations

from pathlib import Path

import typer

from dgm_eval._version import __version__
from sixlab_shared import UserError, config_option_callback, exit_on_user_error, setup_logging

app = typer.Typer(
    name="dgm-eval",
    help="dgm-eval: evaluate generative image models (Stein et al., NeurIPS 2023). See `dgm-eval COMMAND --help`.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"dgm-eval {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version_callback, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """dgm-eval command-line tool."""


CONFIG_OPTION = typer.Option(
    None, "--config", is_eager=True, callback=config_option_callback, help="TOML file setting any option."
)
ENCODER_HELP = (
    "Feature encoder (see `dgm-eval encoders`): "
    "inception|sinception|dinov2|clip|convnext|mae|data2vec|swav|pixel|random."
)

# Options shared by compute, features and stats: one definition, one help text.
ENCODER_OPTION = typer.Option("dinov2", "--encoder", help=ENCODER_HELP)
ARCH_OPTION = typer.Option(None, "--arch", help="Encoder architecture, e.g. dinov2: vits14|vitb14|vitl14|vitg14.")
WEIGHTS_OPTION = typer.Option(None, "--weights", help="Local weights file/folder (or another id/URL).")
DEPTH_OPTION = typer.Option(0, "--depth", help="clip: 1 = projected features, -k drops the last k blocks.")
CLEAN_RESIZE_OPTION = typer.Option(False, "--clean-resize", help="clean-fid's float32 resizer.")
BATCH_SIZE_OPTION = typer.Option(64, "--batch-size", help="Images per forward pass (results do not depend on it).")
WORKERS_OPTION = typer.Option(0, "--num-workers", "--workers", help="DataLoader workers for decoding/preprocessing.")
PRECISION_OPTION = typer.Option("fp32", "--precision", help="fp32|bf16|fp16 (autocast, GPUs).")
DEVICE_OPTION = typer.Option(None, "--device", help="cpu|cuda|mps (default: best available).")
RECURSIVE_OPTION = typer.Option(False, "--recursive", help="Take every image below each folder.")
STRICT_OPTION = typer.Option(False, "--strict", help="Unreadable images are an error (default: skipped, counted).")
VERBOSE_OPTION = typer.Option(0, "-v", "--verbose", count=True, help="-v info, -vv debug.")


def _encoder_config(encoder, arch, weights, depth, clean_resize, batch_size, num_workers, precision, device):
    from dgm_eval.evaluation import EncoderConfig

    if precision not in {"fp32", "bf16", "fp16"}:
        raise UserError(f"--precision must be fp32, bf16 or fp16, got {precision!r}")
    return EncoderConfig(
        name=encoder,
        arch=arch,
        weights=weights,
        depth=depth,
        clean_resize=clean_resize,
        batch_size=batch_size,
        num_workers=num_workers,
        precision=precision,
        device=device,
    )


@app.command()
@exit_on_user_error
def compute(
    paths: list[str] = typer.Argument(..., help="REF GEN [GEN ...]: reference (train) set, then generated sets."),
    out: Path = typer.Option(Path("dgm-eval-results"), "--out", help="Output folder (results.json/csv, config)."),
    metrics: str = typer.Option(
        "fd,fd_infinity,kd,prdc,vendi,authpct,sw_approx",
        "--metrics",
        help="Comma-separated: fd,fd_eff,fd_infinity,kd,prdc,realism,is,vendi,authpct,sw_approx,ct,ct_test,"
        "ct_modified,fls,fls_overfit, or 'all'.",
    ),
    test: str | None = typer.Option(None, "--test", help="Held-out real images/features (ct*, fls*)."),
    encoder: str = ENCODER_OPTION,
    arch: str | None = ARCH_OPTION,
    weights: str | None = WEIGHTS_OPTION,
    depth: int = DEPTH_OPTION,
    clean_resize: bool = CLEAN_RESIZE_OPTION,
    nsample: int | None = typer.Option(50000, "--nsample", help="Cap per set (seeded choice, without replacement)."),
    seed: int = typer.Option(0, "--seed", help="Seed of every random step."),
    nearest_k: int = typer.Option(5, "--nearest-k", help="k of prdc and realism."),
    reduced_n: int = typer.Option(10000, "--reduced-n", help="Sample cap of prdc and fls."),
    splits: int = typer.Option(10, "--splits", help="Inception-score splits."),
    kd_subset_size: int = typer.Option(1000, "--kd-subset-size", help="KD subset size."),
    kd_num_subsets: int = typer.Option(100, "--kd-num-subsets", help="KD number of subsets."),
    batch_size: int = BATCH_SIZE_OPTION,
    num_workers: int = WORKERS_OPTION,
    precision: str = PRECISION_OPTION,
    device: str | None = DEVICE_OPTION,
    recursive: bool = RECURSIVE_OPTION,
    strict: bool = STRICT_OPTION,
    cache: bool = typer.Option(True, "--cache/--no-cache", help="Reuse/store features in the feature cache."),
    cache_dir: Path | None = typer.Option(
        None, "--cache-dir", help="Cache folder (default $DGM_EVAL_CACHE or ~/.cache/dgm-eval)."
    ),
    verify_cache: bool = typer.Option(
        False, "--verify-cache", help="Re-hash every input file (default: trust unchanged path, size and mtime)."
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace results already in --out."),
    config: str | None = CONFIG_OPTION,
    verbose: int = VERBOSE_OPTION,
) -> None:
    """Compute metrics of each GEN against REF; prints a table and writes results.json/results.csv/config.json."""
    from dgm_eval.evaluation import ComputeConfig, format_table, run_compute

    setup_logging(verbose)
    if len(paths) < 2:
        raise UserError("pass a reference set and at least one generated set: dgm-eval compute REF GEN [GEN ...]")
    cfg = ComputeConfig(
        ref=paths[0],
        gens=list(paths[1:]),
        out=str(out),
        test=test,
        metrics=[m for m in metrics.split(",") if m.strip()] or ["<none>"],
        encoder=_encoder_config(
            encoder, arch, weights, depth, clean_resize, batch_size, num_workers, precision, device
        ),
        nsample=nsample,
        seed=seed,
        nearest_k=nearest_k,
        reduced_n=reduced_n,
        splits=splits,
        kd_subset_size=kd_subset_size,
        kd_num_subsets=kd_num_subsets,
        recursive=recursive,
        strict=strict,
        cache=cache,
        cache_dir=None if cache_dir is None else str(cache_dir),
        verify_cache=verify_cache,
        overwrite=overwrite,
    )
    results = run_compute(cfg)
    typer.echo(format_table(results))


@app.command()
@exit_on_user_error
def features(
    path: str = typer.Argument(..., help="Image folder or ADM .npz."),
    output: Path = typer.Option(..., "-o", "--output", help="Features .npz to write."),
    encoder: str = ENCODER_OPTION,
    arch: str | None = ARCH_OPTION,
    weights: str | None = WEIGHTS_OPTION,
    depth: int = DEPTH_OPTION,
    clean_resize: bool = CLEAN_RESIZE_OPTION,
    logits: bool = typer.Option(False, "--logits", help="Also store classifier logits (inception)."),
    nsample: int | None = typer.Option(None, "--nsample", help="Cap (seeded choice)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the sample choice and the random encoder."),
    batch_size: int = BATCH_SIZE_OPTION,
    num_workers: int = WORKERS_OPTION,
    precision: str = PRECISION_OPTION,
    device: str | None = DEVICE_OPTION,
    recursive: bool = RECURSIVE_OPTION,
    strict: bool = STRICT_OPTION,
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing output file."),
    config: str | None = CONFIG_OPTION,
    verbose: int = VERBOSE_OPTION,
) -> None:
    """Extract features of images into an .npz (usable as REF/GEN/--test of `compute`)."""
    from dgm_eval.evaluation import run_features

    setup_logging(verbose)
    enc = _encoder_config(encoder, arch, weights, depth, clean_resize, batch_size, num_workers, precision, device)
    feats = run_features(
        path, str(output), encoder_cfg=enc, nsample=nsample, seed=seed, recursive=recursive, strict=strict,
        with_logits=logits, overwrite=overwrite,
    )  # fmt: skip
    typer.echo(
        f"wrote {output}: {feats.features.shape[0]} x {feats.features.shape[1]} features ({feats.skipped} skipped)"
    )


@app.command()
@exit_on_user_error
def stats(
    path: str = typer.Argument(..., help="Image folder, ADM .npz or features .npz."),
    output: Path = typer.Option(..., "-o", "--output", help="Statistics .npz to write (mu, sigma, n)."),
    encoder: str = ENCODER_OPTION,
    arch: str | None = ARCH_OPTION,
    weights: str | None = WEIGHTS_OPTION,
    depth: int = DEPTH_OPTION,
    clean_resize: bool = CLEAN_RESIZE_OPTION,
    save_features: bool = typer.Option(False, "--save-features", help="Also store the features."),
    chunk: int = typer.Option(4096, "--chunk", help="Images per streaming chunk."),
    nsample: int | None = typer.Option(None, "--nsample", help="Cap (seeded choice)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the sample choice and the random encoder."),
    batch_size: int = BATCH_SIZE_OPTION,
    num_workers: int = WORKERS_OPTION,
    precision: str = PRECISION_OPTION,
    device: str | None = DEVICE_OPTION,
    recursive: bool = RECURSIVE_OPTION,
    strict: bool = STRICT_OPTION,
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing output file."),
    config: str | None = CONFIG_OPTION,
    verbose: int = VERBOSE_OPTION,
) -> None:
    """Write reference statistics (float64 mean/covariance, streaming) for FD against this set."""
    from dgm_eval.evaluation import run_stats

    setup_logging(verbose)
    if chunk < 2:
        raise UserError(f"--chunk must be >= 2, got {chunk}")
    enc = _encoder_config(encoder, arch, weights, depth, clean_resize, batch_size, num_workers, precision, device)
    result = run_stats(
        path, str(output), encoder_cfg=enc, nsample=nsample, seed=seed, recursive=recursive, strict=strict,
        save_features=save_features, chunk=chunk, overwrite=overwrite,
    )  # fmt: skip
    typer.echo(f"wrote {output}: mean and covariance of {result.n} samples, D={result.dim}")


@app.command()
@exit_on_user_error
def encoders(
    json_output: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
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
def demo(
    out: Path = typer.Option(Path("runs/dgm-eval-demo"), "--out", help="Run folder (results, curves PNG)."),
    fast: bool = typer.Option(False, "--fast", help="Tiny version that finishes in seconds (tests)."),
    seed: int = typer.Option(0, "--seed", help="Seed of every random step."),
    device: str | None = typer.Option("cpu", "--device", help="cpu|cuda|mps (the demo defaults to cpu)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a previous demo in --out."),
    config: str | None = CONFIG_OPTION,
    verbose: int = VERBOSE_OPTION,
) -> None:
    """Degradation study on scikit-learn digits: every metric vs noise, blur, mode dropping and memorisation."""
    from dgm_eval.demo import DemoConfig, format_demo, run_demo

    setup_logging(verbose)
    result = run_demo(DemoConfig(out=str(out), fast=fast, seed=seed, device=device, overwrite=overwrite))
    typer.echo(format_demo(result))


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
