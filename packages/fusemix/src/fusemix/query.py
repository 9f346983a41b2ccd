"""Querying a trained space: a caption against a cached item gallery, or a cached item against its captions."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import torch

from fusemix.checkpoint import checkpoint_encoders, load_fusion_checkpoint
from fusemix.encoders import load_encoder
from fusemix.evaluate import check_latent_sizes, embed_latents
from fusemix.latents import load_paired_latents
from sixlab_shared import UserError


@dataclasses.dataclass(frozen=True)
class Hit:
    """One retrieved gallery entry."""

    rank: int
    score: float
    key: str
    """Item id (text query) or caption (item query)."""
    path: str
    """Item file (text query); empty for captions."""


def _encode_file(spec, path: Path, device: torch.device | str) -> torch.Tensor:
    from fusemix.data.items import UnreadableItemError, load_item

    try:
        item = load_item(path, spec.modality)
    except UnreadableItemError as err:
        raise UserError(f"--item-file {str(path)!r} cannot be read as {spec.modality} ({err})") from err
    encoder = load_encoder(spec, device)
    try:
        return encoder.encode([item])
    finally:
        encoder.close()


def retrieve(
    checkpoint: str | os.PathLike[str],
    cache_dir: str | os.PathLike[str],
    split: str,
    *,
    query: str | None = None,
    item_id: str | None = None,
    item_file: str | os.PathLike[str] | None = None,
    k: int = 5,
    dataset: str | None = None,
    device: torch.device | str = "cpu",
) -> list[Hit]:
    """Top-``k`` cosine neighbours in the shared space.

    Args:
        checkpoint: a trained fusion checkpoint (it names its encoders and dataset).
        cache_dir: the latent cache holding the gallery split.
        split: gallery split.
        query: a caption; it is encoded with the checkpoint's text encoder (loaded for this query only) and
            matched against the split's items.
        item_file: instead, an image or audio file, encoded with the checkpoint's item encoder (loaded for this
            query only); the split's distinct captions are ranked.
        item_id: instead of ``query``, a cached item; the split's distinct captions are ranked (a caption shared
            by several items is listed once).
        k: number of hits.
        dataset: gallery dataset (default: the one trained on).
        device: where to compute.

    Raises:
        UserError: not exactly one of ``query``/``item_id``/``item_file``, an unknown item id, an unreadable
            file, missing caches, ``k < 1``, cached latents whose sizes differ from the checkpoint's adapters.
    """
    if sum(x is not None for x in (query, item_id, item_file)) != 1:
        raise UserError(
            "give exactly one of --query (a caption), --item-id (a cached item) or --item-file (an image or clip)"
        )
    if item_file is not None and not Path(item_file).is_file():
        raise UserError(f"--item-file {str(item_file)!r} does not exist or is not a file")
    if k < 1:
        raise UserError(f"-k must be >= 1, got {k}")
    model, state = load_fusion_checkpoint(checkpoint, device=device)
    item_spec, text_spec = checkpoint_encoders(state)
    data = load_paired_latents(cache_dir, item_spec, text_spec, dataset or state["dataset"], split)
    check_latent_sizes(model, data, split)
    with torch.no_grad():
        if query is not None:
            encoder = load_encoder(text_spec, device)
            try:
                latent = encoder.encode([query])
            finally:
                encoder.close()
            if latent.shape[1] != model.text_adapter.config.in_dim:
                raise UserError(
                    f"the text encoder gives {latent.shape[1]}-d latents but the checkpoint's adapter takes "
                    f"{model.text_adapter.config.in_dim}-d"
                )
            q = model.encode_texts(latent.to(device))
            gallery = embed_latents(model, data.items, "items", device=device)
            keys, paths = data.item_ids, data.item_paths
        else:
            if item_file is not None:
                q_latent = _encode_file(item_spec, Path(item_file), device)
                if q_latent.shape[1] != model.item_adapter.config.in_dim:
                    raise UserError(
                        f"the {item_spec.modality} encoder gives {q_latent.shape[1]}-d latents but the checkpoint's "
                        f"adapter takes {model.item_adapter.config.in_dim}-d"
                    )
            else:
                if item_id not in data.item_ids:
                    raise UserError(f"item {item_id!r} is not in the cached {split!r} split")
                row = data.item_ids.index(item_id)
                q_latent = data.items[row : row + 1]
            q = model.encode_items(q_latent.to(device))
            # a caption shared by several items (templates, "a dog") is one gallery entry, listed once
            first = {caption: i for i, caption in reversed(list(enumerate(data.captions)))}
            rows = sorted(first.values())
            gallery = embed_latents(model, data.texts[rows], "texts", device=device)
            keys = [data.captions[i] for i in rows]
            paths = [""] * len(keys)
        scores = (gallery @ q[0]).cpu()
    top = torch.argsort(-scores, stable=True)[: min(k, scores.numel())]
    return [Hit(rank + 1, float(scores[i]), keys[i], paths[i]) for rank, i in enumerate(top.tolist())]
