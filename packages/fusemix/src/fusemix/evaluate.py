"""Evaluating a trained space on cached latents: embeddings, recall@K both ways with chance levels beside, and the
``evaluate`` job (checkpoint + cache -> metrics). The recall arithmetic itself is in :mod:`fusemix.recall_metrics`."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import torch

from fusemix.adapters import FusionModel
from fusemix.latents import PairedLatents
from fusemix.recall_metrics import DEFAULT_KS, chance_recall, retrieval_metrics, retrieval_ranks
from sixlab_shared import UserError


@torch.no_grad()
def embed_latents(
    model: FusionModel, latents: torch.Tensor, side: str, *, device: torch.device | str = "cpu", batch_size: int = 8192
) -> torch.Tensor:
    """Map cached ``(N, d)`` latents to ``(N, D)`` normalised embeddings on ``device`` (model in eval mode).

    Raises:
        ValueError: ``side`` is not ``items`` or ``texts``.
    """
    if side not in ("items", "texts"):
        raise ValueError(f"side must be 'items' or 'texts', got {side!r}")
    encode = model.encode_items if side == "items" else model.encode_texts
    was_training = model.training
    model.eval()
    out = [encode(latents[i : i + batch_size].to(device)) for i in range(0, latents.shape[0], batch_size)]
    model.train(was_training)
    return torch.cat(out)


def evaluate_retrieval(
    model: FusionModel,
    data: PairedLatents,
    *,
    device: torch.device | str = "cpu",
    ks: Sequence[int] = DEFAULT_KS,
    chunk_size: int = 256,
) -> dict[str, float]:
    """Recall@K item->text and text->item, ``rsum``, ``r_mean``, and chance levels (``chance/i2t_r1``, ...).

    Args:
        model: trained adapters.
        data: a split's cached latents (several captions per item allowed).
        device: where embeddings and similarities are computed.
        ks: cut-offs.
        chunk_size: similarity rows computed at once (memory ``chunk_size x gallery``).

    Returns:
        A flat dict of percentages plus ``n_items`` and ``n_texts``.
    """
    items = embed_latents(model, data.items, "items", device=device)
    texts = embed_latents(model, data.texts, "texts", device=device)
    item_ranks, text_ranks = retrieval_ranks(items, texts, data.txt2item.to(items.device), chunk_size=chunk_size)
    metrics = retrieval_metrics(item_ranks, text_ranks, ks)
    chance = chance_recall(data.txt2item, data.items.shape[0], ks)
    for direction, values in chance.items():
        metrics.update({f"chance/{direction}_r{k}": v for k, v in values.items()})
    metrics["n_items"] = int(data.items.shape[0])
    metrics["n_texts"] = int(data.texts.shape[0])
    return metrics


def check_latent_sizes(model: FusionModel, data: PairedLatents, split: str) -> None:
    """Refuse cached latents whose sizes differ from what the checkpoint's adapters take.

    Raises:
        UserError: the items or texts latents of ``split`` have another dimension (named with both sizes).
    """
    for side, adapter in (("items", model.item_adapter), ("texts", model.text_adapter)):
        got, want = getattr(data, side).shape[1], adapter.config.in_dim
        if got != want:
            raise UserError(
                f"{side} latents of split {split!r} are {got}-d but the checkpoint's adapter takes {want}-d"
            )


def evaluate_checkpoint(
    checkpoint: str | os.PathLike[str],
    cache_dir: str | os.PathLike[str],
    split: str = "test",
    *,
    dataset: str | None = None,
    device: torch.device | str = "cpu",
    chunk_size: int = 256,
    out: str | os.PathLike[str] | None = None,
    overwrite: bool = False,
) -> dict[str, float]:
    """The ``evaluate`` job: load a checkpoint and the cached split its encoders made, compute the recall metrics,
    and (with ``out``) write ``config.json`` and ``summary.json`` there.

    Args:
        checkpoint: a trained fusion checkpoint (it names its encoders and dataset).
        cache_dir: root of the latent cache.
        split: split scored.
        dataset: dataset in the cache (default: the one trained on).
        device: where embeddings and similarities are computed.
        chunk_size: similarity rows per chunk.
        out: folder for the results (refused when it already holds results, unless ``overwrite``).
        overwrite: replace results already in ``out``.

    Returns:
        The metrics of :func:`evaluate_retrieval`.

    Raises:
        UserError: ``out`` holds results (without ``overwrite``) or a training run, missing caches, latent sizes
            that differ from the checkpoint's adapters; nothing is written then.
    """
    from fusemix.checkpoint import checkpoint_encoders, load_fusion_checkpoint
    from fusemix.latents import load_paired_latents
    from sixlab_shared import RunDir

    if chunk_size < 1:
        raise UserError(f"--chunk-size must be >= 1, got {chunk_size}")
    if out is not None:
        out = Path(out)
        if (out / "checkpoints").exists() or (out / "metrics.jsonl").exists():
            raise UserError(f"{str(out)!r} holds a training run; choose another --out for evaluation results")
        if not overwrite and ((out / "summary.json").exists() or (out / "config.json").exists()):
            raise UserError(f"{str(out)!r} already holds results; pass --overwrite or choose another --out")
    model, state = load_fusion_checkpoint(checkpoint, device=device)
    item_spec, text_spec = checkpoint_encoders(state)
    dataset = dataset or state["dataset"]
    data = load_paired_latents(cache_dir, item_spec, text_spec, dataset, split)
    check_latent_sizes(model, data, split)
    metrics = evaluate_retrieval(model, data, device=device, chunk_size=chunk_size)
    if out is not None:
        run = RunDir(out, overwrite=overwrite, flags=("--overwrite",))
        run.write_config({"checkpoint": str(checkpoint), "split": split, "dataset": dataset}, seed=None)
        run.write_summary(metrics)
    return metrics
