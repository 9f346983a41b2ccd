"""Growable networks of the option model (reference §1.2): the option policies and terminations (a shared trunk with
one head per option), fast small-dimension softmax and log-probability nodes, and the initialisation helpers the
posterior encoder (:mod:`bnpo.encoder`) shares.

Every per-option piece (a policy head, a termination head, an encoder input column, an encoder output row and its
bias) is its own parameter, so adding an option appends parameters and leaves the old ones untouched; the pieces are
stacked once per forward pass, never per time step.

Initialisation follows PyTorch's defaults (uniform in +-1/sqrt(fan_in) for linear layers and +-1/sqrt(hidden) for
the LSTM) but draws from an explicit ``torch.Generator``; the encoder's option-logit biases start at 0 (the public
code left them uninitialised, reference §5.1).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F


def uniform_(tensor: torch.Tensor, bound: float, generator: torch.Generator | None) -> torch.Tensor:
    """Fill ``tensor`` in place with U(-bound, bound) drawn from ``generator`` (on CPU, then copied)."""
    with torch.no_grad():
        values = (torch.rand(tensor.shape, generator=generator) * 2.0 - 1.0) * bound
        tensor.copy_(values.to(device=tensor.device, dtype=tensor.dtype))
    return tensor


def init_linear_(layer: nn.Linear, generator: torch.Generator | None) -> nn.Linear:
    """PyTorch's default Linear initialisation, U(+-1/sqrt(fan_in)) for weight and bias, from ``generator``."""
    bound = 1.0 / math.sqrt(layer.in_features)
    uniform_(layer.weight, bound, generator)
    if layer.bias is not None:
        uniform_(layer.bias, bound, generator)
    return layer


def _mlp(sizes: list[int], generator: torch.Generator | None) -> nn.Sequential:
    layers: list[nn.Module] = []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:], strict=True):
        layers += [init_linear_(nn.Linear(fan_in, fan_out), generator), nn.ReLU()]
    return nn.Sequential(*layers)


class GrowableHeads(nn.Module):
    """A shared ReLU trunk feeding one linear head per option: state -> (K, out) outputs.

    Args:
        in_dim: state dimension D.
        out_dim: outputs per head (|A| logits, the action dimension, or 1 termination logit).
        hidden: trunk layer sizes (e.g. ``[16]``).
        n_heads: initial number of heads K.
        generator: initialisation randomness.
    """

    def __init__(
        self, in_dim: int, out_dim: int, hidden: list[int], n_heads: int, generator: torch.Generator | None
    ) -> None:
        super().__init__()
        if not hidden:
            raise ValueError("hidden must list at least one trunk layer size")
        self.trunk = _mlp([in_dim, *hidden], generator)
        self.feature_dim = hidden[-1]
        self.out_dim = out_dim
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for _ in range(n_heads):
            self.add_head(generator)

    def add_head(self, generator: torch.Generator | None) -> list[nn.Parameter]:
        """Append one head (default Linear initialisation); returns its new parameters."""
        device = next(self.trunk.parameters()).device
        bound = 1.0 / math.sqrt(self.feature_dim)
        weight = nn.Parameter(uniform_(torch.empty(self.out_dim, self.feature_dim), bound, generator).to(device))
        bias = nn.Parameter(uniform_(torch.empty(self.out_dim), bound, generator).to(device))
        self.weights.append(weight)
        self.biases.append(bias)
        return [weight, bias]

    def forward(self, states: torch.Tensor) -> torch.Tensor:
        """(..., D) states -> (..., K, out) head outputs."""
        features = self.trunk(states)
        k = len(self.weights)
        weight = torch.cat(list(self.weights))  # (K out) x F: all heads in one matmul
        bias = torch.cat(list(self.biases))  # K out
        return F.linear(features, weight, bias).unflatten(-1, (k, self.out_dim))

    def flat(self, states: torch.Tensor) -> torch.Tensor:
        """(..., D) states -> (..., K * out) head outputs, head-major (``forward`` without the split; for one output
        per head, (..., K) without a select on the gradient path)."""
        weight = torch.cat(list(self.weights))
        return F.linear(self.trunk(states), weight, torch.cat(list(self.biases)))

    def log_prob_at(self, states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """log softmax(head_k(s))[a] for every head: (..., D) states and (...) int64 indices -> (..., K).

        The same values as ``log_softmax(self(states))`` gathered at ``actions`` (to float rounding), with a
        hand-written backward (:class:`_HeadLogProb`): about 3x faster forward and backward on the CPU for the
        small action sets here.
        """
        features = self.trunk(states)
        lead = features.shape[:-1]
        k = len(self.weights)
        weight = torch.cat(list(self.weights))  # (K A) x F
        bias = torch.cat(list(self.biases))
        flat = features.reshape(-1, features.shape[-1])
        out = _HeadLogProb.apply(flat, weight, bias, actions.reshape(-1).long(), k)
        return out.reshape(*lead, k)


class _Softmax(torch.autograd.Function):
    """softmax over the last dimension with the closed-form backward p * (g - sum(g p)); see :func:`softmax`."""

    @staticmethod
    def forward(ctx, logits):  # type: ignore[override]
        probs = (logits - logits.amax(dim=-1, keepdim=True)).exp_()
        probs.div_(probs.sum(dim=-1, keepdim=True))
        ctx.save_for_backward(probs)
        return probs

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        (probs,) = ctx.saved_tensors
        weighted = grad * probs
        return weighted.sub_(probs * weighted.sum(dim=-1, keepdim=True))


def softmax(logits: torch.Tensor) -> torch.Tensor:
    """softmax over the last dimension: the same values as ``torch.softmax(logits, -1)`` to float rounding, about
    3x faster forward and backward on the CPU for short last dimensions (K <= ~20), where ATen's softmax kernel is
    slow (measured for (512, 7)); one autograd node with the closed-form backward."""
    return _Softmax.apply(logits)


class _HeadLogProb(torch.autograd.Function):
    """log softmax of every head's logits at the taken action, computed option-major: the logits are laid out as
    (K, A, N), so the max / sum over the A actions run across rows of contiguous N-vectors instead of over a last
    dimension of size A (ATen's reductions and softmax are slow for A ~ 7 on the CPU), and the backward is the closed
    form d out_k / d logit_kj = 1[j = a] - softmax_kj, written as three matrix products."""

    @staticmethod
    def forward(ctx, features, weight, bias, actions, k):  # type: ignore[override]
        n = features.shape[0]
        logits = torch.addmm(bias.unsqueeze(1), weight, features.t()).view(k, -1, n)  # K x A x N
        top = logits.amax(dim=1, keepdim=True)
        probs = (logits - top).exp_()
        total = probs.sum(dim=1, keepdim=True)
        probs.div_(total)  # softmax over actions, kept for the backward
        index = actions.view(1, 1, n).expand(k, 1, n)
        out = logits.gather(1, index).sub_(top).sub_(total.log_())  # K x 1 x N
        ctx.save_for_backward(features, weight, probs, index)
        return out.view(k, n).t()

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        features, weight, probs, index = ctx.saved_tensors
        k, _, n = probs.shape
        g = grad.t().contiguous().view(k, 1, n)
        d_logits = (probs * -g).scatter_add_(1, index, g).view(-1, n)  # (K A) x N
        d_features = torch.mm(d_logits.t(), weight) if ctx.needs_input_grad[0] else None
        d_weight = torch.mm(d_logits, features) if ctx.needs_input_grad[1] else None
        d_bias = d_logits.sum(dim=1) if ctx.needs_input_grad[2] else None
        return d_features, d_weight, d_bias, None, None
