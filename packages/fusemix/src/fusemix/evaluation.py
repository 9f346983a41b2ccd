"""Retrieval evaluation of trained adapters on cached latents (recall@K both ways, chance levels beside)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from fusemix.adapters import FusionModel
from fusemix.cache import PairedLatents
from fusemix.retrieval import DEFAULT_KS, chance_recall, retrieval_metrics, retrieval_ranks


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
