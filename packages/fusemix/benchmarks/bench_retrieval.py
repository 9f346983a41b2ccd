"""Retrieval evaluation at 5k items x 25k captions: our chunked ranks vs the full-matrix positive-matrix method.

The peer is the CLIP_benchmark recipe written out in torch (materialise the 25k x 5k score matrix and a boolean
positive matrix, top-K per query, a hit when any positive is in it). Both run in this process on the same
embeddings; the recalls must agree. Peak memory is the growth of the process's resident set (Linux VmHWM, reset
before each side). Threads: 1 on both sides.
"""

from __future__ import annotations

import json
import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402

from fusemix.recall_metrics import recall_at_k, retrieval_ranks  # noqa: E402


def _reset_peak() -> int | None:
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        return _peak()
    except OSError:
        return None


def _peak() -> int | None:
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def peer(items: torch.Tensor, texts: torch.Tensor, txt2item: torch.Tensor, ks=(1, 5, 10)) -> dict[str, float]:
    scores = texts @ items.T  # N_txt x N_items, materialised
    positive = txt2item[:, None] == torch.arange(items.shape[0])[None, :]
    out = {}
    for k in ks:
        top = scores.topk(k, dim=1).indices
        out[f"t2i_r{k}"] = 100.0 * float(positive.gather(1, top).any(1).double().mean())
        top_i = scores.T.topk(k, dim=1).indices
        out[f"i2t_r{k}"] = 100.0 * float(positive.T.gather(1, top_i).any(1).double().mean())
    return out


def ours(items: torch.Tensor, texts: torch.Tensor, txt2item: torch.Tensor, ks=(1, 5, 10)) -> dict[str, float]:
    item_ranks, text_ranks = retrieval_ranks(items, texts, txt2item)  # default chunk
    out = {f"i2t_r{k}": v for k, v in recall_at_k(item_ranks, ks).items()}
    out.update({f"t2i_r{k}": v for k, v in recall_at_k(text_ranks, ks).items()})
    return out


def main() -> None:
    torch.set_num_threads(1)
    n_items, per_item, dim = 5000, 5, 256
    g = torch.Generator().manual_seed(0)
    items = torch.nn.functional.normalize(torch.randn(n_items, dim, generator=g), dim=1)
    txt2item = torch.arange(n_items).repeat_interleave(per_item)
    texts = torch.nn.functional.normalize(items[txt2item] + 1.2 * torch.randn(len(txt2item), dim, generator=g), dim=1)
    results = {}
    for name, fn in (("ours", ours), ("peer", peer)):
        base = _reset_peak()
        start = time.perf_counter()
        results[name] = (fn(items, texts, txt2item), time.perf_counter() - start)
        peak = _peak()
        results[name] += ((peak - base) if peak is not None and base is not None else None,)
    (mine, ours_s, ours_mem), (theirs, peer_s, peer_mem) = results["ours"], results["peer"]
    agree = all(abs(mine[k] - theirs[k]) < 1e-9 for k in mine)
    print(json.dumps({
        "case": "retrieval_eval", "n_items": n_items, "n_texts": len(txt2item), "dim": dim, "ours_s": round(ours_s, 3),
        "peer_s": round(peer_s, 3), "ratio": round(ours_s / peer_s, 3), "ours_peak_rss_mb": None if ours_mem is None
        else round(ours_mem / 2**20, 1), "peer_peak_rss_mb": None if peer_mem is None else round(peer_mem / 2**20, 1),
        "recalls_agree": agree, "t2i_r1": round(mine["t2i_r1"], 2), "threads": torch.get_num_threads(),
    }), flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
