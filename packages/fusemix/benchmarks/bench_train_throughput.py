"""Training throughput on cached latents vs a bare PyTorch loop doing the same adapter forward/backward.

Both sides run in this process on the same adapter sizes, contrastive batch and optimiser: ours is
``fusemix.train.train`` (shuffled gather of 2B cached pairs, FuseMix, InfoNCE, AdamW, LR schedule, logging, a
checkpoint at the end); the peer is a loop over pre-made random tensors of the contrastive batch with the same
model, loss and optimiser step. The goal is ours >= 80% of the bare loop's steps/s. One JSON line per case.
Threads: 1 on both sides (set below and printed). Time is this process's CPU time (``time.process_time``), which
other jobs on a shared machine do not inflate; our fixed setup cost (run directory, final checkpoint) is removed
by timing two run lengths and taking the difference.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402

from fusemix.adapters import AdapterConfig, FusionModel  # noqa: E402
from fusemix.encoders import resolve_encoder  # noqa: E402
from fusemix.latents import PairedLatents  # noqa: E402
from fusemix.loss import symmetric_infonce  # noqa: E402
from fusemix.optim import build_optimizer  # noqa: E402
from fusemix.train import TrainConfig, train  # noqa: E402


def bare_loop(d_item: int, d_text: int, batch: int, steps: int, settings: dict) -> float:
    torch.manual_seed(0)
    model = FusionModel(AdapterConfig(d_item, **settings), AdapterConfig(d_text, **settings))
    optimizer = build_optimizer(model)
    xs = [torch.randn(batch, d_item) for _ in range(8)]
    ys = [torch.randn(batch, d_text) for _ in range(8)]
    model.train()
    start = time.process_time()
    for step in range(steps):
        out_x, out_y, tau = model(xs[step % 8], ys[step % 8])
        loss = symmetric_infonce(out_x, out_y, tau)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return steps / (time.process_time() - start)


def ours(d_item: int, d_text: int, batch: int, steps: int, settings: dict, mixup: bool) -> float:
    n_items = 4096
    g = torch.Generator().manual_seed(0)
    data = PairedLatents(
        items=torch.randn(n_items, d_item, generator=g), texts=torch.randn(5 * n_items, d_text, generator=g),
        txt2item=torch.arange(5 * n_items) // 5, item_ids=[str(i) for i in range(n_items)],
        item_paths=[""] * n_items, captions=[""] * (5 * n_items),
        item_spec=resolve_encoder("frozen-conv", "image"), text_spec=resolve_encoder("frozen-bow", "text"),
    )  # fmt: skip
    config = TrainConfig(
        cache_dir="", dataset="bench", item_encoder="frozen-conv", text_encoder="frozen-bow", val_split=None,
        preset="cpu", batch_size=batch, steps=steps, warmup_steps=10, mixup=mixup, device="cpu", **settings,
    )  # fmt: skip
    seconds = []
    for n in (steps // 4, steps):
        with tempfile.TemporaryDirectory() as out:
            start = time.process_time()
            train(dataclasses.replace(config, steps=n), out, data=(data, None), show_progress=False)
            seconds.append(time.process_time() - start)
    return (steps - steps // 4) / (seconds[1] - seconds[0])


def main() -> None:
    torch.set_num_threads(1)
    for d_item, d_text, batch, steps in ((256, 384, 256, 80), (768, 384, 512, 24)):
        settings = {"depth": 2, "expansion": 4, "dropout": 0.1, "out_dim": 64}
        for mixup in (True, False):
            ours(d_item, d_text, batch, 8, settings, mixup)  # warm-up (imports, first allocations)
            # alternate the two sides twice and keep each side's best
            peer = bare_loop(d_item, d_text, batch, steps, settings)
            mine = ours(d_item, d_text, batch, steps, settings, mixup)
            peer = max(peer, bare_loop(d_item, d_text, batch, steps, settings))
            mine = max(mine, ours(d_item, d_text, batch, steps, settings, mixup))
            print(json.dumps({
                "case": "train_steps_per_s", "d_item": d_item, "d_text": d_text, "contrastive_batch": batch,
                "mixup": mixup, "steps": steps, "ours_steps_per_s": round(mine, 2), "peer_steps_per_s": round(peer, 2),
                "ratio": round(mine / peer, 3), "threads": torch.get_num_threads(),
            }), flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
