"""Seeding: one call for python, numpy and torch; seeded generators; DataLoader worker seeds."""

from __future__ import annotations

import hashlib
import os
import random

import numpy as np
import torch


def seed_everything(seed: int, *, deterministic: bool = False) -> None:
    """Seed python's ``random``, numpy's global generator and torch (CPU and every CUDA device).

    Library code should still take a ``seed`` or ``torch.Generator`` argument and not rely on global state;
    this call makes the *rest* of a run (third-party code, dropout, data order) repeatable.

    Args:
        seed: a non-negative integer below 2**32.
        deterministic: also ask torch for deterministic algorithms (``torch.use_deterministic_algorithms``,
            cuDNN deterministic, no cuDNN benchmark) and set ``CUBLAS_WORKSPACE_CONFIG`` if it is unset, as
            CUDA requires. Slower; needed for bit-identical reruns on GPU.

    Raises:
        ValueError: ``seed`` is negative or does not fit in 32 bits.
    """
    if not 0 <= int(seed) < 2**32:
        raise ValueError(f"seed must be in [0, 2**32), got {seed}")
    seed = int(seed)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # seeds every CUDA device as well
    if deterministic:
        # CUDA's deterministic cuBLAS needs this before the first cuBLAS call; do not override a user's choice.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False


def derive_seed(seed: int, *keys: object) -> int:
    """A stable 32-bit seed derived from ``seed`` and any labels (member index, process rank, split name).

    Uses SHA-256, so it is the same across processes, platforms and Python's hash randomisation.

    Example:
        >>> derive_seed(0, "member", 3) == derive_seed(0, "member", 3)
        True
        >>> derive_seed(0, "member", 3) != derive_seed(0, "member", 4)
        True
    """
    text = "/".join([str(int(seed)), *map(str, keys)])
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "little")


def make_generator(seed: int, device: str | torch.device = "cpu") -> torch.Generator:
    """A ``torch.Generator`` on ``device`` seeded with ``seed``, for passing as ``generator=`` to random ops."""
    generator = torch.Generator(device=device)
    generator.manual_seed(int(seed))
    return generator


def seed_worker(worker_id: int) -> None:
    """``worker_init_fn`` for ``torch.utils.data.DataLoader``: seeds numpy and ``random`` in each worker.

    torch seeds each worker from the loader's generator; numpy and ``random`` are not, so workers would otherwise
    share one numpy stream. Pass ``generator=make_generator(seed)`` to the DataLoader as well.
    """
    worker_seed = torch.initial_seed() % 2**32
    np.random.seed(worker_seed)
    random.seed(worker_seed)
