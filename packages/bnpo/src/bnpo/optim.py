"""The optimiser of a fit: Adam with one param group per option added by growth (reference §1.5), updated in one
fused call (:class:`GroupedAdam`), and gradient-norm clipping with one norm over every gradient."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch.optim.adam import adam as adam_functional

if TYPE_CHECKING:
    from bnpo.fit_config import FitConfig
    from bnpo.model import OptionModel


class GroupedAdam(torch.optim.Adam):
    """``torch.optim.Adam`` whose step updates every param group in one call of the (fused) Adam kernel when the
    groups share their hyperparameters (as the per-option groups here do), instead of one call per group. Each
    tensor's update is the library's own, element by element, so the result is the same; state, ``state_dict`` and
    ``load_state_dict`` are Adam's. Groups with different settings fall back to Adam's step.

    After a step that initialised every state, the lists handed to the kernel (parameters, moments, step counts) are
    kept and reused while the parameters, their states and the set of parameters with gradients stay the same
    (checked at every step; anything else, such as a new group, a loaded or popped state, or a parameter that gained
    or lost its gradient, rebuilds them through Adam's own ``_init_group``). ``zero_grad`` sets the gradients to
    None directly (Adam's walks them through its foreach grouping)."""

    _cache: tuple | None = None

    def add_param_group(self, param_group: dict) -> None:  # type: ignore[override]
        self._cache = None
        super().add_param_group(param_group)

    def load_state_dict(self, state_dict: dict) -> None:  # type: ignore[override]
        self._cache = None
        super().load_state_dict(state_dict)

    def zero_grad(self, set_to_none: bool = True) -> None:  # type: ignore[override]
        if not set_to_none:
            return super().zero_grad(set_to_none)
        for group in self.param_groups:
            for param in group["params"]:
                param.grad = None
        return None

    def _cached_lists(self) -> tuple[list[torch.Tensor], ...] | None:
        """The kernel's six lists from the cache, with this step's gradients, or None when it does not apply."""
        if self._cache is None:
            return None
        params, states, others, exp_avgs, exp_avg_sqs, steps = self._cache
        grads = [p.grad for p in params]
        if any(g is None for g in grads) or any(p.grad is not None for p in others):
            return None
        get = self.state.get
        if any(get(p) is not s for p, s in zip(params, states, strict=True)):
            return None
        return params, grads, exp_avgs, exp_avg_sqs, [], steps

    @torch.no_grad()
    def step(self, closure=None):  # type: ignore[override]
        first = {k: v for k, v in self.param_groups[0].items() if k != "params"}
        same = all({k: v for k, v in g.items() if k != "params"} == first for g in self.param_groups[1:])
        if (
            closure is not None
            or not same
            or first["differentiable"]
            or first["amsgrad"]
            or getattr(self, "grad_scale", None)
        ):
            self._cache = None
            return super().step(closure)
        lists = self._cached_lists()
        has_complex = False
        if lists is None:
            lists = ([], [], [], [], [], [])
            for group in self.param_groups:
                has_complex |= self._init_group(group, *lists)
            with_grad = {id(p) for p in lists[0]}
            others = [p for g in self.param_groups for p in g["params"] if id(p) not in with_grad]
            states = [self.state[p] for p in lists[0]]
            self._cache = None if has_complex else (lists[0], states, others, lists[2], lists[3], lists[5])
        beta1, beta2 = first["betas"]
        adam_functional(
            *lists,
            amsgrad=first["amsgrad"],
            has_complex=has_complex,
            beta1=beta1,
            beta2=beta2,
            lr=first["lr"],
            weight_decay=first["weight_decay"],
            eps=first["eps"],
            maximize=first["maximize"],
            foreach=first["foreach"],
            capturable=first["capturable"],
            differentiable=False,
            fused=first["fused"],
            grad_scale=None,
            found_inf=None,
            decoupled_weight_decay=first["decoupled_weight_decay"],
        )
        return None


def make_optimizer(model: OptionModel, initial_k: int, config: FitConfig) -> torch.optim.Adam:
    """Adam with one group for the model as built and one group per option added since (reference §1.5)."""
    added = [p for k in range(initial_k, model.n_options) for p in model.option_parameters(k)]
    added_ids = {id(p) for p in added}
    base = [p for p in model.parameters() if id(p) not in added_ids]
    # fused: one kernel per param group instead of ~10 tensor ops per parameter (the per-option groups make that
    # 75+ parameters at K = 7); same update rule, 2.6 -> ~0.5 ms per step on Room(6).
    fused = all(p.device.type in ("cpu", "cuda") for p in base)
    # GroupedAdam: the per-option groups share their settings, so one kernel call updates them all.
    optimizer = GroupedAdam(base, lr=config.lr, weight_decay=config.weight_decay, fused=fused)
    for k in range(initial_k, model.n_options):
        optimizer.add_param_group({"params": model.option_parameters(k)})
    return optimizer


def clip_grad_norm(parameters: list[torch.nn.Parameter], max_norm: float) -> torch.Tensor:
    """``torch.nn.utils.clip_grad_norm_`` for a small model on the CPU: the same rule (scale every gradient by
    max_norm / (norm + 1e-6) when that is below 1), with the norm of all gradients concatenated (one kernel instead
    of one per parameter) and no multiplication when nothing is clipped (the library always multiplies, by 1.0).

    Returns:
        () total 2-norm of the gradients (NaN/inf when they are not finite; then nothing is scaled).
    """
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return torch.zeros(())
    total = torch.linalg.vector_norm(torch.cat([g.reshape(-1) for g in grads]))
    coef = max_norm / (float(total) + 1e-6)
    if coef < 1.0:
        torch._foreach_mul_(grads, coef)
    return total
