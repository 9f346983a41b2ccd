"""Adam on one flat buffer of stacked member parameters (the vectorised path's optimiser)."""

from __future__ import annotations

from typing import Any

import torch

from eb_ensembles.checks import InvalidInputError

__all__ = ["StackedAdam"]


class StackedAdam:
    """``torch.optim.Adam`` (single-tensor arithmetic, L2 ``weight_decay``) on one flat buffer of stacked parameters.

    Adam is elementwise, so running it once over the concatenation of every ``(T, ...)`` parameter performs the
    same arithmetic as ``torch.optim.Adam`` on each member's parameters, operation for operation (``lerp_``,
    ``mul_().addcmul_()``, ``sqrt() / √bc2 + eps``, ``addcdiv_``, bias corrections in Python floats), with a
    handful of tensor operations per step instead of a dozen per parameter tensor.

    Args:
        params: name → ``(T, ...)`` tensors; copied into the flat buffer (``.params`` holds views of it).
        lr: learning rate.
        weight_decay: L2 coefficient added to the gradient (``torch.optim.Adam``'s coupled weight decay).
        betas: ``(β1, β2)``.
        eps: added to the denominator.

    Attributes:
        params: name → view of the flat parameter buffer (same shapes as given).
        grads: name → view of the flat gradient buffer; fill these before :meth:`step`.
    """

    def __init__(
        self,
        params: dict[str, torch.Tensor],
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
    ) -> None:
        if not params:
            raise InvalidInputError("StackedAdam needs at least one parameter tensor")
        first = next(iter(params.values()))
        total = sum(p.numel() for p in params.values())
        self.lr, self.weight_decay, self.betas, self.eps = lr, weight_decay, betas, eps
        self.flat = torch.empty(total, dtype=first.dtype, device=first.device)
        self.grad = torch.zeros_like(self.flat)
        self.exp_avg = torch.zeros_like(self.flat)
        self.exp_avg_sq = torch.zeros_like(self.flat)
        self._denom = torch.empty_like(self.flat)
        self._decayed = torch.empty_like(self.flat) if weight_decay != 0 else None
        self.step_count = 0
        self.params: dict[str, torch.Tensor] = {}
        self.grads: dict[str, torch.Tensor] = {}
        offset = 0
        with torch.no_grad():
            for name, tensor in params.items():
                n = tensor.numel()
                self.flat[offset : offset + n].copy_(tensor.reshape(-1))
                self.params[name] = self.flat[offset : offset + n].view(tensor.shape)
                self.grads[name] = self.grad[offset : offset + n].view(tensor.shape)
                offset += n

    @torch.no_grad()
    def step(self) -> None:
        """One Adam update of every parameter from the gradients in :attr:`grads`."""
        beta1, beta2 = self.betas
        self.step_count += 1
        grad = self.grad
        if self._decayed is not None:
            grad = torch.add(grad, self.flat, alpha=self.weight_decay, out=self._decayed)
        self.exp_avg.lerp_(grad, 1 - beta1)
        self.exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        step = float(self.step_count)
        bias_correction1 = 1 - beta1**step
        bias_correction2 = 1 - beta2**step
        step_size = self.lr / bias_correction1
        bias_correction2_sqrt = bias_correction2**0.5
        denom = torch.sqrt(self.exp_avg_sq, out=self._denom).div_(bias_correction2_sqrt).add_(self.eps)
        self.flat.addcdiv_(self.exp_avg, denom, value=-step_size)

    def state_dict(self) -> dict[str, Any]:
        """Step count and moment buffers (for checkpoints)."""
        return {"step": self.step_count, "exp_avg": self.exp_avg.clone(), "exp_avg_sq": self.exp_avg_sq.clone()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        self.step_count = int(state["step"])
        self.exp_avg.copy_(state["exp_avg"])
        self.exp_avg_sq.copy_(state["exp_avg_sq"])
