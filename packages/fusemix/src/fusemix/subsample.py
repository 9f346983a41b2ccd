"""Choosing training subsets for data-efficiency studies: uniform, or a diverse set by greedy k-DPP MAP inference
(reference §2.1: the paper's ``subsample_mode`` with kernel ``(cos + 1)^2`` over item or text latents, ≤ 100k).

The k-DPP kernel is ``L_ij = (cos(z_i, z_j) + 1)^2``, positive semi-definite (the square of a PSD kernel plus a
constant is PSD by Schur's product theorem). Greedy MAP adds, ``k`` times, the item that most increases
``log det L_S``; it is the fast incremental-Cholesky form of Chen, Zhang & Zhou (NeurIPS 2018): the kernel is
never materialised, one column ``L[:, j]`` (``O(N d)``) is computed per step, and memory is ``O(N k)``.
"""

from __future__ import annotations

import math

import torch

from sixlab_shared import UserError, derive_seed, make_generator

STRATEGIES = ("uniform", "kdpp-item", "kdpp-text")
MAX_KDPP_ITEMS = 100_000


def cosine_kernel_column(latents: torch.Tensor, j: int) -> torch.Tensor:
    """Column ``j`` of ``L = (cos + 1)^2`` over ``latents`` ``(N, d)``: ``(N,)`` float64."""
    unit = torch.nn.functional.normalize(latents.double(), dim=1)
    return (unit @ unit[j] + 1.0) ** 2


def greedy_kdpp(latents: torch.Tensor, k: int, *, eps: float = 1e-10) -> list[int]:
    """Greedy MAP of a k-DPP with kernel ``(cos + 1)^2``: ``k`` row indices, in the order chosen.

    Args:
        latents: ``(N, d)`` float latents (items, or one text latent per item).
        k: subset size, ``1 <= k <= N``.
        eps: when every remaining marginal gain ``d_i^2`` falls below this (the kernel's rank is exhausted), the
            rest is filled greedily by the largest remaining gain, ties by lowest index.

    Returns:
        Indices into ``latents`` (distinct).

    Raises:
        ValueError: ``k`` out of range.

    Example:
        >>> z = torch.tensor([[1.0, 0.0], [0.99, 0.1], [0.0, 1.0], [-1.0, 0.0]])  # the opposite vector is most diverse
        >>> greedy_kdpp(z, 2)
        [0, 3]
    """
    n = latents.shape[0]
    if not 1 <= k <= n:
        raise ValueError(f"k must be in [1, {n}], got {k}")
    unit = torch.nn.functional.normalize(latents.double(), dim=1)
    gains = torch.full((n,), 4.0, dtype=torch.float64)  # d_i^2 = L_ii = (1 + 1)^2
    factors = torch.zeros(k, n, dtype=torch.float64)  # rows of the incremental Cholesky factor
    chosen: list[int] = []
    available = torch.ones(n, dtype=torch.bool)
    for step in range(k):
        masked = torch.where(available, gains, torch.tensor(-math.inf, dtype=torch.float64))
        j = int(torch.argmax(masked))  # first index among ties
        chosen.append(j)
        available[j] = False
        if step == k - 1:
            break
        if gains[j] <= eps:
            continue  # the remaining gains are numerically zero; keep filling by index order of the gains
        column = (unit @ unit[j] + 1.0) ** 2  # L[:, j]
        e = (column - factors[:step].T @ factors[:step, j]) / gains[j].sqrt()
        factors[step] = e
        gains = (gains - e**2).clamp_min(0.0)
    return chosen


def log_det_subset(latents: torch.Tensor, subset: list[int]) -> float:
    """``log det L_S`` of the ``(cos + 1)^2`` kernel restricted to ``subset`` (float64; ``-inf`` when singular)."""
    unit = torch.nn.functional.normalize(latents.double()[subset], dim=1)
    kernel = (unit @ unit.T + 1.0) ** 2
    sign, value = torch.linalg.slogdet(kernel)
    return float(value) if float(sign) > 0 else -math.inf


def choose_items(
    strategy: str,
    n_items: int,
    k: int,
    *,
    seed: int,
    item_latents: torch.Tensor | None = None,
    text_latents: torch.Tensor | None = None,
    txt2item: torch.Tensor | None = None,
) -> torch.Tensor:
    """Indices of the ``k`` training items a strategy keeps (ascending).

    Args:
        strategy: ``uniform`` (seeded random subset), ``kdpp-item`` (greedy k-DPP over the item latents) or
            ``kdpp-text`` (over each item's mean caption latent).
        n_items: number of items ``N``.
        k: items kept.
        seed: seed of the uniform draw (the k-DPP choice is deterministic).
        item_latents: ``(N, d_item)``, for ``kdpp-item``.
        text_latents: ``(N_txt, d_text)`` and ``txt2item`` ``(N_txt,)``, for ``kdpp-text``.

    Raises:
        UserError: unknown strategy, ``k`` out of range, or a k-DPP over more than 100k items.
    """
    if strategy not in STRATEGIES:
        raise UserError(f"--subsample must be one of {', '.join(STRATEGIES)}, got {strategy!r}")
    if not 1 <= k <= n_items:
        raise UserError(f"--train-items {k} must be between 1 and the {n_items} items of the training split")
    if strategy == "uniform":
        chosen = torch.randperm(n_items, generator=make_generator(derive_seed(seed, "subset")))[:k]
        return chosen.sort().values
    if n_items > MAX_KDPP_ITEMS:
        raise UserError(
            f"--subsample {strategy} is limited to {MAX_KDPP_ITEMS} items (as in the paper); the split has {n_items}"
        )
    if strategy == "kdpp-item":
        latents = item_latents
    else:
        sums = torch.zeros(n_items, text_latents.shape[1], dtype=torch.float64)
        sums.index_add_(0, txt2item, text_latents.double())
        counts = torch.bincount(txt2item, minlength=n_items).clamp_min(1)
        latents = sums / counts[:, None]
    return torch.tensor(sorted(greedy_kdpp(latents, k)), dtype=torch.int64)
