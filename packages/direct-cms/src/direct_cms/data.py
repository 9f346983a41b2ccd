"""Built-in data (no download) and the seeded training stream shared by teacher training and distillation.

- ``digits``: scikit-learn's 8×8 digits (1,797 images, 10 classes), scaled from 0..16 to [−1, 1], shape
  ``(N, 1, 8, 8)``; the null class for CFG is 10.
- ``ring``: a 2-D ring of 8 Gaussians (radius 1, σ = 0.03); labels are the mode index, the null class is 8.

:func:`draw_batch` makes each batch a pure function of ``(seed, step, micro-batch, process)``: both objectives
see the identical (x₀, ε, n) stream for one seed, and a resumed run continues exactly where it stopped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from direct_cms.config import DATASETS
from sixlab_shared import UserError, derive_seed, make_generator

__all__ = ["DATASETS", "Batch", "Dataset", "draw_batch", "load_dataset", "ring_centres", "sample_ring"]

RING_MODES = 8
RING_RADIUS = 1.0
RING_STD = 0.03


@dataclass
class Dataset:
    """An in-memory labelled dataset.

    Attributes:
        x: samples, ``(N, 1, 8, 8)`` float32 in [−1, 1] (digits) or ``(N, 2)`` float32 (ring).
        labels: ``(N,)`` int64 class/mode index.
        num_classes: number of real classes; the null class (for CFG) is ``num_classes``.
        name: ``digits`` or ``ring``.
    """

    x: torch.Tensor
    labels: torch.Tensor
    num_classes: int
    name: str

    @property
    def null_class(self) -> int:
        return self.num_classes


def ring_centres() -> torch.Tensor:
    """The 8 mode centres on the unit circle, ``(8, 2)`` float64."""
    angles = torch.arange(RING_MODES, dtype=torch.float64) * (2 * math.pi / RING_MODES)
    return RING_RADIUS * torch.stack([angles.cos(), angles.sin()], dim=1)


def sample_ring(num: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``num`` points from the ring of 8 Gaussians: ``(num, 2)`` float32 and their ``(num,)`` mode labels."""
    labels = torch.randint(0, RING_MODES, (num,), generator=generator)
    points = ring_centres()[labels] + RING_STD * torch.randn(num, 2, generator=generator, dtype=torch.float64)
    return points.float(), labels


def load_dataset(name: str, seed: int = 0, ring_size: int = 4096) -> Dataset:
    """Load a built-in dataset.

    Args:
        name: ``digits`` or ``ring``.
        seed: seeds the ring's points (digits are fixed).
        ring_size: number of ring points.

    Raises:
        UserError: unknown name.
    """
    if name == "digits":
        from sklearn.datasets import load_digits

        bunch = load_digits()
        images = np.asarray(bunch.images, dtype=np.float32) / 8.0 - 1.0  # 0..16 → [−1, 1]
        return Dataset(
            torch.from_numpy(images).unsqueeze(1), torch.as_tensor(bunch.target, dtype=torch.int64), 10, name
        )
    if name == "ring":
        points, labels = sample_ring(ring_size, make_generator(derive_seed(seed, "ring")))
        return Dataset(points, labels, RING_MODES, name)
    raise UserError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")


@dataclass
class Batch:
    """One training batch: clean data, labels, noise and grid indices (all from one seeded generator)."""

    x0: torch.Tensor
    labels: torch.Tensor
    noise: torch.Tensor
    index: torch.Tensor


def draw_batch(
    data: Dataset, batch_size: int, num_index: int, seed: int, step: int, micro: int = 0, process: int = 0
) -> Batch:
    """Batch ``(step, micro)`` of the stream for ``seed``.

    Examples are drawn with replacement, ε ~ N(0, I), n ~ U{0..num_index−1}, all from one generator.

    Args:
        data: the dataset.
        batch_size: examples per (micro-)batch.
        num_index: number of grid indices to draw from (N for distillation, T for teacher training).
        seed: run seed.
        step: optimiser step.
        micro: micro-batch within the step (gradient accumulation).
        process: accelerate process index (each process draws its own shard).
    """
    gen = make_generator(derive_seed(seed, "batch", step, micro, process))
    rows = torch.randint(0, data.x.shape[0], (batch_size,), generator=gen)
    noise = torch.randn((batch_size, *data.x.shape[1:]), generator=gen)
    index = torch.randint(0, num_index, (batch_size,), generator=gen)
    return Batch(data.x[rows], data.labels[rows], noise, index)
