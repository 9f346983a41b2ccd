"""The demo: synthetic shapes or sounds -> cached latents -> FuseMix vs no-mixup at two data sizes over seeds.

Everything runs offline on CPU: the images are rendered (:mod:`fusemix.data.shapes`) and encoded by the seeded
``frozen-conv`` network, or the clips are synthesized (:mod:`fusemix.data.sounds`) and encoded by ``frozen-mel``
(log-mel mean/max pooling over the valid frames, then a seeded projection); the text encoder is the packaged
all-MiniLM-L6-v2 (``minilm``). Both methods
see the same items (same subset per seed), the same contrastive batch and the same number of steps; the checkpoint
is selected on the validation split and scored once on the test split.
"""

from __future__ import annotations

import dataclasses
import logging
import statistics
import time
from pathlib import Path
from typing import Any

from fusemix.cache import build_cache
from fusemix.checkpoint import load_fusion_checkpoint
from fusemix.data.manifest import read_manifest
from fusemix.data.shapes import make_shapes_dataset
from fusemix.data.sounds import make_sounds_dataset
from fusemix.encoders import resolve_encoder
from fusemix.evaluate import evaluate_retrieval
from fusemix.latents import load_paired_latents
from fusemix.train import TrainConfig, _subset_items, train
from sixlab_shared import RunDir, get_device

logger = logging.getLogger(__name__)

DATASETS = {"image": "shapes", "audio": "sounds"}
ITEM_ENCODERS = {"image": "frozen-conv", "audio": "frozen-mel"}


@dataclasses.dataclass
class DemoConfig:
    """Settings of the demo (defaults: a few minutes on 2 CPU cores)."""

    sizes: tuple[int, ...] = (100, 1000)
    """Training-set sizes in items, images or clips (five captions each)."""
    seeds: tuple[int, ...] = (0, 1, 2)
    """Seeds per (size, method); each seed also draws its own training subset."""
    train_pool: int = 1000
    """Images rendered for training (subsets are drawn from them)."""
    val_items: int = 100
    """Validation items (model selection)."""
    test_items: int = 300
    """Test items (reported once per run)."""
    steps: int = 400
    """Training steps per run."""
    batch_size: int = 64
    """Contrastive batch B (FuseMix loads 2B pairs, no-mixup loads B)."""
    depth: int = 1
    """Residual blocks per adapter."""
    expansion: int = 1
    """Hidden width multiplier of each block (1 keeps the CPU demo fast)."""
    out_dim: int = 64
    """Shared dimension."""
    dropout: float = 0.1
    """Adapter dropout."""
    eval_every: int = 100
    """Validation interval in steps."""
    text_encoder: str = "minilm"
    """Text encoder (``frozen-bow`` for the seconds-long ``--fast`` run)."""
    modality: str = "image"
    """``image`` (rendered shapes) or ``audio`` (synthesized sounds)."""
    item_encoder: str | None = None
    """Item encoder (default: ``frozen-conv`` for images, ``frozen-mel`` for audio)."""
    subsamples: tuple[str, ...] = ("uniform",)
    """How each training subset is chosen (:data:`fusemix.subsample.STRATEGIES`); one set of runs per entry."""
    device: str | None = "cpu"
    """Where to train."""

    def __post_init__(self) -> None:
        if self.modality not in DATASETS:
            raise ValueError(f"--modality must be image or audio, got {self.modality!r}")
        for name in ("train_pool", "val_items", "test_items", "steps", "batch_size", "expansion", "out_dim",
                     "eval_every"):  # fmt: skip
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        if not self.sizes or min(self.sizes) < 1:
            raise ValueError(f"--size must be >= 1 (at least one), got {list(self.sizes)}")
        if not self.seeds:
            raise ValueError("at least one seed is needed")
        if self.depth < 0 or not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"--depth must be >= 0 and --dropout in [0, 1), got {self.depth} and {self.dropout}")

    @classmethod
    def fast(cls, modality: str = "image") -> DemoConfig:
        """A seconds-long variant for tests."""
        return cls(
            sizes=(20, 60), seeds=(0,), train_pool=60, val_items=20, test_items=30, steps=20, batch_size=16,
            eval_every=10, text_encoder="frozen-bow", modality=modality,
        )  # fmt: skip


