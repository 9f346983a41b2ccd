"""Command-line interface of fusemix (thin: parses options, builds a config, calls the library)."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import typer

from fusemix import __version__
from fusemix.demo import DemoConfig
from fusemix.train import TrainConfig
from sixlab_shared import UserError, exit_on_user_error, is_main_process, setup_logging
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

logger = logging.getLogger(__name__)

app = make_app(
    "fusemix", "FuseMix: align frozen unimodal encoders with small adapters trained on cached latents.", __version__
)


def _setup(verbose: int) -> None:
    setup_logging(verbose)  # --threads is applied by the shared option while parsing


def _recall_table(metrics: dict[str, float]) -> str:
    lines = [f"{'':<14} {'R@1':>7} {'R@5':>7} {'R@10':>7}"]
    for label, prefix in (("item->text", "i2t"), ("text->item", "t2i")):
        lines.append(f"{label:<14} " + " ".join(f"{metrics[f'{prefix}_r{k}']:7.2f}" for k in (1, 5, 10)))
        lines.append(f"{'  chance':<14} " + " ".join(f"{metrics[f'chance/{prefix}_r{k}']:7.2f}" for k in (1, 5, 10)))
    lines.append(f"rsum {metrics['rsum']:.2f}  r_mean {metrics['r_mean']:.2f}  "
                 f"({metrics['n_items']} items, {metrics['n_texts']} captions)")  # fmt: skip
    return "\n".join(lines)


@app.command()
@exit_on_user_error
def cache(
    manifest: Path = typer.Option(..., "--manifest", help="CSV/JSONL manifest: item_id,item_path,caption,split."),
    dataset: str = typer.Option(..., "--dataset", help="Name of the dataset inside the cache."),
    cache_dir: Path = typer.Option(..., "--cache-dir", help="Root folder of the latent cache."),
    item_encoder: str = typer.Option(
        "dinov2-g", "--item-encoder", help="Image or audio encoder name, or hf:<id>@<pooling> (see --modality)."
    ),
    modality: str = typer.Option(
        None, "--modality", help="image or audio: the items' modality for an hf: encoder (default: image)."
    ),
    text_encoder: str = typer.Option("bge-large", "--text-encoder", help="Text encoder name or hf:<id>@<pooling>."),
    split: list[str] = typer.Option([], "--split", help="Split(s) to extract (repeat; default: all)."),
    shard_size: int = typer.Option(4096, "--shard-size", help="Inputs per resumable shard."),
    strict: bool = typer.Option(False, "--strict", help="Fail on an unreadable item instead of skipping it."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Rebuild a cache made from other content or weights."),
    device: str | None = device_option(),
    threads: int | None = threads_option(),
    config_file: str | None = config_option(),
    verbose: int = verbose_option(),
) -> None:
    """Extract frozen-encoder latents of a paired dataset into the safetensors cache (streaming, resumable).

    Run it again to resume an interrupted extraction; finished files are reused.
    """
    from fusemix.cache import build_cache
    from fusemix.data.manifest import read_manifest
    from fusemix.encoders import resolve_encoder

    _setup(verbose)
    if modality not in (None, "image", "audio"):
        raise UserError(f"--modality must be image or audio, got {modality!r}")
    if shard_size < 1:
        raise UserError(f"--shard-size must be >= 1, got {shard_size}")
    item_spec = resolve_encoder(item_encoder, modality or "item")
    text_spec = resolve_encoder(text_encoder, "text")
    parsed = read_manifest(manifest)
    from sixlab_shared import get_device

    reports = build_cache(
        parsed, dataset, item_spec, text_spec, cache_dir, splits=split or None, device=get_device(device),
        shard_size=shard_size, strict=strict, overwrite=overwrite,
    )  # fmt: skip
    typer.echo(f"{'split':<10} {'side':<6} {'encoded':>8} {'skipped':>8} {'distinct':>8} {'reused':>7}  file")
    for split_name, sides in reports.items():
        for side, report in sides.items():
            distinct = "-" if report.n_distinct is None else report.n_distinct
            typer.echo(
                f"{split_name:<10} {side:<6} {report.n_encoded:>8} {report.n_skipped:>8} {distinct:>8} "
                f"{str(report.reused):>7}  {report.path}"
            )


@app.command("train")
@exit_on_user_error
@config_options(TrainConfig, into="train_config", exclude=("device",))
def train_command(
    *,
    train_config: TrainConfig,
    out: Path = out_option(),
    resume: bool = resume_option(),
    overwrite: bool = overwrite_option(),
    device: str | None = device_option(),
    threads: int | None = threads_option(),
    config_file: str | None = config_option(),
    verbose: int = verbose_option(),
) -> None:
    """Train FuseMix adapters on cached latents (no encoder is loaded). Every option is a field of TrainConfig."""
    from fusemix.train import train

    _setup(verbose)
    # --val-split '' trains without validation; the device is the shared, validated option
    train_config = dataclasses.replace(train_config, val_split=train_config.val_split or None, device=device)
    train_config.validate()  # before anything is written
    result = train(train_config, out, resume=resume, overwrite=overwrite)
    if not is_main_process():  # under accelerate/torchrun only the main process reports
        return
    typer.echo(f"trained {result.steps} steps ({result.steps_per_second:.1f} steps/s), tau {result.temperature:.4f}")
    if result.best is not None:
        typer.echo(f"best validation (step {result.best['step']}):")
        typer.echo(_recall_table(result.best))
    typer.echo(f"run directory: {result.run_dir}")


@app.command()
@exit_on_user_error
def evaluate(
    checkpoint: Path = typer.Option(..., "--checkpoint", help="A trained fusion checkpoint (.safetensors)."),
    cache_dir: Path = typer.Option(..., "--cache-dir", help="Root folder of the latent cache."),
    split: str = typer.Option("test", "--split", help="Split to evaluate."),
    dataset: str = typer.Option(None, "--dataset", help="Dataset (default: the one trained on)."),
    out: Path | None = out_option(None, help="Folder for the metrics (config.json, summary.json); optional."),
    chunk_size: int = typer.Option(256, "--chunk-size", help="Similarity rows per chunk (bounds memory)."),
    overwrite: bool = overwrite_option(),
    device: str | None = device_option(),
    threads: int | None = threads_option(),
    config_file: str | None = config_option(),
    verbose: int = verbose_option(),
) -> None:
    """Recall@1/5/10 both ways with several captions per item, chance levels beside."""
    from fusemix.evaluate import evaluate_checkpoint
    from sixlab_shared import get_device

    _setup(verbose)
    metrics = evaluate_checkpoint(
        checkpoint, cache_dir, split, dataset=dataset, device=get_device(device), chunk_size=chunk_size, out=out,
        overwrite=overwrite,
    )  # fmt: skip
    typer.echo(_recall_table(metrics))


@app.command()
@exit_on_user_error
def retrieve(
    checkpoint: Path = typer.Option(..., "--checkpoint", help="A trained fusion checkpoint."),
    cache_dir: Path = typer.Option(..., "--cache-dir", help="Root folder of the latent cache."),
    split: str = typer.Option("test", "--split", help="Gallery split."),
    query: str = typer.Option(None, "--query", help="A caption to find items for."),
    item_id: str = typer.Option(None, "--item-id", help="A cached item to find captions for."),
    item_file: Path = typer.Option(None, "--item-file", help="An image or audio file to find captions for."),
    k: int = typer.Option(5, "-k", help="Number of results."),
    dataset: str = typer.Option(None, "--dataset", help="Gallery dataset (default: the one trained on)."),
    device: str | None = device_option(),
    threads: int | None = threads_option(),
    config_file: str | None = config_option(),
    verbose: int = verbose_option(),
) -> None:
    """Query the trained space: a caption against cached items, or an item against cached captions."""
    from fusemix.query import retrieve as run_retrieve
    from sixlab_shared import get_device

    _setup(verbose)
    hits = run_retrieve(
        checkpoint,
        cache_dir,
        split,
        query=query,
        item_id=item_id,
        item_file=item_file,
        k=k,
        dataset=dataset,
        device=get_device(device),
    )
    for hit in hits:
        typer.echo(f"{hit.rank:>3} {hit.score:7.4f}  {hit.key}" + (f"  {hit.path}" if hit.path else ""))


@app.command()
@exit_on_user_error
@config_options(DemoConfig, into="demo_config", exclude=("seeds", "device", "subsamples"), rename={"sizes": "--size"})
def demo(
    *,
    demo_config: DemoConfig,
    out: Path = out_option(Path("runs/fusemix-demo")),
    fast: bool = fast_option(),
    seeds: int = typer.Option(None, "--seeds", help="Number of seeds (default 3; 1 with --fast)."),
    seed: int = seed_option(),
    overwrite: bool = overwrite_option(),
    device: str | None = device_option(),
    threads: int | None = threads_option(),
    config_file: str | None = config_option(),
    verbose: int = verbose_option(),
) -> None:
    """Synthetic shapes or sounds -> cached latents (frozen conv net or log-mel pooling, MiniLM) -> FuseMix vs
    no-mixup at two data sizes over seeds. Every option is a field of DemoConfig; with --fast the options you
    give still win over the fast sizes."""
    from fusemix.demo import format_demo_table, run_demo

    _setup(verbose)
    if fast:  # the fast preset, except for the options given with other values than the full demo's defaults
        full = DemoConfig(modality=demo_config.modality)
        given = {k: v for k, v in dataclasses.asdict(demo_config).items() if v != getattr(full, k)}
        demo_config = dataclasses.replace(DemoConfig.fast(demo_config.modality), **given)
    count = len(demo_config.seeds) if seeds is None else seeds
    if count < 1:
        raise UserError(f"--seeds must be >= 1, got {count}")
    if max(demo_config.sizes) > demo_config.train_pool:
        raise UserError(f"--size {max(demo_config.sizes)} exceeds --train-pool {demo_config.train_pool}")
    demo_config = dataclasses.replace(demo_config, seeds=tuple(range(seed, seed + count)), device=device)
    summary = run_demo(demo_config, out, overwrite=overwrite)
    typer.echo(format_demo_table(summary))
    typer.echo(f"run directory: {out} ({summary['seconds']:.0f} s)")


@app.command()
@exit_on_user_error
def curve(
    out: Path = out_option(Path("runs/fusemix-curve")),
    fast: bool = fast_option(),
    curve_modality: str = typer.Option("image", "--modality", help="image (shapes) or audio (sounds)."),
    sizes: list[int] = typer.Option([], "--size", help="Training items per point (repeat; default 50 100 200 400)."),
    subsample: list[str] = typer.Option(
        [], "--subsample", help="uniform, kdpp-item, kdpp-text (repeat; default: all three)."
    ),
    seeds: int = typer.Option(None, "--seeds", help="Seeds per point (default 3)."),
    seed: int = seed_option(),
    steps: int = typer.Option(None, "--steps", help="Training steps per run (default 200)."),
    overwrite: bool = overwrite_option(),
    device: str | None = device_option(),
    threads: int | None = threads_option(),
    config_file: str | None = config_option(),
    verbose: int = verbose_option(),
) -> None:
    """Data-efficiency curve: test recall vs training pairs, FuseMix vs no-mixup, uniform vs k-DPP subsets
    (summary.json + curve.png)."""
    from fusemix.demo import DemoConfig, format_demo_table, run_curve
    from fusemix.subsample import STRATEGIES

    _setup(verbose)
    if curve_modality not in ("image", "audio"):
        raise UserError(f"--modality must be image or audio, got {curve_modality!r}")
    for name in subsample:
        if name not in STRATEGIES:
            raise UserError(f"--subsample must be one of {', '.join(STRATEGIES)}, got {name!r}")
    if any(size < 1 for size in sizes):
        raise UserError(f"--size must be >= 1, got {min(sizes)}")
    for flag, value in (("--seeds", seeds), ("--steps", steps)):
        if value is not None and value < 1:
            raise UserError(f"{flag} must be >= 1, got {value}")
    base = DemoConfig.fast(curve_modality) if fast else DemoConfig(modality=curve_modality, steps=200)
    chosen_sizes = tuple(sorted(set(sizes))) or ((10, 20, 40) if fast else (50, 100, 200, 400))
    demo_config = dataclasses.replace(
        base,
        sizes=chosen_sizes,
        train_pool=max(base.train_pool, max(chosen_sizes)),
        subsamples=tuple(dict.fromkeys(subsample)) or STRATEGIES,
        seeds=tuple(range(seed, seed + (seeds if seeds is not None else (len(base.seeds) if fast else 3)))),
        steps=steps or base.steps,
        device=device,
    )
    summary = run_curve(demo_config, out, overwrite=overwrite)
    typer.echo(format_demo_table(summary))
    typer.echo(f"curve: {out / 'curve.png'}  numbers: {out / 'summary.json'} ({summary['seconds']:.0f} s)")


@app.command()
@exit_on_user_error
def generate(
    checkpoint: Path = typer.Option(..., "--checkpoint", help="Trained with --align-to-text on diffusers: latents."),
    audio: Path = typer.Option(..., "--audio", help="The clip to turn into an image."),
    pipeline: str = typer.Option(..., "--pipeline", help="The frozen diffusers pipeline (folder or hub id)."),
    out: Path = out_option(help="Image file to write (.png)."),
    steps: int = typer.Option(30, "--steps", help="Denoising steps."),
    guidance_scale: float = typer.Option(7.5, "--guidance-scale", help="Classifier-free guidance scale."),
    seed: int = seed_option(),
    overwrite: bool = overwrite_option(),
    device: str | None = device_option(),
    threads: int | None = threads_option(),
    config_file: str | None = config_option(),
    verbose: int = verbose_option(),
) -> None:
    """Audio -> image with a frozen text-to-image pipeline and an audio adapter aligned to its text space."""
    from fusemix.generate import GenerateConfig, generate_from_audio
    from sixlab_shared import atomic_write_with, get_device, require_output_file

    _setup(verbose)
    require_output_file(out, overwrite=overwrite, what="--out")
    image = generate_from_audio(
        checkpoint, audio, pipeline, GenerateConfig(steps=steps, guidance_scale=guidance_scale, seed=seed),
        device=get_device(device),
    )  # fmt: skip
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_with(out, lambda tmp: image.save(tmp, format="PNG"))
    typer.echo(f"image: {out} ({image.size[0]}x{image.size[1]})")


@app.command()
@exit_on_user_error
def manifest(
    source: str = typer.Option(..., "--format", help="clotho or audiocaps: the caption file's layout."),
    captions: Path = typer.Option(..., "--captions", help="The dataset's captions CSV for one split."),
    audio_dir: Path = typer.Option(..., "--audio-dir", help="Folder holding that split's clips."),
    split: str = typer.Option(..., "--split", help="Split name written into the manifest (train, val, test)."),
    out: Path = out_option(help="Manifest CSV to write (or extend with --append)."),
    pattern: str = typer.Option(
        "{youtube_id}.wav", "--pattern", help="AudioCaps clip file name from {youtube_id}, {start_time}."
    ),
    skip_missing: bool = typer.Option(False, "--skip-missing", help="Drop clips whose file is missing (counted)."),
    append: bool = typer.Option(False, "--append", help="Add the rows to an existing --out manifest."),
    overwrite: bool = overwrite_option(),
    config_file: str | None = config_option(),
    verbose: int = verbose_option(),
) -> None:
    """Write a manifest from AudioCaps or Clotho caption files for clips you already have."""
    from fusemix.data.audio_datasets import audiocaps_rows, clotho_rows
    from fusemix.data.manifest import read_manifest, write_manifest

    _setup(verbose)
    if source not in ("clotho", "audiocaps"):
        raise UserError(f"--format must be clotho or audiocaps, got {source!r}")
    if out.is_dir():
        raise UserError(f"--out {str(out)!r} is a folder; give a .csv file name")
    if out.exists() and not (append or overwrite):
        raise UserError(f"--out {str(out)!r} exists; pass --append to add this split or --overwrite to replace it")
    if append and not out.is_file():
        raise UserError(f"--append given but {str(out)!r} does not exist")
    if source == "clotho":
        rows, missing = clotho_rows(captions, audio_dir, split, skip_missing=skip_missing)
    else:
        rows, missing = audiocaps_rows(captions, audio_dir, split, pattern=pattern, skip_missing=skip_missing)
    if not rows:
        raise UserError(f"no clip of {str(captions)!r} was found under {str(audio_dir)!r}; check --audio-dir")
    existing = []
    if append:
        old = read_manifest(out, check_files=False)
        if split in old.splits:
            raise UserError(f"{str(out)!r} already has a split {split!r}")
        for name, part in old.splits.items():
            existing += [{"item_id": part.item_ids[i], "item_path": str(part.item_paths[i]), "caption": c,
                          "split": name} for c, i in zip(part.captions, part.txt2item, strict=True)]  # fmt: skip
    out.parent.mkdir(parents=True, exist_ok=True)
    staged = out.with_name(out.name + ".new")
    write_manifest(staged, existing + rows)
    try:
        read_manifest(staged)  # every rule of the manifest (empty captions, one path per item) before replacing
    except UserError:
        staged.unlink()
        raise
    staged.replace(out)
    clips = len({r["item_id"] for r in rows})
    typer.echo(f"{split}: {clips} clips, {len(rows)} captions, {len(missing)} clip(s) missing -> {out}")


@app.command()
@exit_on_user_error
def encoders(
    config_file: str | None = config_option(),
    verbose: int = verbose_option(),
) -> None:
    """List the registered encoders (any Hugging Face model also works as hf:<id>@<pooling>)."""
    from fusemix.encoders import registered_encoders

    for name, spec in registered_encoders().items():
        typer.echo(f"{name:<18} {spec.modality:<6} {spec.pooling:<7} {spec.dim or '?':>5}  {spec.model}")


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
