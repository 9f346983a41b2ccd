"""Recall@K for retrieval with several captions per item (reference §2.3, the LAVIS / CLIP_benchmark rule).

- item -> text: for each item, rank all captions by similarity; its rank is the best (smallest, 0-based) rank among
  its own captions. R@K = percentage of items with rank < K.
- text -> item: every caption is a query with exactly one ground-truth item; averaged over *all* captions.
- Ties: a gallery entry with an equal score and a lower index ranks first (what a stable descending sort does).
- The similarity matrix is never materialised whole: rows are computed ``chunk_size`` at a time, so memory stays
  ``O(chunk_size * gallery)``: about 12 bytes per chunk element at peak, ~75 MB for 256 rows of a 25k gallery,
  where the whole 5k x 25k matrix would take 500 MB..

The same convention is used for audio (CLAP: text->audio averaged over every caption, audio->text best of its
captions). Written by hand because the peers either assume one caption per item (open_clip's
``get_clip_metrics``) or materialise the full matrix (CLIP_benchmark); tests compare with the latter's rule.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch

DEFAULT_KS = (1, 5, 10)


def captions_per_item(txt2item: torch.Tensor, n_items: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Padded table of each item's caption indices.

    Args:
        txt2item: ``(N_txt,)`` int64, the item index of every caption.
        n_items: number of items ``N_items``.

    Returns:
        ``own`` ``(N_items, M)`` int64 caption indices (ascending, padded with 0) and ``valid`` ``(N_items, M)`` bool,
        where ``M`` is the largest number of captions of one item.

    Raises:
        ValueError: an index is out of range, or an item has no caption (named by index).
    """
    txt2item = txt2item.to(torch.int64).cpu()
    if txt2item.numel() and (int(txt2item.min()) < 0 or int(txt2item.max()) >= n_items):
        raise ValueError(f"txt2item holds item indices outside [0, {n_items})")
    counts = torch.bincount(txt2item, minlength=n_items)
    if n_items and int(counts.min()) == 0:
        missing = int((counts == 0).nonzero()[0])
        raise ValueError(f"item {missing} has no caption; every gallery item needs at least one")
    width = int(counts.max()) if n_items else 0
    order = torch.argsort(txt2item, stable=True)  # captions grouped by item, ascending inside each group
    starts = torch.cumsum(counts, 0) - counts
    slot = torch.arange(txt2item.numel()) - starts[txt2item[order]]
    own = torch.zeros(n_items, width, dtype=torch.int64)
    valid = torch.zeros(n_items, width, dtype=torch.bool)
    own[txt2item[order], slot] = order
    valid[txt2item[order], slot] = True
    return own, valid