def _mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def run_demo(config: DemoConfig, out: str | Path, *, overwrite: bool = False) -> dict[str, Any]:
    """Run the whole demo and write ``out`` (data, cache, one run folder per (size, method, seed), summary).

    Returns:
        ``{"rows": [...], "chance": {...}, "comparison": [...], "seconds": ...}``; each row holds the test metrics
        averaged over seeds for one (size, method).

    Raises:
        UserError: ``out`` already holds a demo (without ``overwrite``), or bad sizes.
    """
    from sixlab_shared import UserError

    if config.modality not in DATASETS:
        raise UserError(f"--modality must be image or audio, got {config.modality!r}")
    if max(config.sizes) > config.train_pool:
        raise UserError(f"demo sizes {config.sizes} exceed the training pool of {config.train_pool} items")
    dataset = DATASETS[config.modality]
    item_encoder = config.item_encoder or ITEM_ENCODERS[config.modality]
    started = time.perf_counter()
    run = RunDir(out, overwrite=overwrite, flags=("--overwrite",))
    run.write_config(dataclasses.asdict(config), seed=None, device=config.device, packages=("fusemix",))
    out = Path(out)
    make_dataset = make_shapes_dataset if config.modality == "image" else make_sounds_dataset
    manifest_path = make_dataset(
        out / "data", {"train": config.train_pool, "val": config.val_items, "test": config.test_items}, seed=0
    )
    item_spec = resolve_encoder(item_encoder, config.modality)
    text_spec = resolve_encoder(config.text_encoder, "text")
    build_cache(read_manifest(manifest_path), dataset, item_spec, text_spec, out / "cache", overwrite=overwrite)
    cache_seconds = time.perf_counter() - started
    train_full = load_paired_latents(out / "cache", item_spec, text_spec, dataset, "train")
    val = load_paired_latents(out / "cache", item_spec, text_spec, dataset, "val")
    test = load_paired_latents(out / "cache", item_spec, text_spec, dataset, "test")
    device = get_device(config.device)

    results: dict[tuple[int, str, str], list[dict[str, float]]] = {}
    for subsample in config.subsamples:
        for size in config.sizes:
            for seed in config.seeds:
                subset = _subset_items(train_full, size, seed, subsample)
                for method, mixup in (("fusemix", True), ("no-mixup", False)):
                    train_config = TrainConfig(
                        cache_dir=str(out / "cache"), dataset=dataset, item_encoder=item_encoder,
                        text_encoder=config.text_encoder, preset="cpu", depth=config.depth,
                        expansion=config.expansion, out_dim=config.out_dim, dropout=config.dropout,
                        batch_size=config.batch_size, mixup=mixup, steps=config.steps,
                        warmup_steps=max(1, config.steps // 10), eval_every=config.eval_every, train_items=size,
                        subsample=subsample, seed=seed, device=config.device,
                    )  # fmt: skip
                    tag = "" if subsample == "uniform" else f"-{subsample}"
                    run_dir = out / "runs" / f"n{size}-{method}{tag}-s{seed}"
                    result = train(train_config, run_dir, overwrite=overwrite, data=(subset, val), show_progress=False)
                    model, _ = load_fusion_checkpoint(run_dir / "checkpoints" / "best.safetensors", device=device)
                    metrics = evaluate_retrieval(model, test, device=device)
                    metrics["temperature"] = result.temperature
                    results.setdefault((size, method, subsample), []).append(metrics)
                    run.log_metrics(
                        size=size, method=method, subsample=subsample, seed=seed,
                        **{f"test/{k}": v for k, v in metrics.items()},
                    )  # fmt: skip
    keys = ("i2t_r1", "i2t_r5", "i2t_r10", "t2i_r1", "t2i_r5", "t2i_r10", "rsum", "temperature")
    rows = []
    for (size, method, subsample), runs in results.items():
        row: dict[str, Any] = {
            "size": size, "pairs": 5 * size, "method": method, "subsample": subsample, "seeds": len(runs)
        }  # fmt: skip
        for key in keys:
            row[key], row[f"{key}_std"] = _mean_std([r[key] for r in runs])
        rows.append(row)
    comparison = []
    for subsample in config.subsamples:
        for size in config.sizes:
            mix, plain = results[(size, "fusemix", subsample)], results[(size, "no-mixup", subsample)]
            deltas = [a["rsum"] - b["rsum"] for a, b in zip(mix, plain, strict=True)]
            comparison.append(
                {"size": size, "subsample": subsample, "rsum_delta_mean": statistics.fmean(deltas),
                 "rsum_delta_std": _mean_std(deltas)[1],
                 "seeds_fusemix_better": sum(d > 0 for d in deltas), "seeds": len(deltas)}
            )  # fmt: skip
    first = next(iter(results.values()))[0]
    chance = {k.removeprefix("chance/"): v for k, v in first.items() if k.startswith("chance/")}
    summary = {
        "modality": config.modality, "rows": rows, "chance": chance, "comparison": comparison,
        "test_items": int(test.items.shape[0]),
        "test_captions": int(test.texts.shape[0]), "cache_seconds": cache_seconds,
        "seconds": time.perf_counter() - started,
    }  # fmt: skip
    run.write_summary(summary)
    return summary


def format_demo_table(summary: dict[str, Any]) -> str:
    """The demo's result table (test split, mean +- std over seeds, chance levels last)."""
    names = ("i2t R@1", "i2t R@5", "t2i R@1", "t2i R@5")
    unit = "clips" if summary.get("modality") == "audio" else "images"
    several = len({row.get("subsample", "uniform") for row in summary["rows"]}) > 1
    width = 19 if several else 9
    head = f"{unit:>6} {'method':<{width}} " + " ".join(f"{n:>12}" for n in names) + f" {'RSUM':>13} {'tau':>6}"
    lines = [head, "-" * len(head)]
    for row in summary["rows"]:
        method = row["method"] + (f" {row['subsample']}" if several else "")
        cells = [f"{row[k]:5.1f} ±{row[k + '_std']:4.1f}" for k in ("i2t_r1", "i2t_r5", "t2i_r1", "t2i_r5")]
        lines.append(
            f"{row['size']:>6} {method:<{width}} {cells[0]:>12} {cells[1]:>12} {cells[2]:>12} {cells[3]:>12} "
            f"{row['rsum']:6.1f} ±{row['rsum_std']:4.1f} {row['temperature']:6.3f}"
        )
    c = summary["chance"]
    lines.append(
        f"{'chance':>6} {'':<{width}} {c['i2t_r1']:>12.1f} {c['i2t_r5']:>12.1f} {c['t2i_r1']:>12.1f} "
        f"{c['t2i_r5']:>12.1f} {sum(c.values()):>13.1f}"
    )
    lines.append("")
    for comp in summary["comparison"]:
        lines.append(
            f"{comp['size']} {unit}{' ' + comp['subsample'] if several else ''}: FuseMix - no-mixup RSUM "
            f"{comp['rsum_delta_mean']:+.1f} ± {comp.get('rsum_delta_std', 0.0):.1f} "
            f"(FuseMix better in {comp['seeds_fusemix_better']}/{comp['seeds']} seeds)"
        )
    lines.append(f"test gallery: {summary['test_items']} {unit}, {summary['test_captions']} captions")
    return "\n".join(lines)


def plot_curve(summary: dict[str, Any], path: str | Path) -> None:
    """Write the data-efficiency curve: test RSUM (mean ± std over seeds) against training pairs, one line per
    (method, subsample), chance as a dashed line; PNG (matplotlib, Agg backend)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    from sixlab_shared import atomic_write_with

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    lines: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in summary["rows"]:
        lines.setdefault((row["method"], row.get("subsample", "uniform")), []).append(row)
    for (method, subsample), rows in sorted(lines.items()):
        rows = sorted(rows, key=lambda r: r["pairs"])
        x = [r["pairs"] for r in rows]
        y = [r["rsum"] for r in rows]
        err = [r["rsum_std"] for r in rows]
        style = "-" if method == "fusemix" else "--"
        ax.errorbar(x, y, yerr=err, linestyle=style, marker="o", capsize=3, label=f"{method}, {subsample}")
    ax.axhline(sum(summary["chance"].values()), color="grey", linestyle=":", label="chance")
    ax.set_xscale("log")
    ax.set_xlabel("training pairs")
    ax.set_ylabel("test RSUM (sum of six recalls, %)")
    unit = "clips" if summary.get("modality") == "audio" else "images"
    ax.set_title(f"Data efficiency on synthetic {unit} ({summary['rows'][0]['seeds']} seeds, mean ± std)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    atomic_write_with(path, lambda tmp: fig.savefig(tmp, format="png", dpi=120))
    plt.close(fig)


def run_curve(config: DemoConfig, out: str | Path, *, overwrite: bool = False) -> dict[str, Any]:
    """:func:`run_demo` over several sizes and subsampling strategies, then ``curve.png`` beside ``summary.json``.

    Raises:
        UserError: as :func:`run_demo`.
    """
    summary = run_demo(config, out, overwrite=overwrite)
    plot_curve(summary, Path(out) / "curve.png")
    return summary
