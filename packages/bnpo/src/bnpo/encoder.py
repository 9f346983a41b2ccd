"""The posterior encoder q(b_t, h_t | ...) of reference §1.2: a backward LSTM over the (state, action) sequence and an
autoregressive per-step head, with the head's loop as one autograd node (:class:`_HeadSequence`).

Initialisation as in :mod:`bnpo.networks` (PyTorch's defaults from an explicit generator); the option-logit biases
start at 0 (the public code left them uninitialised, reference §5.1). Every per-option piece (an input column, an
output row and its bias) is its own parameter, so adding an option appends parameters.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.func import functional_call
from torch.nn import functional as F

from bnpo.lstm import lstm_head_input
from bnpo.networks import init_linear_, softmax, uniform_

HAND_LSTM_MIN_BATCH = 256
"""With distinct input rows and at least this many trajectories per minibatch, the encoder runs its LSTM as the
hand-written node of :mod:`bnpo.lstm` on gathered input gates; otherwise as oneDNN's LSTM (measured on one CPU thread:
the node is faster at B >= 256, T <= 30, and slower at B <= 128, most of all for long windows, where its per-step
Python loop costs more than the input projection it saves)."""


def _relu_backward_(grad: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """Zero ``grad`` in place where relu's output ``out`` is not positive (the gradient through relu)."""
    return torch.ops.aten.threshold_backward.grad_input(grad, out, 0, grad_input=grad)


