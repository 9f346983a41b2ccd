"""Per-member losses and gradients of plain MLPs for stacked parameters ``(T, ...)``, in closed form.

Any other module goes through :mod:`~eb_ensembles.training.generic_grads`. Both return a
``value_and_grad(params, buffers, xb, yb, grads) -> losses`` callable: ``xb (T, B, D)``, ``yb (T, B)``,
``losses (T,)``; the gradients of ``losses.sum()`` are written into ``grads`` (name → ``(T, ...)``
views of the optimiser's flat gradient buffer).
"""

from __future__ import annotations

import torch
from torch import nn

from eb_ensembles.models import MLP
from eb_ensembles.training.likelihood import stacked_loss_and_output_grad

__all__ = ["stacked_mlp_value_and_grad"]


_ELEMENTWISE = (nn.ReLU, nn.Tanh, nn.GELU, nn.Identity)


def _activation_backward(layer: nn.Module, grad: torch.Tensor, pre: torch.Tensor, post: torch.Tensor) -> torch.Tensor:
    """``grad · act'(pre)`` with the same ATen backward kernels autograd uses."""
    if type(layer) is nn.ReLU:
        return torch.ops.aten.threshold_backward(grad, post, 0)
    if type(layer) is nn.Tanh:
        return torch.ops.aten.tanh_backward(grad, post)
    if type(layer) is nn.GELU:
        return torch.ops.aten.gelu_backward(grad, pre, approximate=layer.approximate)
    return grad  # Identity


def stacked_mlp_value_and_grad(base: nn.Module, task: str, noise_std: float | None = None):
    """Closed-form batched loss and gradients for plain MLPs (``MLP`` or ``nn.Sequential`` of Linear + activations).

    For T members with stacked weights ``W_l: (T, out, in)`` and biases ``b_l: (T, out)``, the forward pass is
    ``z_l = baddbmm(b_l, h_{l-1}, W_lᵀ)``, ``h_l = act(z_l)``, and backpropagation is written out by hand:
    ``∂W_l = gᵀ h_{l-1}`` (``bmm``), ``∂b_l = Σ_batch g``, ``g ← (g W_l) · act'(z_{l-1})``, starting from the
    gradient of the mean per-member negative log-likelihood with respect to the outputs:
    ``(softmax − onehot) / B`` for classification, and for regression ``−(y − μ)/(σ² B)`` on the mean and
    ``½(1/σ² − (y − μ)²/σ⁴) · softplus'(raw) / B`` on the raw variance (no variance output with a fixed
    ``noise_std``). No autograd graph is built. Same math as the loop (checked against autograd in the tests).

    Returns:
        ``value_and_grad`` (see the module docstring), or ``None`` for any other module (which then goes through
        :func:`~eb_ensembles.training.generic_grads.generic_value_and_grad`). The caller checks the output width first.
    """
    if isinstance(base, MLP):
        seq, prefix = base.net, "net."
    elif type(base) is nn.Sequential:
        seq, prefix = base, ""
    else:
        return None
    # layers: (weight name, bias name, activations applied after this Linear)
    layers: list[tuple[str, str, list[nn.Module]]] = []
    for name, layer in seq.named_children():
        if type(layer) is nn.Linear and layer.bias is not None:
            layers.append((f"{prefix}{name}.weight", f"{prefix}{name}.bias", []))
        elif type(layer) in _ELEMENTWISE and layers:
            layers[-1][2].append(layer)
        else:
            return None
    if not layers or layers[-1][2]:
        return None  # an activation on the output layer: leave it to the generic path

    def value_and_grad(params, buffers, xb, yb, grads):
        h = xb  # T x B x D
        saved: list[tuple[torch.Tensor, list[tuple[torch.Tensor, torch.Tensor]]]] = []  # input, (pre, post) per act
        for weight, bias, acts in layers:
            layer_in = h
            h = torch.baddbmm(params[bias].unsqueeze(1), h, params[weight].transpose(1, 2))
            trail = []
            for act in acts:
                out = act(h)
                trail.append((h, out))
                h = out
            saved.append((layer_in, trail))
        losses, g = stacked_loss_and_output_grad(task, h, yb, noise_std)
        for i in range(len(layers) - 1, -1, -1):
            weight, bias, _ = layers[i]
            layer_in = saved[i][0]
            torch.bmm(g.transpose(1, 2), layer_in, out=grads[weight])
            torch.sum(g, 1, out=grads[bias])
            if i > 0:
                g = torch.bmm(g, params[weight])
                for act, (pre, post) in zip(reversed(layers[i - 1][2]), reversed(saved[i - 1][1]), strict=True):
                    g = _activation_backward(act, g, pre, post)
        return losses

    return value_and_grad
