"""FuseMix: mixup in latent space with one lambda and one partner shared by both modalities (reference §1.5).

Notation (paper -> code): a loaded batch of ``2B`` cached pairs ``(z_x, z_y)`` is split into halves 1 and 2 (the
loader shuffles, so this is a random pairing); ``lambda ~ Beta(alpha, alpha)`` is drawn once per step and

    z~_x = lambda * z_x^1 + (1 - lambda) * z_x^2,        z~_y = lambda * z_y^1 + (1 - lambda) * z_y^2.

Because lambda and the partner are shared, ``(z~_x[i], z~_y[i])`` is again a positive pair and every other index is
a negative. Only the ``B`` mixed pairs are contrasted. Written by hand: this is the paper's contribution.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import torch


@dataclasses.dataclass(frozen=True)
class MixedBatch:
    """Result of :func:`fusemix`: the mixed ``(B, d_x)`` and ``(B, d_y)`` latents and the lambda used."""

    x: torch.Tensor
    y: torch.Tensor
    lam: float


def sample_lambda(alpha: float, generator: torch.Generator) -> float:
    """Draw ``lambda ~ Beta(alpha, alpha)`` reproducibly from ``generator``.

    ``alpha = 1`` is Uniform(0, 1), drawn directly; other values draw a numpy Beta from a seed taken from
    ``generator`` (torch's Beta sampler takes no generator).

    Raises:
        ValueError: ``alpha <= 0`` (no mixup: do not call this).
    """
    if alpha <= 0:
        raise ValueError(f"alpha must be > 0 to mix, got {alpha}")
    if alpha == 1.0:
        return float(torch.rand((), generator=generator, device=generator.device))
    seed = int(torch.randint(0, 2**62, (1,), generator=generator, device=generator.device))
    return float(np.random.default_rng(seed).beta(alpha, alpha))


def mix_halves(z: torch.Tensor, lam: float) -> torch.Tensor:
    """``lam * z[:n/2] + (1 - lam) * z[n/2:]`` for an ``(n, d)`` batch with even ``n``.

    Raises:
        ValueError: ``z`` is not 2-D or ``n`` is odd.
    """
    if z.ndim != 2:
        raise ValueError(f"expected an (n, d) batch, got shape {tuple(z.shape)}")
    n = z.shape[0]
    if n % 2:
        raise ValueError(f"FuseMix needs an even loaded batch (two halves), got {n} rows")
    half = n // 2
    return lam * z[:half] + (1.0 - lam) * z[half:]


def fusemix(z_x: torch.Tensor, z_y: torch.Tensor, alpha: float, generator: torch.Generator) -> MixedBatch:
    """Mix paired latents with one shared lambda and the shared half-to-half partner.

    Args:
        z_x: ``(2B, d_x)`` latents of modality X (row ``i`` pairs with row ``i`` of ``z_y``).
        z_y: ``(2B, d_y)`` latents of modality Y.
        alpha: Beta parameter (1 in the paper: lambda uniform).
        generator: source of lambda.

    Returns:
        The ``B`` mixed pairs and lambda.

    Raises:
        ValueError: the batches differ in length, the length is odd, or ``alpha <= 0``.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> out = fusemix(torch.ones(4, 2), torch.zeros(4, 3), 1.0, g)
        >>> out.x.shape, out.y.shape
        (torch.Size([2, 2]), torch.Size([2, 3]))
    """
    if z_x.shape[0] != z_y.shape[0]:
        raise ValueError(f"the two modalities must hold the same pairs, got {z_x.shape[0]} and {z_y.shape[0]} rows")
    if z_x.shape[0] % 2:
        raise ValueError(f"FuseMix needs an even loaded batch (two halves), got {z_x.shape[0]} rows")
    lam = sample_lambda(alpha, generator)
    return MixedBatch(mix_halves(z_x, lam), mix_halves(z_y, lam), lam)


ALPHA_SCHEDULES = ("constant", "cosine", "exp")


def mixup_alpha(epoch: int, max_epochs: int, *, init: float = 1.0, final: float = 1.0, kind: str = "constant") -> float:
    """The Beta parameter at ``epoch`` (stepped once per epoch, as in the released code).

    ``constant``: ``init``. ``cosine``: from ``init`` at epoch 0 to ``final`` at ``max_epochs`` along a half cosine.
    ``exp``: geometric interpolation ``init * (final / init) ** (epoch / max_epochs)``. The release uses
    ``init = final = 1``, so every kind is then constant. (The released schedulers' exact formulas were not
    available; these two are our reading of their names.)

    Raises:
        ValueError: unknown ``kind``, or a non-positive value for ``exp``.
    """
    if kind not in ALPHA_SCHEDULES:
        raise ValueError(f"alpha schedule must be one of {', '.join(ALPHA_SCHEDULES)}, got {kind!r}")
    progress = min(max(epoch / max(max_epochs, 1), 0.0), 1.0)
    if kind == "constant":
        return init
    if kind == "cosine":
        return init + (final - init) * 0.5 * (1.0 - math.cos(math.pi * progress))
    if init <= 0 or final <= 0:
        raise ValueError(f"exp alpha schedule needs positive init and final, got {init}, {final}")
    return init * (final / init) ** progress
