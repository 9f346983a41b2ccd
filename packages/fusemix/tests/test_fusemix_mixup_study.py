"""Slow study (reference §5 toy check): FuseMix vs no-mixup at low N on synthetic latents, averaged over seeds.

Items are clustered 32-d concepts; the "frozen encoders" are two fixed random 2-layer tanh maps to 256-d (items)
and 192-d (captions); each item has 5 noisy captions. The assertion is the calibrated one the reference suggests:
FuseMix >= no-mixup - tolerance at low N (mid difficulty), not a strict gain.
"""

from __future__ import annotations

import statistics

import pytest
import torch

from fusemix.encoders import resolve_encoder
from fusemix.evaluate import evaluate_retrieval
from fusemix.latents import PairedLatents
from fusemix.train import TrainConfig, train


def _latents(n_items: int, generator: torch.Generator, maps) -> PairedLatents:
    centres, (a1, a2), (b1, b2) = maps
    concept = centres[torch.randint(0, centres.shape[0], (n_items,), generator=generator)]
    concept = concept + 0.5 * torch.randn(n_items, 32, generator=generator)
    txt2item = torch.arange(n_items).repeat_interleave(5)
    noisy = concept[txt2item] + 0.6 * torch.randn(5 * n_items, 32, generator=generator)
    items = torch.tanh(torch.tanh(concept @ a1) @ a2)
    texts = torch.tanh(torch.tanh(noisy @ b1) @ b2)
    return PairedLatents(
        items=items, texts=texts, txt2item=txt2item, item_ids=[str(i) for i in range(n_items)],
        item_paths=[""] * n_items, captions=[""] * (5 * n_items),
        item_spec=resolve_encoder("frozen-conv", "image"), text_spec=resolve_encoder("frozen-bow", "text"),
    )  # fmt: skip


@pytest.mark.slow
def test_fusemix_not_worse_than_no_mixup_at_low_n(tmp_path) -> None:
    g = torch.Generator().manual_seed(123)
    maps = (
        2.0 * torch.randn(64, 32, generator=g),
        (torch.randn(32, 256, generator=g) / 32**0.5, torch.randn(256, 256, generator=g) / 16),
        (torch.randn(32, 192, generator=g) / 32**0.5, torch.randn(192, 192, generator=g) / 192**0.5),
    )
    scores: dict[bool, list[float]] = {True: [], False: []}
    for seed in (0, 1):
        data_gen = torch.Generator().manual_seed(1000 + seed)
        train_data, val, test = (_latents(n, data_gen, maps) for n in (500, 200, 1000))
        for mixup in (True, False):
            config = TrainConfig(
                cache_dir="", dataset="toy", item_encoder="frozen-conv", text_encoder="frozen-bow", preset="cpu",
                depth=1, expansion=1, out_dim=64, batch_size=128, mixup=mixup, steps=500, warmup_steps=50,
                eval_every=100, seed=seed, device="cpu",
            )  # fmt: skip
            run = train(config, tmp_path / f"{mixup}-{seed}", data=(train_data, val), show_progress=False)
            from fusemix.checkpoint import load_fusion_checkpoint

            model, _ = load_fusion_checkpoint(run.run_dir / "checkpoints" / "best.safetensors")
            scores[mixup].append(evaluate_retrieval(model, test)["rsum"])
    mix, plain = statistics.fmean(scores[True]), statistics.fmean(scores[False])
    print(f"FuseMix RSUM {scores[True]} mean {mix:.1f}; no-mixup {scores[False]} mean {plain:.1f}")
    assert mix >= plain - 5.0