def _rank_of(sim: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    # sim: C x G scores, target: C gallery indices -> C 0-based ranks with the lower-index-first tie rule
    score = sim.gather(1, target[:, None])  # C x 1
    # count_nonzero avoids the int64 copy that .sum() on a bool C x G tensor would allocate
    ranks = torch.count_nonzero(sim > score, dim=1)
    equal = sim == score  # C x G, true at the target itself and at exact ties
    tied_rows = (torch.count_nonzero(equal, dim=1) > 1).nonzero()[:, 0]
    if tied_rows.numel():  # rare with real embeddings: resolve ties only on the rows that have them
        columns = torch.arange(sim.shape[1], device=sim.device)
        before = equal[tied_rows] & (columns[None, :] < target[tied_rows, None])
        ranks[tied_rows] += torch.count_nonzero(before, dim=1)
    return ranks


def _item_ranks(rows: Callable[[int, int], torch.Tensor], own, valid, n_items: int, chunk: int) -> torch.Tensor:
    ranks = torch.empty(n_items, dtype=torch.int64)
    for start in range(0, n_items, chunk):
        stop = min(start + chunk, n_items)
        sim = rows(start, stop)  # C x N_txt
        own_c = own[start:stop].to(sim.device)
        valid_c = valid[start:stop].to(sim.device)
        own_scores = sim.gather(1, own_c).masked_fill(~valid_c, -math.inf)  # C x M
        best = own_scores.max(1, keepdim=True).values
        # the best-ranked own caption: highest score, and among equal scores the lowest index
        big = torch.iinfo(torch.int64).max
        target = torch.where((own_scores == best) & valid_c, own_c, big).min(1).values
        ranks[start:stop] = _rank_of(sim, target).cpu()
    return ranks


def _text_ranks(rows: Callable[[int, int], torch.Tensor], txt2item: torch.Tensor, chunk: int) -> torch.Tensor:
    n_txt = txt2item.numel()
    ranks = torch.empty(n_txt, dtype=torch.int64)
    for start in range(0, n_txt, chunk):
        stop = min(start + chunk, n_txt)
        sim = rows(start, stop)  # C x N_items
        ranks[start:stop] = _rank_of(sim, txt2item[start:stop].to(sim.device)).cpu()
    return ranks


def retrieval_ranks(
    item_embeddings: torch.Tensor, text_embeddings: torch.Tensor, txt2item: torch.Tensor, *, chunk_size: int = 256
) -> tuple[torch.Tensor, torch.Tensor]:
    """0-based ranks for item->text (best own caption) and text->item, from embeddings, chunked.

    Args:
        item_embeddings: ``(N_items, D)`` (normalise them first for cosine similarity).
        text_embeddings: ``(N_txt, D)`` on the same device.
        txt2item: ``(N_txt,)`` int64 ground-truth item of every caption.
        chunk_size: similarity rows computed at once.

    Returns:
        ``(N_items,)`` and ``(N_txt,)`` int64 ranks on CPU.

    Raises:
        ValueError: mismatched shapes, an out-of-range index, or an item without captions.
    """
    if item_embeddings.ndim != 2 or text_embeddings.ndim != 2 or item_embeddings.shape[1] != text_embeddings.shape[1]:
        raise ValueError(
            f"expected (N_items, D) and (N_txt, D) embeddings, got {tuple(item_embeddings.shape)} and "
            f"{tuple(text_embeddings.shape)}"
        )
    if txt2item.shape != (text_embeddings.shape[0],):
        raise ValueError(f"txt2item must have shape ({text_embeddings.shape[0]},), got {tuple(txt2item.shape)}")
    n_items = item_embeddings.shape[0]
    own, valid = captions_per_item(txt2item, n_items)
    item_ranks = _item_ranks(lambda a, b: item_embeddings[a:b] @ text_embeddings.T, own, valid, n_items, chunk_size)
    text_ranks = _text_ranks(lambda a, b: text_embeddings[a:b] @ item_embeddings.T, txt2item.cpu(), chunk_size)
    return item_ranks, text_ranks


def ranks_from_similarity(
    sim_i2t: torch.Tensor, txt2item: torch.Tensor, *, chunk_size: int = 256
) -> tuple[torch.Tensor, torch.Tensor]:
    """Same as :func:`retrieval_ranks` from a given ``(N_items, N_txt)`` similarity matrix (text->item uses its
    transpose)."""
    n_items, n_txt = sim_i2t.shape
    if txt2item.shape != (n_txt,):
        raise ValueError(f"txt2item must have shape ({n_txt},), got {tuple(txt2item.shape)}")
    own, valid = captions_per_item(txt2item, n_items)
    item_ranks = _item_ranks(lambda a, b: sim_i2t[a:b], own, valid, n_items, chunk_size)
    text_ranks = _text_ranks(lambda a, b: sim_i2t[:, a:b].T, txt2item.cpu(), chunk_size)
    return item_ranks, text_ranks


def recall_at_k(ranks: torch.Tensor, ks: Sequence[int] = DEFAULT_KS) -> dict[int, float]:
    """Percentage of queries with ``rank < K`` for each ``K``."""
    return {k: 100.0 * float((ranks < k).double().mean()) for k in ks}


def chance_recall(txt2item: torch.Tensor, n_items: int, ks: Sequence[int] = DEFAULT_KS) -> dict[str, dict[int, float]]:
    """Expected R@K (percent) of a random ranking, both directions.

    item->text: an item with ``m`` captions among ``N_txt`` has ``1 - C(N_txt - m, K) / C(N_txt, K)``, averaged
    over items. text->item: ``K / N_items``.
    """
    n_txt = txt2item.numel()
    counts = torch.bincount(txt2item.to(torch.int64).cpu(), minlength=n_items).tolist()
    i2t = {}
    for k in ks:
        total = 0.0
        for m in counts:
            miss = 1.0
            for j in range(min(k, n_txt)):  # product form of C(N - m, K) / C(N, K)
                miss *= max(n_txt - m - j, 0) / (n_txt - j)
            total += 1.0 - miss
        i2t[k] = 100.0 * total / max(n_items, 1)
    t2i = {k: 100.0 * min(k, n_items) / max(n_items, 1) for k in ks}
    return {"i2t": i2t, "t2i": t2i}


def retrieval_metrics(item_ranks: torch.Tensor, text_ranks: torch.Tensor, ks: Sequence[int] = DEFAULT_KS) -> dict:
    """Recall table from ranks: ``i2t_r{K}``, ``t2i_r{K}``, their means, ``rsum`` and ``r_mean``.

    LAVIS names: ``txt_r{K}`` is our ``i2t_r{K}`` (text retrieval), ``img_r{K}`` our ``t2i_r{K}``.
    """
    i2t = recall_at_k(item_ranks, ks)
    t2i = recall_at_k(text_ranks, ks)
    out: dict[str, float] = {}
    out.update({f"i2t_r{k}": v for k, v in i2t.items()})
    out.update({f"t2i_r{k}": v for k, v in t2i.items()})
    out["i2t_mean"] = sum(i2t.values()) / len(ks)
    out["t2i_mean"] = sum(t2i.values()) / len(ks)
    out["rsum"] = sum(i2t.values()) + sum(t2i.values())
    out["r_mean"] = out["rsum"] / (2 * len(ks))
    return out
