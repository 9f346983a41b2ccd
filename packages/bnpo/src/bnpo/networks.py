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
from torch.func import functional_call
from torch.nn import functional as F

from bnpo.lstm import lstm_head_input

HAND_LSTM_MIN_BATCH = 256
"""With distinct input rows and at least this many trajectories per minibatch, the encoder runs its LSTM as the
hand-written node of :mod:`bnpo.lstm` on gathered input gates; otherwise as oneDNN's LSTM (measured on one CPU thread:
the node is faster at B >= 256, T <= 30, and slower at B <= 128, most of all for long windows, where its per-step
Python loop costs more than the input projection it saves)."""


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
        first, _, second = self.embed
        if index is None:
            hidden = torch.relu(first(torch.flip(inputs, dims=[1])))
        else:
            rows = torch.relu(first(inputs))
            flipped = index.flip(1)
            hidden = rows.index_select(0, flipped.reshape(-1)).view(*flipped.shape, -1)
        lstm = self.lstm
        folded = {
            "weight_ih_l0": lstm.weight_ih_l0 @ second.weight,
            "bias_ih_l0": torch.addmv(lstm.bias_ih_l0, lstm.weight_ih_l0, second.bias),
        }
        reversed_out, _ = functional_call(lstm, folded, (hidden,), strict=False)
        return reversed_out

    def input_gates(self, inputs: torch.Tensor) -> torch.Tensor:
        """(..., D + A) encoder inputs -> (..., 4H) the LSTM's input-side gate pre-activations
        ``W_ih x + b_ih + b_hh`` with x the embedding (its second layer folded in as in :meth:`context_reversed`)."""
        first, _, second = self.embed
        lstm = self.lstm
        weight = lstm.weight_ih_l0 @ second.weight
        bias = torch.addmv(lstm.bias_ih_l0 + lstm.bias_hh_l0, lstm.weight_ih_l0, second.bias)
        return F.linear(torch.relu(first(inputs)), weight, bias)

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
