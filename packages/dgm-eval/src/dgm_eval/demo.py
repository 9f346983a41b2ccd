"""``dgm-eval demo``: which metric notices which flaw, on scikit-learn's digits (no download).

Real data: the 1,797 digits of ``sklearn.datasets.load_digits`` as 32×32 RGB images, split into a reference
(train) set, a test set and a held-out pool. "Generated" sets are the held-out digits degraded at increasing
strength s ∈ [0, 1]:

* ``noise``: Gaussian pixel noise with std 80·s (of 255);
* ``blur``: Gaussian blur with radius 1.5·s pixels;
* ``mode_drop``: round(8·s) of the 10 classes replaced by the remaining classes (fewer modes, same count);
* ``memorize``: a share s of the set replaced by exact copies of reference (training) images.

Every metric except IS (no classifier without weights) runs in two feature spaces: raw pixels (``pixel``
encoder at 16×16 = 768-d) and a seeded random-weights conv net (``random``, 256-d). The run folder gets
``results.json`` (every value), ``curves.png`` (metric vs strength) and ``reading.txt`` (what moved).
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dgm_eval.api import compute_metrics, scalar_results
from sixlab_shared import RunDir, UserError, atomic_write_json, atomic_write_text

logger = logging.getLogger(__name__)

DEGRADATIONS = ("noise", "blur", "mode_drop", "memorize")
DEMO_METRICS = (
    "fd", "fd_infinity", "kd", "prdc", "vendi", "authpct", "sw_approx",
    "ct", "ct_test", "ct_modified", "fls", "fls_overfit",
)  # fmt: skip
#: +1 when a larger value means a worse generated set, -1 when smaller is worse, 0 when both are (C_T: ≪ 0 copying,
#: ≫ 0 underfitting) — for the printed reading.
WORSE_DIRECTION = {
    "fd": 1, "fd_infinity": 1, "kd_mean": 1, "sw_approx": 1, "precision": -1, "recall": -1, "density": -1,
    "coverage": -1, "vendi": -1, "authpct": -1, "ct": 0, "ct_test": 0, "ct_modified": 0, "fls": -1,
    "fls_overfit": 1,
}  # fmt: skip


@dataclass
class DemoConfig:
    """Settings of the demo."""

    out: str = "runs/dgm-eval-demo"
    """Run folder (results, curves PNG)."""
    fast: bool = False
    """Tiny version that finishes in seconds."""
    seed: int = 0
    device: str | None = "cpu"
    """Where to compute (the demo defaults to cpu)."""
    overwrite: bool = False
    """Replace a previous demo in --out."""


def _digits_rgb() -> tuple[np.ndarray, np.ndarray]:
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = (digits.images / 16.0 * 255.0).clip(0, 255).astype(np.uint8)  # N x 8 x 8
    big = np.stack([np.asarray(Image.fromarray(img).resize((32, 32), Image.BICUBIC)) for img in images])
    return np.repeat(big[..., None], 3, axis=-1), digits.target  # N x 32 x 32 x 3 uint8


def degrade(
    images: np.ndarray,
    labels: np.ndarray,
    kind: str,
    strength: float,
    *,
    train: np.ndarray,
    seed: int,
) -> np.ndarray:
    """One degraded copy of ``images`` (uint8 ``(N, H, W, 3)``); see the module docstring for each kind."""
    from PIL import Image, ImageFilter

    rng = np.random.default_rng(seed)
    out = images.copy()
    if kind == "noise":
        noisy = images.astype(np.float64) + rng.normal(scale=80.0 * strength, size=images.shape)
        out = noisy.clip(0, 255).astype(np.uint8)
    elif kind == "blur" and strength > 0:
        radius = 1.5 * strength
        out = np.stack([np.asarray(Image.fromarray(img).filter(ImageFilter.GaussianBlur(radius))) for img in images])
    elif kind == "mode_drop":
        dropped = set(rng.permutation(10)[: int(round(8 * strength))].tolist())
        keep = np.flatnonzero(~np.isin(labels, list(dropped)))
        replace = np.flatnonzero(np.isin(labels, list(dropped)))
        out[replace] = images[rng.choice(keep, size=replace.size, replace=True)]
    elif kind == "memorize":
        n_copy = int(round(strength * len(images)))
        which = rng.choice(len(images), size=n_copy, replace=False)
        out[which] = train[rng.choice(len(train), size=n_copy, replace=False)]
    elif kind not in DEGRADATIONS:
        raise UserError(f"unknown degradation {kind!r}; choose from {', '.join(DEGRADATIONS)}")
    return out


def _encoders(seed: int, device: str | None, pixel_size: int) -> dict[str, Any]:
    from dgm_eval.encoders import load_encoder
    from dgm_eval.encoders.pixel import PixelEncoder

    return {
        "pixel": PixelEncoder(size=pixel_size).to(device or "cpu"),
        "random": load_encoder("random", device=device, seed=seed),
    }


def _study(cfg: DemoConfig, images: np.ndarray, labels: np.ndarray) -> tuple[list[float], dict[str, Any]]:
    from dgm_eval.extraction import extract_features

    perm = np.random.default_rng(cfg.seed).permutation(len(images))
    n_train, n_test, n_gen = (150, 80, 100) if cfg.fast else (800, 400, 400)
    i_train, i_test = perm[:n_train], perm[n_train : n_train + n_test]
    i_pool = perm[n_train + n_test : n_train + n_test + n_gen]
    strengths = [0.0, 1.0] if cfg.fast else [0.0, 0.25, 0.5, 0.75, 1.0]
    encoders = _encoders(cfg.seed, cfg.device, pixel_size=8 if cfg.fast else 16)

    def feats(batch: np.ndarray, encoder: Any) -> np.ndarray:
        return np.asarray(extract_features(list(batch), encoder, batch_size=128, device=cfg.device, progress=False))

    values: dict[str, dict[str, list[dict[str, float]]]] = {}
    for enc_name, encoder in encoders.items():
        train_f, test_f = feats(images[i_train], encoder), feats(images[i_test], encoder)
        values[enc_name] = {}
        for kind in DEGRADATIONS:
            rows = []
            for s_i, strength in enumerate(strengths):
                if strength == 0 and kind != DEGRADATIONS[0]:
                    rows.append(values[enc_name][DEGRADATIONS[0]][0])  # strength 0 is the same set for every kind
                    continue
                gen = degrade(
                    images[i_pool], labels[i_pool], kind, strength, train=images[i_train], seed=cfg.seed + 97 * s_i
                )
                res = compute_metrics(
                    train_f,
                    feats(gen, encoder),
                    DEMO_METRICS,
                    test_f,
                    cfg.seed,
                    kd_subset_size=100 if cfg.fast else 200,
                    kd_num_subsets=10 if cfg.fast else 50,
                    device=cfg.device,
                )
                rows.append(scalar_results(res))
                logger.info("%s %s s=%.2f: %s", enc_name, kind, strength, rows[-1])
            values[enc_name][kind] = rows
    return strengths, values


def run_demo(cfg: DemoConfig) -> dict[str, Any]:
    """Run the study; writes ``results.json``, ``curves.png``, ``reading.txt`` and ``config.json`` in ``cfg.out``.

    Returns:
        ``{"strengths": [...], "values": {encoder: {degradation: [{metric: value} per strength]}}, "reading": [...]}``.
    """
    out = Path(cfg.out)
    if (out / "results.json").exists() and not cfg.overwrite:
        raise UserError(f"--out {str(out)!r} already holds a demo; pass --overwrite or choose another --out")
    images, labels = _digits_rgb()
    # Some generated sets are smaller than the feature dimension: FD's N <= D warning would repeat for every
    # set, so it is stated once here and the FD logger is quietened while the study runs.
    logger.warning("demo: FD of sets with N <= D is biased upwards; the curves compare sets of equal size")
    fd_logger = logging.getLogger("dgm_eval.metrics.fd")
    previous_level = fd_logger.level
    fd_logger.setLevel(logging.ERROR)
    try:
        strengths, values = _study(cfg, images, labels)
    finally:
        fd_logger.setLevel(previous_level)
    reading = read_results(values)
    result = {"strengths": strengths, "values": values, "reading": reading}
    run = RunDir(out, overwrite=True)
    run.write_config(asdict(cfg), seed=cfg.seed, device=cfg.device, packages=("dgm-eval",))
    atomic_write_json(out / "results.json", result)
    atomic_write_text(out / "reading.txt", "\n".join(reading) + "\n")
    plot_curves(values, strengths, out / "curves.png")
    return result


def _moved(rows: list[dict[str, float]], metric: str) -> float:
    """Signed move from strength 0 to 1 in the 'worse' direction, relative to the clean value's scale."""
    first, last = rows[0][metric], rows[-1][metric]
    if metric in {"ct", "ct_test", "ct_modified"}:
        scale = 10.0  # z-scores: a move of more than 1
    elif metric == "fls_overfit":
        scale = 50.0  # percent points: a move of more than 5
    else:
        scale = max(abs(first), 1e-3)
    direction = WORSE_DIRECTION[metric]
    return (abs(last - first) if direction == 0 else direction * (last - first)) / scale


