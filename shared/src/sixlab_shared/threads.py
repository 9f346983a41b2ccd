"""``--threads N``: one call sets torch's intra-op pool and the BLAS/OpenMP pools of numpy and scipy.

On a busy 2-core machine torch's default thread count made a UNet forward pass 40x slower and LAPACK routines
(eigh, sqrtm) 30-60x slower than one thread did, so every CLI offers ``--threads``. Library code never calls this;
only a CLI (or a user) does, once, at start-up.
"""

from __future__ import annotations

import os
from typing import Any

import torch

_THREAD_ENV_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
_limits: Any = None  # the live threadpoolctl limiter (kept so the limit holds for the rest of the process)


def set_threads(n: int) -> None:
    """Use ``n`` threads for torch (intra-op) and for the BLAS/OpenMP libraries loaded in this process.

    Also sets ``OMP_NUM_THREADS``/``OPENBLAS_NUM_THREADS``/``MKL_NUM_THREADS`` so child processes (data loader
    workers, ``torchrun``) start with the same limit.

    Args:
        n: number of threads, at least 1.

    Raises:
        ValueError: ``n`` is below 1.

    Example:
        >>> set_threads(1)
        >>> torch.get_num_threads()
        1
    """
    global _limits
    n = int(n)
    if n < 1:
        raise ValueError(f"threads must be >= 1, got {n}")
    torch.set_num_threads(n)
    for var in _THREAD_ENV_VARS:
        os.environ[var] = str(n)
    from threadpoolctl import threadpool_limits

    _limits = threadpool_limits(limits=n)
