"""What every training path shares: member initialisation and data-order streams, reports, member checkpoints.

Each member m has its own random streams, derived from the run seed with :func:`sixlab_shared.derive_seed`:

* initialisation: the factory is called under a forked torch RNG seeded with ``derive_seed(seed, "init", m)``;
* data order: epoch e visits the training set in ``randperm(N)`` drawn from ``derive_seed(seed, "order", m, e)``.

Both training paths use these streams, so the loop and the vectorised path compute the same numbers up to
float round-off.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

from eb_ensembles.checks import InvalidInputError
from sixlab_shared import derive_seed, make_generator, save_checkpoint

__all__ = ["MemberReport", "TrainData", "epoch_order", "finish_member", "init_member", "member_path"]


@dataclass
class MemberReport:
    """What happened to one member.

    Attributes:
        index: member index m.
        status: ``"ok"`` or ``"failed"``.
        epochs: epochs completed.
        train_loglik: ``ℓ_m = Σ_i log p(y_i | x_i, θ_m)`` on the training set (nats), None if failed.
        train_nll: ``-ℓ_m / N``.
        message: why the member failed (None if ok).
    """

    index: int
    status: str = "ok"
    epochs: int = 0
    train_loglik: float | None = None
    train_nll: float | None = None
    message: str | None = None


@dataclass
class TrainData:
    """Training inputs ``x (N, D)`` and targets ``y (N,)`` on the training device, with the task and likelihood."""

    x: torch.Tensor
    y: torch.Tensor
    task: str
    noise_std: float | None = None
    n: int = field(init=False)

    def __post_init__(self) -> None:
        self.n = int(self.x.shape[0])


def init_member(factory: Callable[[], nn.Module], seed: int, index: int) -> nn.Module:
    """Build member ``index`` with its own initialisation stream (torch's global RNG is forked, not touched)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(seed, "init", index))
        module = factory()
    if not isinstance(module, nn.Module):
        raise InvalidInputError(f"the model factory must return an nn.Module, got {type(module).__name__}")
    return module


def epoch_order(seed: int, index: int, epoch: int, n: int, device: torch.device) -> torch.Tensor:
    """The ``(N,)`` visiting order of member ``index`` in ``epoch`` (int64, on ``device``)."""
    return torch.randperm(n, generator=make_generator(derive_seed(seed, "order", index, epoch))).to(device)


def member_path(folder: Path, index: int) -> Path:
    """Where member ``index``'s finished checkpoint lives under a run folder."""
    return Path(folder) / "members" / f"member_{index:03d}.safetensors"


def finish_member(
    report: MemberReport, state: dict[str, torch.Tensor], loglik: float | None, n: int, folder: Path | None
) -> dict[str, torch.Tensor]:
    """Record a finished member's training log-likelihood, save its checkpoint, return its state on CPU."""
    if report.status == "ok":
        if loglik is None or not math.isfinite(loglik):
            report.status, report.message = "failed", f"training log-likelihood is {loglik}"
        else:
            report.train_loglik, report.train_nll = loglik, -loglik / n
    state = {k: v.detach().cpu().clone() for k, v in state.items()}
    if folder is not None:
        save_checkpoint(member_path(folder, report.index), {"state": state, "report": asdict(report)})
    return state