def read_results(values: dict[str, dict[str, list[dict[str, float]]]], threshold: float = 0.1) -> list[str]:
    """One line per encoder and degradation: the metrics that got worse by > 10% (caught) and the others.

    For C_T variants (z-scores around 0, either sign is bad) a move of more than 1 counts; for FLS-POG (percent
    points around 0) a rise of more than 5.
    """
    lines = []
    for enc_name, per_kind in values.items():
        for kind, rows in per_kind.items():
            metrics = [m for m in WORSE_DIRECTION if m in rows[0]]
            caught = [m for m in metrics if _moved(rows, m) > threshold]
            missed = [m for m in metrics if m not in caught]
            lines.append(
                f"[{enc_name}] {kind}: caught by {', '.join(caught) or 'none'}; missed by {', '.join(missed) or 'none'}"
            )
    return lines


def plot_curves(values: dict[str, dict[str, list[dict[str, float]]]], strengths: list[float], path: Path) -> None:
    """A grid of panels, one per metric: value vs strength, one line per degradation (solid pixel, dashed random)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    first = next(iter(values.values()))
    metrics = [m for m in WORSE_DIRECTION if m in first[DEGRADATIONS[0]][0]]
    cols = 5
    rows_n = (len(metrics) + cols - 1) // cols
    fig, axes = plt.subplots(rows_n, cols, figsize=(3.2 * cols, 2.6 * rows_n), squeeze=False)
    colors = dict(zip(DEGRADATIONS, ["C0", "C1", "C2", "C3"], strict=True))
    for ax, metric in zip(axes.flat, metrics, strict=False):
        for enc_name, style in zip(values, ["-", "--"], strict=False):
            for kind in DEGRADATIONS:
                ys = [row[metric] for row in values[enc_name][kind]]
                ax.plot(strengths, ys, style, color=colors[kind], marker="o", ms=3, label=f"{kind} ({enc_name})")
        ax.set_title(metric, fontsize=9)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(metrics) :]:
        ax.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower right", fontsize=7, ncol=2)
    fig.supxlabel("degradation strength (solid: pixel features, dashed: random conv features)", fontsize=9)
    fig.subplots_adjust(left=0.05, right=0.98, top=0.95, bottom=0.1, wspace=0.35, hspace=0.45)  # tight_layout is slow
    fig.savefig(path, dpi=90)
    plt.close(fig)


def format_demo(result: dict[str, Any]) -> str:
    """The printed summary: key metrics at strength 0 and 1 per degradation (pixel features), then the reading."""
    keys = ["fd", "precision", "recall", "coverage", "vendi", "authpct", "ct", "fls", "fls_overfit"]
    pixel = result["values"]["pixel"]
    header = ["pixel features", *keys]
    rows = [header]
    for kind, per_s in pixel.items():
        for label, row in (("s=0", per_s[0]), ("s=1", per_s[-1])):
            rows.append([f"{kind} {label}", *(f"{row[k]:.3g}" for k in keys)])
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    table = "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows)
    return table + "\n\n" + "\n".join(result["reading"])