class _HeadSequence(torch.autograd.Function):
    """The posterior's autoregressive head over all T steps with relaxed (Concrete) samples, as one autograd node.
    Per step t (``pre`` in reversed time, row T-1-t for step t; ``prev`` starts at [1, eta]):

    z1 = relu(pre_t + prev W_prev^T), z2 = relu(z1 W_mid^T + b_mid), out_t = z2 W_out^T + b_out,
    y = (out_t + noise_t) / tau, prev = latent_t = [sigmoid(y_0), softmax(y_{1:})].

    The backward is the chain rule through time written out: per step three (B x 32)-sized products; the weight
    gradients are one product each over all steps (autograd would take six products per step and a dozen nodes)."""

    @staticmethod
    def forward(ctx, pre, prev, w_prev, w_mid, b_mid, w_out, b_out, noise, tau):  # type: ignore[override]
        steps, batch, _ = noise.shape
        hidden = w_mid.shape[0]
        z1 = w_mid.new_empty(steps, batch, hidden)
        z2 = w_mid.new_empty(steps, batch, hidden)
        outs = w_mid.new_empty(noise.shape)  # contiguous (T, B, 1 + K), whatever noise's strides
        latents = w_mid.new_empty(noise.shape)
        first = prev
        for t in range(steps):
            torch.addmm(pre[steps - 1 - t], prev, w_prev.t(), out=z1[t]).relu_()
            torch.addmm(b_mid, z1[t], w_mid.t(), out=z2[t]).relu_()
            torch.addmm(b_out, z2[t], w_out.t(), out=outs[t])
            y = (outs[t] + noise[t]).div_(tau)
            latent = latents[t]
            torch.sigmoid(y[:, :1], out=latent[:, :1])
            probs = latent[:, 1:]
            torch.exp(y[:, 1:] - y[:, 1:].amax(dim=-1, keepdim=True), out=probs)
            probs.div_(probs.sum(dim=-1, keepdim=True))
            prev = latent
        ctx.save_for_backward(first, w_prev, w_mid, w_out, z1, z2, latents)
        ctx.tau = tau
        return outs, latents

    @staticmethod
    def backward(ctx, grad_outs, grad_latents):  # type: ignore[override]
        first, w_prev, w_mid, w_out, z1, z2, latents = ctx.saved_tensors
        steps, batch, width = latents.shape
        d_out = torch.empty_like(latents)
        d_z1 = torch.empty_like(z1)
        d_z2 = torch.empty_like(z2)
        # every step at once: d sigmoid / dy and softmax / tau (y = (out + noise) / tau)
        flags, probs_all = latents[..., :1], latents[..., 1:]
        flag_slope = flags * (1.0 - flags) / ctx.tau
        probs_tau = probs_all / ctx.tau
        grad = grad_latents[steps - 1]
        for t in range(steps - 1, -1, -1):
            if t < steps - 1:  # plus the gradient through the next step's input
                grad = torch.addmm(grad_latents[t], d_z1[t + 1], w_prev)
            d = d_out[t]
            torch.addcmul(grad_outs[t, :, :1], grad[:, :1], flag_slope[t], out=d[:, :1])
            g_h = grad[:, 1:]
            centred = g_h - (g_h * probs_all[t]).sum(dim=-1, keepdim=True)
            torch.addcmul(grad_outs[t, :, 1:], centred, probs_tau[t], out=d[:, 1:])
            # relu's backward as ATen's kernel: ~5x faster than multiplying by a (z > 0) mask
            _relu_backward_(torch.mm(d, w_out, out=d_z2[t]), z2[t])
            _relu_backward_(torch.mm(d_z2[t], w_mid, out=d_z1[t]), z1[t])
        carry = torch.mm(d_z1[0], w_prev)
        previous = torch.cat([first.unsqueeze(0), latents[:-1]]).view(-1, width)
        d_z1_flat, d_z2_flat, d_out_flat = d_z1.flatten(0, 1), d_z2.flatten(0, 1), d_out.view(-1, width)
        return (
            d_z1.flip(0),
            carry,
            torch.mm(previous.t(), d_z1_flat).t(),  # this orientation: MKL is ~5x faster than for d_z1^T previous
            torch.mm(d_z2_flat.t(), z1.flatten(0, 1)),
            d_z2_flat.sum(dim=0),
            torch.mm(d_out_flat.t(), z2.flatten(0, 1)),
            d_out_flat.sum(dim=0),
            None,
            None,
        )


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

    def context_reversed(self, inputs: torch.Tensor, index: torch.Tensor | None = None) -> torch.Tensor:
        """(B, T, hidden) backward summaries in reversed time (row T-1-t holds e_t) by oneDNN's LSTM.

        Args:
            inputs: (B, T, D + A) encoder inputs; or, with ``index``, (U, D + A) distinct rows.
            index: (B, T) int64, the row of ``inputs`` that step t of trajectory b reads.

        The inputs (or the index) are flipped before the per-step embedding, which commutes with it, so no flip sits
        on the gradient path; with ``index`` the embedding's first layer runs once per distinct row. The same function
        as ``nn.LSTM`` over ``embed`` of the reversed sequence, with the embedding's second layer, which is linear,
        folded into the LSTM's input weights: W_ih (W2 r + b2) + b_ih = (W_ih W2) r + (W_ih b2 + b_ih). That saves a
        (B T x embed) x (embed x embed) product in each direction for two (4 hidden x embed) ones."""
        first = self.embed[0]
        if index is None:
            hidden = torch.relu(first(torch.flip(inputs, dims=[1])))
        else:
            rows = torch.relu(first(inputs))
            flipped = index.flip(1)
            hidden = rows.index_select(0, flipped.reshape(-1)).view(*flipped.shape, -1)
        weight, bias = self._folded_input_weights(self.lstm.bias_ih_l0)
        folded = {"weight_ih_l0": weight, "bias_ih_l0": bias}
        reversed_out, _ = functional_call(self.lstm, folded, (hidden,), strict=False)
        return reversed_out

    def _folded_input_weights(self, bias: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The LSTM's input weights with the embedding's second layer folded in: (W_ih W2, W_ih b2 + ``bias``)."""
        _, _, second = self.embed
        w_ih = self.lstm.weight_ih_l0
        return w_ih @ second.weight, torch.addmv(bias, w_ih, second.bias)

    def input_gates(self, inputs: torch.Tensor) -> torch.Tensor:
        """(..., D + A) encoder inputs -> (..., 4H) the LSTM's input-side gate pre-activations
        ``W_ih x + b_ih + b_hh`` with x the embedding (its second layer folded in as in :meth:`context_reversed`)."""
        weight, bias = self._folded_input_weights(self.lstm.bias_ih_l0 + self.lstm.bias_hh_l0)
        return F.linear(torch.relu(self.embed[0](inputs)), weight, bias)

    def head_input(self, inputs: torch.Tensor, index: torch.Tensor | None = None) -> torch.Tensor:
        """The head's first layer applied to the backward summaries alone, ``W_e e_t + b_e`` (its columns for e_t and
        its bias; the previous latent's columns are added step by step): (T, B, head_hidden), time-major in reversed
        time (row T-1-t: step t).

        Args:
            inputs: (B, T, D + A) encoder inputs; or, with ``index``, (U, D + A) distinct rows.
            index: (B, T) int64, the row of ``inputs`` that step t of trajectory b reads (None: inputs are (B, T, .)).

        With ``index`` and at least :data:`HAND_LSTM_MIN_BATCH` trajectories, the input gates are computed once per
        distinct row and the recurrence runs in :func:`bnpo.lstm.lstm_head_input`; otherwise oneDNN's LSTM runs
        (:meth:`context_reversed`). Both are the same function as ``nn.LSTM`` (the reference in the tests)."""
        w_e, b_e = self.head_in.weight[:, :-1], self.head_in.bias
        if index is not None and index.shape[0] >= HAND_LSTM_MIN_BATCH:
            batch, steps = index.shape
            order = index.flip(1).t().reshape(-1)  # row n B + b: step T-1-n of trajectory b
            return lstm_head_input(self.input_gates(inputs), order, steps, batch, self.lstm.weight_hh_l0, w_e, b_e)
        return F.linear(self.context_reversed(inputs, index), w_e, b_e).transpose(0, 1)

    def sample(
        self,
        inputs: torch.Tensor,
        eta: torch.Tensor,
        tau: float,
        *,
        generator: torch.Generator | None = None,
        hard: bool = False,
        straight_through: bool = False,
        time_major: bool = False,
        index: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """Draw (b_t, h_t) autoregressively, relaxed (Concrete, temperature ``tau``) or hard.

        Args:
            inputs: (B, T, D + A) encoder inputs; or, with ``index``, (U, D + A) distinct rows.
            eta: (B, K) option weights; (1, eta) plays the previous latent at t = 0.
            index: (B, T) int64, the row of ``inputs`` that step t of trajectory b reads (:mod:`bnpo.distinct`).
            tau: temperature of both relaxations.
            generator: noise source.
            hard: draw exact Bernoulli / categorical samples instead of relaxed ones (no gradient through them).
            straight_through: hard samples in the forward pass, the relaxed sample's gradient in the backward pass.
            time_major: relaxed samples only: return the head's outputs as they come, ``outs`` (T, B, 1 + K) logits
                [l_b, l_h] and ``latents`` (T, B, 1 + K) samples [b, h] (for :func:`bnpo.objective.relaxed_nll`).

        Returns:
            dict with ``logit_b`` (B, T), ``logit_h`` (B, T, K), ``b`` (B, T) and ``h`` (B, T, K).
        """
        if time_major and (hard or straight_through):
            raise ValueError("time_major applies to relaxed samples only")
        batch, steps = inputs.shape[:2] if index is None else index.shape
        k = self.n_options
        pre = self.head_input(inputs, index)  # T x B x H (reversed time)
        w_in = self.head_in.weight  # H x (hidden + 1)
        # columns for the previous latent [b_{t-1}, h_{t-1}]: one matmul per step
        w_prev = torch.cat([w_in[:, -1:], torch.stack(list(self.in_columns), dim=1)], dim=1)  # H x (1+K)
        w_out = torch.cat([self.out_termination.weight, torch.stack(list(self.out_rows))], dim=0)  # (1+K) x H
        b_out = torch.cat([self.out_termination.bias, torch.cat(list(self.out_biases))])  # 1+K
        u_b = torch.rand((batch, steps), generator=generator, device=inputs.device).clamp(1e-6, 1 - 1e-6)
        u_h = torch.rand((batch, steps, k), generator=generator, device=inputs.device).clamp(1e-6, 1 - 1e-6)
        logistic = torch.logit(u_b)  # log u - log(1 - u)
        gumbel = -torch.log(-torch.log(u_h))
        noise = torch.cat([logistic.unsqueeze(-1), gumbel], dim=-1).transpose(0, 1)  # T x B x (1+K)
        # the latent (b_t, h_t) is carried as one (B, 1+K) tensor [b_t, h_t]; (1, eta) at t = 0
        prev = torch.cat([torch.ones(batch, 1, device=inputs.device, dtype=inputs.dtype), eta.to(inputs.dtype)], -1)
        logits, latents = [], []
        if not hard and not straight_through:
            outs, samples = _HeadSequence.apply(
                pre, prev, w_prev, self.head_mid.weight, self.head_mid.bias, w_out, b_out, noise, tau
            )
            if time_major:
                return {"outs": outs, "latents": samples}
            logits_t, latents_t = outs.transpose(0, 1), samples.transpose(0, 1)
            return {
                "logit_b": logits_t[..., 0],
                "logit_h": logits_t[..., 1:],
                "b": latents_t[..., 0],
                "h": latents_t[..., 1:],
            }
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
                h_t = softmax(noisy[:, 1:])
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
