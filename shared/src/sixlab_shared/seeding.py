"""Seeding: one call for python, numpy and torch; seeded generators; DataLoader worker seeds."""

from __future__ import annotations

import contextlib
import hashlib
import os
import random
from collections.abc import Iterator, Sequence

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


@contextlib.contextmanager
def seeded(seed: int, *, devices: Sequence[int | str | torch.device] | None = None) -> Iterator[None]:
    """Run a block with the global generators seeded, then put every generator back as it was.

    Inside the block python's ``random``, numpy's global generator and torch's CPU generator (and the CUDA
    generators of ``devices``) start from ``seed``; on exit, even after an exception, all of them are restored, so a
    library function seeded this way never changes the randomness of the code around it. Prefer passing a
    ``torch.Generator``; use this where third-party code draws from the global generator (module initialisation,
    dropout inside a model you do not own).

    Args:
        seed: a non-negative integer below 2**32.
        devices: CUDA devices whose generators are forked and seeded too; ``None``: every visible CUDA device
            (none on a CPU machine).

    Raises:
        ValueError: ``seed`` is negative or does not fit in 32 bits.

    Example:
        >>> _ = torch.manual_seed(5)
        >>> second_draw = torch.rand(2)[1]
        >>> _ = torch.manual_seed(5)
        >>> first_draw = torch.rand(1)
        >>> with seeded(0):
        ...     inside = torch.rand(1)
        >>> bool(torch.rand(1) == second_draw)  # the outer stream goes on as if the block had not run
        True
        >>> with seeded(0):
        ...     bool(torch.rand(1) == inside)
        True
    """
    if not 0 <= int(seed) < 2**32:
        raise ValueError(f"seed must be in [0, 2**32), got {seed}")
    if devices is None:
        devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    python_state = random.getstate()
    numpy_state = np.random.get_state()
    with torch.random.fork_rng(devices=list(devices)):
        random.seed(int(seed))
        np.random.seed(int(seed))
        torch.random.default_generator.manual_seed(int(seed))  # CPU only: unlisted CUDA generators stay untouched
        for device in devices:
            with torch.cuda.device(device):
                torch.cuda.manual_seed(int(seed))
        try:
            yield
        finally:
            random.setstate(python_state)
            np.random.set_state(numpy_state)


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
