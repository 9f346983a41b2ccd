"""``train_ensemble``: check the data and the model, reuse finished members on resume, run the loop or vmap path.

Per-member checkpoints: every finished member is saved to ``<checkpoint_dir>/members/member_XXX.safetensors``,
and the work in progress to ``<checkpoint_dir>/partial_{loop,vmap}.safetensors`` every ``checkpoint_every``
epochs, so a killed run resumes at the last saved epoch. A member whose loss turns NaN/inf is stopped, recorded
as failed with the epoch and step, and excluded from the ensemble; the other members carry on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from eb_ensembles.checks import InvalidInputError
from eb_ensembles.ensemble import DeepEnsemble
from eb_ensembles.training.config import TrainConfig
from eb_ensembles.training.likelihood import check_output_width, task_of
from eb_ensembles.training.loop import train_loop
from eb_ensembles.training.members import MemberReport, TrainData, init_member, member_path
from eb_ensembles.training.vectorised import train_vectorised
from sixlab_shared import load_checkpoint

logger = logging.getLogger(__name__)

__all__ = ["check_training_data", "train_ensemble"]


def check_training_data(x: torch.Tensor, y: torch.Tensor, *, num_classes: int | None = None) -> str:
    """Check ``x (N, D)`` and ``y (N,)`` (finite, matching rows, labels in ``[0, K)``); return the task.

    Raises:
        InvalidInputError: the first problem found, in one line.
    """
    if not isinstance(x, torch.Tensor) or not isinstance(y, torch.Tensor):
        raise InvalidInputError("training inputs and targets must be torch tensors")
    task = task_of(y)
    if x.ndim != 2:
        raise InvalidInputError(f"training inputs must have shape (N, D), got {tuple(x.shape)}")
    if y.ndim != 1:
        raise InvalidInputError(f"{task} targets must be a vector (N,), got shape {tuple(y.shape)}")
    if x.shape[0] != y.shape[0] or x.shape[0] == 0:
        raise InvalidInputError(f"inputs have {x.shape[0]} rows but targets have {y.shape[0]}; need equal, non-zero")
    if not x.dtype.is_floating_point:
        raise InvalidInputError(f"training inputs must be floating point, got {x.dtype}")
    if not bool(torch.isfinite(x).all()):
        raise InvalidInputError("training inputs hold NaN or infinite values; clean the data first")
    if task == "regression" and not bool(torch.isfinite(y).all()):
        raise InvalidInputError("regression targets hold NaN or infinite values; clean the data first")
    if task == "classification":
        low, high = int(y.min()), int(y.max())
        limit = num_classes if num_classes is not None else None
        if low < 0 or (limit is not None and high >= limit):
            raise InvalidInputError(
                f"class labels must lie in [0, {limit if limit is not None else 'K'}), got values in [{low}, {high}]"
            )
    return task


def probe_model(module: nn.Module, x: torch.Tensor, task: str, *, noise_std: float | None) -> int:
    """Run one input through ``module``, check its input width and (regression) output width; return the width.

    Raises:
        InvalidInputError: the model does not accept ``x``'s width, or outputs the wrong number of values.
    """
    try:
        with torch.no_grad():
            out = module.eval()(x[:1])
    except RuntimeError as err:
        first = str(err).splitlines()[0]
        raise InvalidInputError(
            f"the model does not accept inputs of width {x.shape[1]} (the data's); it raised: {first}"
        ) from None
    finally:
        module.train()
    if out.ndim != 2:
        raise InvalidInputError(f"the model must output (N, outputs), got shape {tuple(out.shape)}")
    check_output_width(task, int(out.shape[1]), None, noise_std)
    return int(out.shape[1])


def _shards(config: TrainConfig, folder: Path | None, device: torch.device):
    """``(rank, world, barrier)`` of this process: ``(0, 1, no-op)`` unless ``config.shard`` in a multi-process job."""
    if not config.shard:
        return 0, 1, lambda: None
    from accelerate import PartialState

    state = PartialState(cpu=device.type == "cpu")
    if state.num_processes > 1 and folder is None:
        raise InvalidInputError("sharded training needs a checkpoint folder (members are gathered from it)")
    return state.process_index, state.num_processes, state.wait_for_everyone


def train_ensemble(
    factory: Callable[[], nn.Module],
    x: torch.Tensor,
    y: torch.Tensor,
    config: TrainConfig,
    *,
    noise_std: float | None = None,
    checkpoint_dir: str | Path | None = None,
    resume: bool = False,
    device: str | torch.device | None = None,
    on_epoch_end: Callable[[list[int], int], None] | None = None,
    generic: bool = False,
) -> DeepEnsemble:
    """Train M members of ``factory`` on ``(x, y)`` by minibatch Adam, looped or vectorised.

    The task comes from ``y``: int64 class labels (classification; members output ``(N, K)`` logits and K must
    cover the labels) or float targets (regression; members output ``(N, 2)`` mean and raw variance, or ``(N, 1)``
    means with a fixed ``noise_std``).

    Args:
        factory: zero-argument callable returning a fresh ``nn.Module``.
        x: ``(N, D)`` float inputs.
        y: ``(N,)`` int64 classes or float targets.
        config: the :class:`~eb_ensembles.training.config.TrainConfig`.
        noise_std: fixed Gaussian noise standard deviation of a regression model (None: the network predicts it).
        checkpoint_dir: where per-member and in-progress checkpoints go (None: no checkpoints).
        resume: reuse finished members and the in-progress checkpoint found in ``checkpoint_dir``.
        device: where to train (default: the device of ``x``).
        on_epoch_end: called as ``on_epoch_end(member_indices, epoch)`` after each epoch and its checkpoint;
            raising from it stops training (that is how tests simulate a killed run).
        generic: force the generic ``torch.func`` path in vectorised training (no MLP closed form).

    Returns:
        The :class:`~eb_ensembles.ensemble.DeepEnsemble` (failed members are reported in ``.failed`` and excluded
        from predictions).

    Raises:
        InvalidInputError: bad config or data; a model that does not fit the data; random layers with
            ``vectorise=True``; every member failed.
    """
    config.validate()
    task = check_training_data(x, y)
    if noise_std is not None and not noise_std > 0:
        raise InvalidInputError(f"noise_std must be > 0, got {noise_std}")
    device = torch.device(device) if device is not None else x.device
    dtype = config.torch_dtype
    probe = init_member(factory, config.seed, 0).to(device=x.device, dtype=dtype)
    width = probe_model(probe, x.to(dtype), task, noise_std=noise_std)
    if task == "classification":
        check_training_data(x, y, num_classes=width)  # labels must lie in [0, K) for the model's K
    data = TrainData(
        x.to(device=device, dtype=dtype),
        y.to(device=device, dtype=dtype if task == "regression" else y.dtype),
        task,
        noise_std,
    )
    folder = Path(checkpoint_dir) if checkpoint_dir is not None else None

    trained: dict[int, tuple[dict[str, torch.Tensor], MemberReport]] = {}
    if resume and folder is not None:
        for m in range(config.members):
            path = member_path(folder, m)
            if path.is_file():
                ckpt = load_checkpoint(path, device="cpu")
                trained[m] = (ckpt["state"], MemberReport(**ckpt["report"]))
        if trained:
            logger.info("resume: %d finished member(s) loaded from %s", len(trained), folder)
    todo = [m for m in range(config.members) if m not in trained]
    rank, world, barrier = _shards(config, folder, device)
    mine = [m for m in todo if m % world == rank]
    if mine:
        kwargs = {"folder": folder, "resume": resume, "device": device, "on_epoch_end": on_epoch_end}
        kwargs["partial_suffix"] = f"_rank{rank}" if world > 1 else ""
        if config.vectorise:
            trained.update(train_vectorised(factory, data, config, mine, generic=generic, **kwargs))
        else:
            trained.update(train_loop(factory, data, config, mine, **kwargs))
    if world > 1:  # gather: every process reads the members the others saved
        barrier()
        for m in todo:
            if m not in trained:
                ckpt = load_checkpoint(member_path(folder, m), device="cpu")
                trained[m] = (ckpt["state"], MemberReport(**ckpt["report"]))
    for _, report in trained.values():
        if report.status != "ok":
            logger.warning("member %d failed: %s", report.index, report.message)
    order = sorted(trained)
    return DeepEnsemble(
        factory, [trained[m][0] for m in order], [trained[m][1] for m in order], task, noise_std=noise_std
    )
