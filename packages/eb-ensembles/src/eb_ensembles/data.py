"""Datasets that need no download: toy regression, 2-D classification, scikit-learn digits, MNIST-1D-style
signals generated procedurally, corruptions at five severities, and out-of-distribution (OOD) sets.

Every generator takes a ``seed``; nothing reads global random state. Inputs are float32 ``(N, D)`` tensors,
classification targets int64 ``(N,)``, regression targets float32 ``(N,)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from scipy.ndimage import gaussian_filter, gaussian_filter1d
from sklearn.datasets import load_digits, make_blobs, make_circles, make_moons
from sklearn.model_selection import train_test_split

from eb_ensembles.checks import InvalidInputError

__all__ = [
    "CORRUPTIONS",
    "DATASETS",
    "OOD_KINDS",
    "Dataset",
    "corrupt",
    "load_dataset",
    "make_mnist1d",
    "make_ood",
]

DATASETS = ("cubic", "gap", "moons", "circles", "blobs", "digits", "mnist1d")
CORRUPTIONS = ("gaussian_noise", "pixel_dropout", "shift", "blur", "contrast")
OOD_KINDS = ("uniform", "far")

# severity 1..5 → strength of each corruption (in units of the data's value range where relevant)
_SEVERITY = {
    "gaussian_noise": (0.04, 0.08, 0.12, 0.18, 0.26),
    "pixel_dropout": (0.1, 0.2, 0.3, 0.45, 0.6),
    "shift": (1, 1, 2, 2, 3),
    "blur": (0.4, 0.6, 0.8, 1.0, 1.3),
    "contrast": (0.75, 0.6, 0.45, 0.3, 0.2),
}


@dataclass
class Dataset:
    """Train/test splits of one dataset, with what the experiments need to know about it.

    Attributes:
        name: dataset name.
        task: ``"classification"`` or ``"regression"``.
        x_train, y_train, x_test, y_test: the splits.
        num_classes: K (classification), or 0.
        shape: per-example spatial shape for corruptions (``(8, 8)`` digits, ``(40,)`` MNIST-1D), or ``()``.
        ood: named OOD inputs (e.g. ``"heldout"`` for held-out classes).
        classes: original class labels kept (their index is the new label).
    """

    name: str
    task: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int = 0
    shape: tuple[int, ...] = ()
    ood: dict[str, torch.Tensor] = field(default_factory=dict)
    classes: tuple[int, ...] = ()

    @property
    def in_features(self) -> int:
        """D, the input dimension."""
        return int(self.x_train.shape[1])


def _cubic(n: int, rng: np.random.Generator, low: float, high: float, gap: bool) -> tuple[np.ndarray, np.ndarray]:
    if gap:  # "in-between" uncertainty: no data in (-1, 1)
        half = rng.uniform(1.0, high, size=n)
        x = half * rng.choice([-1.0, 1.0], size=n)
    else:
        x = rng.uniform(low, high, size=n)
    return x, x**3 + rng.normal(0.0, 3.0, size=n)


def _mnist1d_templates() -> np.ndarray:
    """Ten hand-drawn 12-point 1-D digit templates (our own shapes, in the spirit of Greydanus 2020)."""
    t = np.array(
        [
            [0, 1, 1.5, 1.8, 2, 2, 2, 2, 1.8, 1.5, 1, 0],  # 0: a wide bump
            [0, -2, -2, -1.6, -1.2, -0.8, -0.4, 0, 0.4, 0.8, 0, 0],  # 1: drop then ramp
            [0, 1, 1.5, 1.5, 1, 0.25, -0.25, -1, -1.5, -1.5, -1, 0],  # 2: up then down
            [0, 1, 1.5, 1.5, 1, 0, 0, 1, 1.5, 1.5, 1, 0],  # 3: two bumps
            [0, -0.6, -1.2, -1.8, -2.4, -2.4, 0, 0, 0, 0, 0, 0],  # 4: ramp down, step up
            [0, -2, -2, -2, -2, 0, 1, 1.5, 1.5, 1, -0.5, 0],  # 5: plateau low then bump
            [0, -1, -1.5, -1.75, -2, -2, -2, -2, -1.75, -1.5, -1, 0],  # 6: a wide dip
            [0, 2, 2, 1.6, 1.2, 0.8, 0.4, 0, -0.4, -0.8, 0, 0],  # 7: jump then ramp down
            [0, -1, -1.5, -1.5, -1, 0, 0, -1, -1.5, -1.5, -1, 0],  # 8: two dips
            [0, -1, -1.5, -1.5, -1, 0, 0, 0, 0, -0.3, -0.7, 0],  # 9: dip then flat
        ]
    )
    return t / t.std()


def make_mnist1d(n: int, seed: int, *, length: int = 40) -> tuple[np.ndarray, np.ndarray]:
    """MNIST-1D-style signals generated procedurally (no download).

    Recipe after Greydanus (2020): a class template of 12 points is zero-padded to a random width, scaled,
    sheared (a linear trend is added), translated, corrupted with smooth correlated noise and white noise, and
    resampled to ``length`` points. Templates and constants are ours, so the numbers differ from the ``mnist1d``
    package's dataset; the difficulty (a 1-D signal, class identity in the shape) is the same idea.

    Args:
        n: number of signals (classes balanced, then shuffled).
        seed: random seed.
        length: output length.

    Returns:
        ``(n, length)`` float32 signals and ``(n,)`` int64 labels.
    """
    rng = np.random.default_rng(seed)
    templates = _mnist1d_templates()
    labels = rng.permutation(np.arange(n) % 10)
    out = np.empty((n, length), dtype=np.float64)
    grid = np.linspace(0, 1, length)
    for i, label in enumerate(labels):
        signal = templates[label]
        pad_left, pad_right = rng.integers(6, 18, size=2)
        signal = np.concatenate([np.zeros(pad_left), signal, np.zeros(pad_right)])
        signal = signal * rng.uniform(0.75, 1.25)
        src = np.linspace(0, 1, signal.size)
        signal = signal + rng.uniform(-0.75, 0.75) * (src - 0.5)  # shear
        signal = np.roll(signal, rng.integers(-4, 5))  # translation
        resampled = np.interp(grid, src, signal)
        correlated = gaussian_filter1d(rng.normal(0, 1, length), sigma=2.0) * 1.0
        out[i] = resampled + correlated + rng.normal(0, 0.2, length)
    return out.astype(np.float32), labels.astype(np.int64)


def load_dataset(
    name: str,
    seed: int = 0,
    *,
    n_train: int | None = None,
    n_test: int | None = None,
    holdout_classes: tuple[int, ...] = (),
) -> Dataset:
    """Build a dataset by name, deterministically from ``seed``.

    Args:
        name: one of :data:`DATASETS`.
        seed: random seed (sampling, noise and the split).
        n_train, n_test: sizes where the dataset is generated (defaults: cubic 20/200, gap 40/200, 2-D sets
            500/500, MNIST-1D 4000/1000); digits uses a fixed 70/30 stratified split of its 1,797 images.
        holdout_classes: classes removed from train and test and returned as ``ood["heldout"]`` (test part);
            remaining classes are relabelled 0..K-1 in increasing order.

    Raises:
        InvalidInputError: unknown name; held-out classes on a regression set or outside the label range.
    """
    if name not in DATASETS:
        raise InvalidInputError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    rng = np.random.default_rng(seed)
    if name in ("cubic", "gap"):
        if holdout_classes:
            raise InvalidInputError(f"holdout_classes needs a classification dataset, {name!r} is regression")
        x_tr, y_tr = _cubic(n_train or (20 if name == "cubic" else 40), rng, -4.0, 4.0, gap=name == "gap")
        x_te = np.linspace(-6.0, 6.0, n_test or 200)
        y_te = x_te**3 + rng.normal(0.0, 3.0, size=x_te.size)
        as_x = lambda a: torch.tensor(a, dtype=torch.float32)[:, None]  # noqa: E731
        as_y = lambda a: torch.tensor(a, dtype=torch.float32)  # noqa: E731
        return Dataset(name, "regression", as_x(x_tr), as_y(y_tr), as_x(x_te), as_y(y_te))

    shape: tuple[int, ...] = ()
    if name == "digits":
        bunch = load_digits()
        x_all, y_all = (bunch.data / 16.0).astype(np.float32), bunch.target.astype(np.int64)
        shape = (8, 8)
        x_tr, x_te, y_tr, y_te = train_test_split(x_all, y_all, test_size=0.3, random_state=seed, stratify=y_all)
    else:
        ntr, nte = n_train or (4000 if name == "mnist1d" else 500), n_test or (1000 if name == "mnist1d" else 500)
        if name == "mnist1d":
            x_all, y_all = make_mnist1d(ntr + nte, seed)
            shape = (x_all.shape[1],)
        elif name == "moons":
            x_all, y_all = make_moons(ntr + nte, noise=0.15, random_state=seed)
        elif name == "circles":
            x_all, y_all = make_circles(ntr + nte, noise=0.08, factor=0.5, random_state=seed)
        else:
            x_all, y_all = make_blobs(ntr + nte, centers=3, cluster_std=1.0, random_state=seed)
        x_all, y_all = x_all.astype(np.float32), y_all.astype(np.int64)
        x_tr, x_te, y_tr, y_te = x_all[:ntr], x_all[ntr:], y_all[:ntr], y_all[ntr:]
    classes = tuple(int(c) for c in np.unique(y_tr))
    ood: dict[str, torch.Tensor] = {}
    if holdout_classes:
        bad = sorted(set(holdout_classes) - set(classes))
        if bad:
            raise InvalidInputError(f"holdout_classes {bad} are not classes of {name!r} (classes: {list(classes)})")
        keep = tuple(c for c in classes if c not in holdout_classes)
        if len(keep) < 2:
            raise InvalidInputError(f"holding out {list(holdout_classes)} leaves fewer than 2 classes")
        ood["heldout"] = torch.tensor(x_te[np.isin(y_te, holdout_classes)])
        mapping = {c: i for i, c in enumerate(keep)}
        mask_tr, mask_te = np.isin(y_tr, keep), np.isin(y_te, keep)
        x_tr, x_te = x_tr[mask_tr], x_te[mask_te]
        y_tr = np.array([mapping[int(c)] for c in y_tr[mask_tr]], dtype=np.int64)
        y_te = np.array([mapping[int(c)] for c in y_te[mask_te]], dtype=np.int64)
        classes = keep
    return Dataset(
        name,
        "classification",
        torch.tensor(x_tr),
        torch.tensor(y_tr),
        torch.tensor(x_te),
        torch.tensor(y_te),
        num_classes=len(classes),
        shape=shape,
        ood=ood,
        classes=classes,
    )


def corrupt(x: torch.Tensor, kind: str, severity: int, seed: int, shape: tuple[int, ...]) -> torch.Tensor:
    """A "-C"-style corruption of ``(N, D)`` inputs at severity 1..5.

    Kinds: ``gaussian_noise`` (additive, σ a fraction of the value range), ``pixel_dropout`` (a fraction of
    features set to the minimum), ``shift`` (translation by 1-3 positions along the last spatial axis, zero-filled
    with the minimum), ``blur`` (Gaussian filter over the spatial axes), ``contrast`` (pull towards each example's
    mean). ``shape`` is the spatial shape of one example (``(8, 8)``, ``(40,)``; ``()`` = treat as a flat vector).

    Raises:
        InvalidInputError: unknown kind, severity outside 1..5, ``shape`` inconsistent with ``D``.
    """
    if kind not in CORRUPTIONS:
        raise InvalidInputError(f"unknown corruption {kind!r}; choose one of {', '.join(CORRUPTIONS)}")
    if severity not in (1, 2, 3, 4, 5):
        raise InvalidInputError(f"severity must be 1..5, got {severity}")
    shape = shape or (x.shape[1],)
    if int(np.prod(shape)) != x.shape[1]:
        raise InvalidInputError(f"shape {shape} does not hold {x.shape[1]} features")
    rng = np.random.default_rng(seed)
    arr = x.detach().cpu().numpy().astype(np.float64)
    low, high = float(arr.min()), float(arr.max())
    span = max(high - low, 1e-12)
    strength = _SEVERITY[kind][severity - 1]
    if kind == "gaussian_noise":
        out = arr + rng.normal(0.0, strength * span, size=arr.shape)
    elif kind == "pixel_dropout":
        out = np.where(rng.random(arr.shape) < strength, low, arr)
    elif kind == "shift":
        img = arr.reshape(-1, *shape)
        out = np.full_like(img, low)
        out[..., strength:] = img[..., :-strength]
        out = out.reshape(arr.shape)
    elif kind == "blur":
        img = arr.reshape(-1, *shape)
        out = gaussian_filter(img, sigma=(0,) + (strength,) * len(shape), mode="nearest").reshape(arr.shape)
    else:
        mean = arr.mean(1, keepdims=True)
        out = mean + strength * (arr - mean)
    return torch.tensor(out, dtype=x.dtype, device=x.device)


def make_ood(kind: str, like: torch.Tensor, n: int, seed: int) -> torch.Tensor:
    """Synthetic OOD inputs shaped like ``like`` ``(N, D)``.

    ``uniform``: each feature uniform over its training range. ``far``: Gaussian points centred 10 feature-wise
    standard deviations away from the data mean along a random direction, with the data's spread.

    Raises:
        InvalidInputError: unknown kind or ``n < 1``.
    """
    if kind not in OOD_KINDS:
        raise InvalidInputError(f"unknown OOD kind {kind!r}; choose one of {', '.join(OOD_KINDS)}")
    if n < 1:
        raise InvalidInputError(f"n must be >= 1, got {n}")
    rng = np.random.default_rng(seed)
    arr = like.detach().cpu().numpy().astype(np.float64)
    if kind == "uniform":
        out = rng.uniform(arr.min(0), arr.max(0), size=(n, arr.shape[1]))
    else:
        std = arr.std(0) + 1e-6
        direction = rng.normal(size=arr.shape[1])
        direction /= np.linalg.norm(direction)
        centre = arr.mean(0) + 10.0 * std.mean() * direction * np.sqrt(arr.shape[1])
        out = centre + rng.normal(size=(n, arr.shape[1])) * std
    return torch.tensor(out, dtype=like.dtype)
