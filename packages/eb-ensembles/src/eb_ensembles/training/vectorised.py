"""All members at once: parameters stacked to ``(T, ...)`` in one flat buffer, gradients batched.

The vectorised path keeps every member's parameters in one flat buffer and runs ``torch.optim.Adam``'s arithmetic
once over it (:class:`~eb_ensembles.training.stacked_adam.StackedAdam`). Plain MLPs get their per-member
gradients in closed form from batched matmuls (:func:`~eb_ensembles.training.mlp_grads.stacked_mlp_value_and_grad`,
no autograd graph); any other module goes through :mod:`~eb_ensembles.training.generic_grads` (vmap forward,
closed-form loss gradient, one backward, recorded once per minibatch shape with ``make_fx`` and replayed).
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from eb_ensembles.checks import InvalidInputError
from eb_ensembles.training.config import TrainConfig
from eb_ensembles.training.generic_grads import generic_value_and_grad
from eb_ensembles.training.likelihood import member_log_likelihood
from eb_ensembles.training.loop import Trained
from eb_ensembles.training.members import MemberReport, TrainData, epoch_order, finish_member, init_member
from eb_ensembles.training.mlp_grads import stacked_mlp_value_and_grad
from eb_ensembles.training.stacked_adam import StackedAdam
from sixlab_shared import load_checkpoint, progress, save_checkpoint

logger = logging.getLogger(__name__)

__all__ = ["train_vectorised"]


#: A recorded step pays off after this many replays (recording costs about as much as 30-40 eager steps).
MIN_REPLAYS = 50


def _shapes_worth_recording(
    members: int, data: TrainData, config: TrainConfig, steps: int, start: int
) -> set[tuple[int, ...]]:
    """The minibatch shapes ``(T, B, ...)`` the remaining epochs will run at least :data:`MIN_REPLAYS` times."""
    epochs = config.epochs - start
    counts: dict[int, int] = {}
    for step in range(steps):
        size = min(config.batch_size, data.n - step * config.batch_size)
        counts[size] = counts.get(size, 0) + epochs
    return {(members, size, *data.x.shape[1:]) for size, count in counts.items() if count >= MIN_REPLAYS}


def train_vectorised(
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
    generic: bool = False,
) -> Trained:
    """Train members ``todo`` together; return ``{m: (state on CPU, report)}``.

    A member whose loss turns NaN/inf is frozen (its gradients zeroed) and reported as failed; the others carry on.
    ``generic=True`` forces the ``torch.func.vmap`` path even for plain MLPs (for benchmarks and tests).
    The work in progress goes to ``folder/partial_vmap.safetensors`` every ``config.checkpoint_every`` epochs.
    """
    partial = folder / f"partial_vmap{partial_suffix}.safetensors" if folder is not None else None
    models = [init_member(factory, config.seed, m).to(device=device, dtype=config.torch_dtype).train() for m in todo]
    stacked, buffers = stack_module_state(models)
    base = copy.deepcopy(models[0]).to("meta")
    optimiser = StackedAdam({k: v.detach() for k, v in stacked.items()}, lr=config.lr, weight_decay=config.weight_decay)
    params, grads = optimiser.params, optimiser.grads
    reports = {m: MemberReport(index=m) for m in todo}
    start = 0
    if resume and partial is not None and partial.is_file():
        ckpt = load_checkpoint(partial, device=device)
        if list(ckpt["members"]) == todo:
            with torch.no_grad():
                for name, tensor in params.items():
                    tensor.copy_(ckpt["params"][name])
            optimiser.load_state_dict(ckpt["optimizer"])
            reports = {r["index"]: MemberReport(**r) for r in ckpt["reports"]}
            start = int(ckpt["epoch"])
            logger.info("resume: members %s from epoch %d", todo, start)
    alive = torch.tensor([reports[m].status == "ok" for m in todo], device=device)

    fast = None if generic else stacked_mlp_value_and_grad(base, data.task, data.noise_std)
    steps = -(-data.n // config.batch_size)
    value_and_grad = fast or generic_value_and_grad(
        base, data.task, data.noise_std, record=_shapes_worth_recording(len(todo), data, config, steps, start)
    )
    for epoch in progress(range(start, config.epochs), desc=f"{len(todo)} members", leave=False):
        orders = torch.stack([epoch_order(config.seed, m, epoch, data.n, device) for m in todo])  # T x N
        for step in range(steps):
            idx = orders[:, step * config.batch_size : (step + 1) * config.batch_size]  # T x B
            try:
                flat_idx = idx.reshape(-1)  # one gather for every member's minibatch
                xb = data.x.index_select(0, flat_idx).view(*idx.shape, *data.x.shape[1:])
                yb = data.y.index_select(0, flat_idx).view(idx.shape)
                losses = value_and_grad(params, buffers, xb, yb, grads)  # T; grads filled in
            except RuntimeError as err:
                if "randomness" in str(err):
                    raise InvalidInputError(
                        "vectorised training needs members without random layers (e.g. dropout); "
                        "train them one after another instead (vectorise=False / --no-vectorise)"
                    ) from err
                raise
            finite = torch.isfinite(losses)
            if bool(finite.all()):  # the common case: one check, no masking
                optimiser.step()
                continue
            newly = alive & ~finite
            for t in torch.nonzero(newly).flatten().tolist():
                reports[todo[t]].status = "failed"
                reports[todo[t]].message = f"loss became {float(losses[t])} at epoch {epoch}, step {step}"
            alive = alive & finite
            if not bool(alive.any()):
                break
            for grad in grads.values():
                grad[~alive] = 0.0  # a failed member's NaNs never reach the optimiser state
            optimiser.step()
        for t, m in enumerate(todo):
            if bool(alive[t]):
                reports[m].epochs = epoch + 1
        if not bool(alive.any()):
            break
        if partial is not None and (epoch + 1) % config.checkpoint_every == 0 and epoch + 1 < config.epochs:
            save_checkpoint(
                partial,
                {
                    "members": todo,
                    "epoch": epoch + 1,
                    "params": {k: v.clone() for k, v in params.items()},  # views of one buffer: copy them out
                    "optimizer": optimiser.state_dict(),
                    "reports": [asdict(reports[m]) for m in todo],
                },
            )
        if on_epoch_end is not None:
            on_epoch_end(list(todo), epoch)

    with torch.no_grad():
        base.eval()

        def loglik_one(p, b):
            out = functional_call(base, (p, b), (data.x,))
            return member_log_likelihood(data.task, out, data.y, data.noise_std).sum()

        logliks = vmap(loglik_one, in_dims=(0, 0))(params, buffers).to(torch.float64)
    trained: Trained = {}
    for t, m in enumerate(todo):
        state = {name: tensor[t] for name, tensor in {**params, **buffers}.items()}
        state = {k: state[k] for k in models[0].state_dict()}  # the module's own key order
        loglik = float(logliks[t]) if reports[m].status == "ok" else None
        trained[m] = (finish_member(reports[m], state, loglik, data.n, folder), reports[m])
    if partial is not None:
        partial.unlink(missing_ok=True)
    return trained
