"""Feature extraction: images -> ``(N, dim)`` float32 features, in input order, on one or several processes.

One process: a ``DataLoader`` runs the encoder's per-image transform (in ``num_workers`` workers), batches go
through the encoder on the device, features come back in input order. Several processes (``accelerate launch`` or
``torchrun``, detected from ``WORLD_SIZE`` or an initialised process group, set up with accelerate's
``PartialState``): the N inputs are cut into equal contiguous shards, one per process, each process extracts its
shard, the shards (padded to equal length) are gathered with ``accelerate.utils.gather`` in rank order and the
padding is dropped, so every process returns the full ``(N, dim)`` array in input order. Writing results (caches)
is the caller's job, on the main process only (``sixlab_shared.is_main_process``).

Features do not depend on ``batch_size`` beyond float32 rounding of batched kernels (each image is processed
independently by every encoder; there is no batch statistic).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from dgm_eval.encoders.base import Encoder
from sixlab_shared import UserError, get_device
from sixlab_shared import progress as progress_bar

logger = logging.getLogger(__name__)

#: accepted values of ``precision`` and the autocast dtype each selects (``None`` = no autocast).
PRECISIONS: dict[str, torch.dtype | None] = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


class _TransformedSource(Dataset):
    """``source[indices[i]]`` through ``transform``: a ``(3, H, W)`` float32 tensor."""

    def __init__(self, source: Any, transform: Callable[[Any], torch.Tensor], indices: Sequence[int]) -> None:
        self.source = source
        self.transform = transform
        self.indices = indices

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.transform(self.source[self.indices[i]])


def shard_range(n: int, world_size: int, rank: int) -> range:
    """The contiguous slice of ``range(n)`` that process ``rank`` of ``world_size`` extracts.

    Every shard but the last ones has ``ceil(n / world_size)`` items; trailing shards may be shorter or empty.

    Example:
        >>> [list(shard_range(5, 2, r)) for r in range(2)]
        [[0, 1, 2], [3, 4]]
    """
    per = math.ceil(n / world_size) if world_size > 0 else n
    start = min(n, rank * per)
    return range(start, min(n, start + per))


def _distributed_world() -> tuple[int, int, torch.device | None]:
    """(rank, world size, accelerate's device) when several processes run, else (0, 1, None)."""
    initialised = torch.distributed.is_available() and torch.distributed.is_initialized()
    world = torch.distributed.get_world_size() if initialised else int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1, None
    from accelerate import PartialState  # initialises the process group (gloo on CPU, nccl on CUDA) if needed

    state = PartialState()
    return state.process_index, state.num_processes, state.device


def _worker_transform(encoder: Encoder) -> Callable[[Any], torch.Tensor]:
    """The picklable preprocessing object when the encoder does not override ``transform``."""
    if type(encoder).transform is Encoder.transform:
        return encoder.preprocessing
    return encoder.transform


def extract_features(
    source: Any,
    encoder: Encoder,
    *,
    batch_size: int = 64,
    num_workers: int = 0,
    device: str | torch.device | None = None,
    precision: str = "fp32",
    with_logits: bool = False,
    progress: bool | None = None,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Extract features of every image in ``source``, in input order.

    Args:
        source: any indexable of length N whose items are RGB PIL images (or ``(H, W, 3)`` uint8 arrays), e.g.
            ``dgm_eval.inputs.ImageSource`` or a list of images.
        encoder: from :func:`dgm_eval.encoders.load_encoder`; moved to ``device``.
        batch_size: images per forward pass (results do not depend on it).
        num_workers: DataLoader worker processes running the per-image transform (0 = in this process).
        device: where the encoder runs; ``None`` picks automatically (under several processes: each process's
            own accelerator, from accelerate).
        precision: ``"fp32"`` (default, reproducible), ``"bf16"`` or ``"fp16"`` (autocast; meant for GPUs).
        with_logits: also return classifier logits (encoders with a head only, e.g. ``inception``).
        progress: draw a progress bar (``None``: when stderr is a terminal and this is the main process).

    Returns:
        ``(N, dim)`` float32 features, and ``(N, C)`` float32 logits when ``with_logits``.

    Raises:
        UserError: empty source, ``batch_size < 1``, ``num_workers < 0``, unknown ``precision``, or logits asked
            from an encoder without a classifier head.

    Example:
        >>> from PIL import Image
        >>> from dgm_eval.encoders import load_encoder
        >>> images = [Image.new("RGB", (16, 16), (i, i, i)) for i in range(3)]
        >>> extract_features(images, load_encoder("pixel", device="cpu"), batch_size=2, device="cpu").shape
        (3, 3072)
    """
    if precision not in PRECISIONS:
        raise UserError(f"--precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if int(batch_size) < 1:
        raise UserError(f"--batch-size must be at least 1, got {batch_size}")
    if int(num_workers) < 0:
        raise UserError(f"--workers must be 0 or more, got {num_workers}")
    if with_logits and type(encoder).logits is Encoder.logits:
        raise UserError(f"encoder {encoder.name!r} has no classifier head; logits (for IS) need 'inception'")
    n = len(source)
    if n == 0:
        raise UserError("no images to extract features from (the input is empty)")

    rank, world, dist_device = _distributed_world()
    torch_device = get_device(device)
    if dist_device is not None and (device is None or (torch_device.type == "cuda" and torch_device.index is None)):
        torch_device = dist_device
    encoder = encoder.to(torch_device).eval()
    dtype = PRECISIONS[precision]
    if dtype is not None and torch_device.type == "cpu":
        logger.warning("mixed precision (%s) on CPU is slow and changes features; fp32 is the default", precision)

    indices = shard_range(n, world, rank)
    loader = DataLoader(
        _TransformedSource(source, _worker_transform(encoder), indices),
        batch_size=int(batch_size),
        shuffle=False,
        num_workers=int(num_workers),
        pin_memory=torch_device.type == "cuda",
    )
    features = torch.empty((len(indices), encoder.dim), dtype=torch.float32)
    logits: torch.Tensor | None = None
    autocast = (
        torch.autocast(device_type=torch_device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()
    )
    start = 0
    disable = None if progress is None else not progress
    bar = progress_bar(loader, disable=disable, total=len(loader), desc=f"{encoder.name} features", unit="batch")
    with torch.inference_mode(), autocast:
        for batch in bar:
            batch = batch.to(torch_device, non_blocking=True)  # B x 3 x H x W
            if encoder.channels_last:
                batch = batch.contiguous(memory_format=torch.channels_last)
            stop = start + batch.shape[0]
            if with_logits:
                batch_features, batch_logits = encoder.forward_with_logits(batch)  # B x D, B x C
                batch_logits = batch_logits.float().cpu()
            else:
                batch_features = encoder(batch)  # B x D
            features[start:stop] = batch_features.float().cpu()
            if with_logits:
                if logits is None:
                    logits = torch.empty((len(indices), batch_logits.shape[1]), dtype=torch.float32)
                logits[start:stop] = batch_logits
            start = stop

    if world > 1:
        features = _gather_in_order(features, n, world, torch_device)
        if with_logits:
            logits = _gather_in_order(logits, n, world, torch_device)
    result = features.numpy()
    if with_logits:
        assert logits is not None
        return result, logits.numpy()
    return result


def _gather_in_order(local: torch.Tensor | None, n: int, world: int, device: torch.device) -> torch.Tensor:
    """Pad this process's shard to ``ceil(n / world)`` rows, gather every shard in rank order, drop the padding."""
    from accelerate.utils import gather

    per = math.ceil(n / world)
    if local is None:  # an empty shard that never saw a batch (logits width unknown): learn it from the others
        local = torch.empty((0, 0), dtype=torch.float32)
    cols = torch.tensor([local.shape[1]], device=device)
    cols = int(gather(cols).max().item())
    padded = torch.zeros((per, cols), dtype=torch.float32, device=device)
    padded[: local.shape[0]] = local.to(device)
    return gather(padded)[:n].cpu()
