"""Members trained one after another with ``torch.optim.Adam``: the plain PyTorch loop (the reference path)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from eb_ensembles.training.config import TrainConfig
from eb_ensembles.training.likelihood import member_log_likelihood, member_loss
from eb_ensembles.training.members import MemberReport, TrainData, epoch_order, finish_member, init_member
from sixlab_shared import load_checkpoint, progress, save_checkpoint

logger = logging.getLogger(__name__)

__all__ = ["train_loop"]

Trained = dict[int, tuple[dict[str, torch.Tensor], MemberReport]]


def train_loop(
    factory: Callable[[], nn.Module],
    data: TrainData,
    config: TrainConfig,
    todo: list[int],
    *,
    folder: Path | None = None,
    resume: bool = False,
    device: torch.device,
    on_epoch_end: Callable[[list[int], int], None] | None = None,
    partial_suffix: str = "",
) -> Trained:
    """Train members ``todo`` one after another; return ``{m: (state on CPU, report)}``.

    The work in progress is saved to ``folder/partial_loop.safetensors`` every ``config.checkpoint_every`` epochs
    and each finished member to ``folder/members/``; with ``resume`` the partial member continues where it stopped.
    """
    partial = folder / f"partial_loop{partial_suffix}.safetensors" if folder is not None else None
    steps = -(-data.n // config.batch_size)
    trained: Trained = {}
    for m in todo:
        model = init_member(factory, config.seed, m).to(device=device, dtype=config.torch_dtype).train()
        optimiser = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        report, start = MemberReport(index=m), 0
        if resume and partial is not None and partial.is_file():
            ckpt = load_checkpoint(partial, device=device)
            if ckpt["member"] == m:
                model.load_state_dict(ckpt["model"])
                optimiser.load_state_dict(ckpt["optimizer"])
                start = int(ckpt["epoch"])
                logger.info("resume: member %d from epoch %d", m, start)
        for epoch in progress(range(start, config.epochs), desc=f"member {m}", leave=False):
            order = epoch_order(config.seed, m, epoch, data.n, device)
            for step in range(steps):
                idx = order[step * config.batch_size : (step + 1) * config.batch_size]
                loss = member_loss(data.task, model(data.x[idx]), data.y[idx], data.noise_std)
                if not bool(torch.isfinite(loss)):
                    report.status = "failed"
                    report.message = f"loss became {float(loss.detach())} at epoch {epoch}, step {step}"
                    break
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
            if report.status != "ok":
                break
            report.epochs = epoch + 1
            if partial is not None and (epoch + 1) % config.checkpoint_every == 0 and epoch + 1 < config.epochs:
                save_checkpoint(
                    partial,
                    {"member": m, "epoch": epoch + 1, "model": model.state_dict(), "optimizer": optimiser.state_dict()},
                )
            if on_epoch_end is not None:
                on_epoch_end([m], epoch)
        loglik = None
        if report.status == "ok":
            with torch.no_grad():
                model.eval()
                ll = member_log_likelihood(data.task, model(data.x), data.y, data.noise_std)
                loglik = float(ll.to(torch.float64).sum())
        trained[m] = (finish_member(report, model.state_dict(), loglik, data.n, folder), report)
        if partial is not None:
            partial.unlink(missing_ok=True)
    return trained
