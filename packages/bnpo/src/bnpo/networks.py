"""Growable networks of the option model (reference §1.2): option policies, terminations and the encoder.

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


class PosteriorEncoder(nn.Module):
    """The autoregressive posterior q(b_t, h_t | e_t, b_{t-1}, h_{t-1}) over a backward LSTM summary e_t.

    (s_t, a_t) -> Linear(D + A -> embed), ReLU, Linear(embed -> embed) -> LSTM run over the time-reversed sequence
    (flipped back, so e_t summarises steps t..T-1). A per-step head maps [e_t, b_{t-1}, h_{t-1}] through two ReLU
    layers to 1 + K logits (termination, then options). The h_{t-1} input columns and the option output rows are
    per-option parameters.

    Args:
        in_dim: D + A (state plus one-hot or continuous action).
        n_options: initial K.
        embed: embedding width (32).
        hidden: LSTM hidden size (32).
        head_hidden: width of the per-step head (32).
        generator: initialisation randomness.
    """

    def __init__(
        self, in_dim: int, n_options: int, embed: int, hidden: int, head_hidden: int, generator: torch.Generator | None
    ) -> None:
        super().__init__()
        self.embed = nn.Sequential(
            init_linear_(nn.Linear(in_dim, embed), generator),
            nn.ReLU(),
            init_linear_(nn.Linear(embed, embed), generator),
        )
        self.lstm = nn.LSTM(embed, hidden, batch_first=True)
        for param in self.lstm.parameters():
            uniform_(param, 1.0 / math.sqrt(hidden), generator)
        self.head_in = init_linear_(nn.Linear(hidden + 1, head_hidden), generator)  # columns for [e_t, b_{t-1}]
        self.head_mid = init_linear_(nn.Linear(head_hidden, head_hidden), generator)
        self.out_termination = init_linear_(nn.Linear(head_hidden, 1), generator)
        with torch.no_grad():
            self.out_termination.bias.zero_()
        self._fan_in = hidden + 1 + n_options
        self.in_columns = nn.ParameterList()
        self.out_rows = nn.ParameterList()
        self.out_biases = nn.ParameterList()
        for _ in range(n_options):
            self.add_option(generator)

    @property
    def n_options(self) -> int:
        """Current K."""
        return len(self.out_rows)

    def add_option(self, generator: torch.Generator | None) -> list[nn.Parameter]:
        """Append an input column, an output row and a zero output bias; returns the new parameters."""
        device = self.head_in.weight.device
        head_hidden = self.head_in.out_features
        column = nn.Parameter(uniform_(torch.empty(head_hidden), 1.0 / math.sqrt(self._fan_in), generator).to(device))
        row = nn.Parameter(uniform_(torch.empty(head_hidden), 1.0 / math.sqrt(head_hidden), generator).to(device))
        bias = nn.Parameter(torch.zeros(1, device=device))
        self.in_columns.append(column)
        self.out_rows.append(row)
        self.out_biases.append(bias)
        return [column, row, bias]

    def context_reversed(self, inputs: torch.Tensor) -> torch.Tensor:
        """(B, T, D + A) -> (B, T, hidden) backward summaries in reversed time: row T-1-t holds e_t. The inputs are
        flipped before the (per-step) embedding, which commutes with it, so no flip sits on the gradient path."""
        reversed_out, _ = self.lstm(self.embed(torch.flip(inputs, dims=[1])))
        return reversed_out

    def context(self, inputs: torch.Tensor) -> torch.Tensor:
        """(B, T, D + A) -> (B, T, hidden) backward summaries e_t."""
        return torch.flip(self.context_reversed(inputs), dims=[1])

    def sample(
        self,
        inputs: torch.Tensor,
        eta: torch.Tensor,
        tau: float,
        *,
        generator: torch.Generator | None = None,
        hard: bool = False,
        straight_through: bool = False,
    ) -> dict[str, torch.Tensor]:
        """Draw (b_t, h_t) autoregressively, relaxed (Concrete, temperature ``tau``) or hard.

        Args:
            inputs: (B, T, D + A) encoder inputs.
            eta: (B, K) option weights; (1, eta) plays the previous latent at t = 0.
            tau: temperature of both relaxations.
            generator: noise source.
            hard: draw exact Bernoulli / categorical samples instead of relaxed ones (no gradient through them).
            straight_through: hard samples in the forward pass, the relaxed sample's gradient in the backward pass.

        Returns:
            dict with ``logit_b`` (B, T), ``logit_h`` (B, T, K), ``b`` (B, T) and ``h`` (B, T, K).
        """
        batch, steps, _ = inputs.shape
        k = self.n_options
        e_reversed = self.context_reversed(inputs)  # row T-1-t: e_t
        w_in = self.head_in.weight  # H x (hidden + 1)
        pre = F.linear(e_reversed, w_in[:, :-1], self.head_in.bias).transpose(0, 1)  # T x B x H (reversed time)
        # columns for the previous latent [b_{t-1}, h_{t-1}]: one matmul per step
        w_prev = torch.cat([w_in[:, -1:], torch.stack(list(self.in_columns), dim=1)], dim=1)  # H x (1+K)
        w_out = torch.cat([self.out_termination.weight, torch.stack(list(self.out_rows))], dim=0)  # (1+K) x H
        b_out = torch.cat([self.out_termination.bias, torch.cat(list(self.out_biases))])  # 1+K
        u_b = torch.rand((batch, steps), generator=generator, device=inputs.device).clamp(1e-6, 1 - 1e-6)
        u_h = torch.rand((batch, steps, k), generator=generator, device=inputs.device).clamp(1e-6, 1 - 1e-6)
        logistic = torch.log(u_b) - torch.log1p(-u_b)
        gumbel = -torch.log(-torch.log(u_h))
        noise = torch.cat([logistic.unsqueeze(-1), gumbel], dim=-1).transpose(0, 1)  # T x B x (1+K)
        # the latent (b_t, h_t) is carried as one (B, 1+K) tensor [b_t, h_t]; (1, eta) at t = 0
        prev = torch.cat([torch.ones(batch, 1, device=inputs.device, dtype=inputs.dtype), eta.to(inputs.dtype)], -1)
        logits, latents = [], []
        for t in range(steps):
            z = torch.relu(torch.addmm(pre[steps - 1 - t], prev, w_prev.T))
            z = torch.relu(self.head_mid(z))
            out = F.linear(z, w_out, b_out)  # B x (1 + K)
            noisy = out + noise[t]
            if hard:
                b_t = (noisy[:, :1] > 0).to(out.dtype)
                h_t = F.one_hot(noisy[:, 1:].argmax(-1), k).to(out.dtype)
            else:
                noisy = noisy / tau
                b_t = torch.sigmoid(noisy[:, :1])
                h_t = torch.softmax(noisy[:, 1:], dim=-1)
                if straight_through:
                    b_t = (b_t > 0.5).to(b_t.dtype) + b_t - b_t.detach()
                    h_t = F.one_hot(h_t.argmax(-1), k).to(h_t.dtype) + h_t - h_t.detach()
            prev = torch.cat([b_t, h_t], dim=-1)
            logits.append(out)
            latents.append(prev)
        logits_t = torch.stack(logits, dim=1)
        latents_t = torch.stack(latents, dim=1)
        return {
            "logit_b": logits_t[..., 0],
            "logit_h": logits_t[..., 1:],
            "b": latents_t[..., 0],
            "h": latents_t[..., 1:],
        }
