"""CompILE's masked LSTM (the encoder's recurrence) in one autograd node with a hand-written backward.

CompILE runs an LSTM cell forward over the whole trajectory once per segment, multiplying its state by the soft
"this segment has started" mask after every step (the public code's ``masked_encode``):

    gates_t = W_ih x_t + b_ih + b_hh + W_hh h_{t-1}            (i, f, g, o blocks, PyTorch's order)
    c'_t = sigmoid(f) c_{t-1} + sigmoid(i) tanh(g),   h'_t = sigmoid(o) tanh(c'_t)
    c_t = m_t c'_t,   h_t = m_t h'_t,   output_t = h_t

With soft masks this is not a plain LSTM, so ``nn.LSTM`` cannot run it. Two things make it cheaper than the
``nn.LSTMCell`` loop (measured in the README, "CompILE and NP-CompILE"):

* the input projection W_ih x_t + b does not depend on the segment: :func:`input_gates` computes it once per
  minibatch for every step, and every segment reuses it;
* :class:`MaskedLSTM` runs the recurrence without recording an autograd graph (about 9 tensor operations per step)
  and back-propagates through it by hand (about 10 per step, the weight gradient in one matrix product at the
  end), instead of the dozen autograd nodes per step of the cell loop in each direction.

The maths is unchanged; tests compare values and gradients with the ``nn.LSTMCell`` loop in float64 and with
``torch.autograd.gradcheck``.
"""

from __future__ import annotations

import torch
from torch import nn


def input_gates(embedded: torch.Tensor, lstm: nn.LSTMCell) -> torch.Tensor:
    """(B, T, H) inputs -> (B, T, 4H) W_ih x_t + b_ih + b_hh, the part of the gates shared by every segment."""
    return torch.nn.functional.linear(embedded, lstm.weight_ih, lstm.bias_ih + lstm.bias_hh)


class MaskedLSTM(torch.autograd.Function):
    """``MaskedLSTM.apply(x_gates, mask, weight_hh)``: the masked recurrence above, zero initial state.

    Args (of ``apply``):
        x_gates: (B, T, 4H) input part of the gates (:func:`input_gates`).
        mask: (B, T) soft mask m_t in [0, 1] (all ones for the first segment).
        weight_hh: (4H, H) recurrent weight.

    Returns:
        (B, T, H) the masked hidden states h_t.
    """

    @staticmethod
    def forward(ctx, x_gates: torch.Tensor, mask: torch.Tensor, weight_hh: torch.Tensor) -> torch.Tensor:
        batch, steps, four_h = x_gates.shape
        h = four_h // 4
        # tanh(x) = 2 sigmoid(2x) - 1: one sigmoid over all four gate blocks (the g block pre-scaled by 2), and
        # tanh(c) the same way (torch's CPU tanh costs about five sigmoids)
        scale = x_gates.new_ones(four_h)
        scale[2 * h : 3 * h] = 2.0
        w_t = weight_hh.t() * scale
        x_t = (x_gates * scale).transpose(0, 1)  # T x B x 4H
        m_t = mask.t().unsqueeze(-1)  # T x B x 1
        act = x_gates.new_empty(steps, batch, four_h)  # sigmoid(i, f, o) and tanh(g)
        c_new = x_gates.new_empty(steps, batch, h)  # c'_t
        tanh_c = x_gates.new_empty(steps, batch, h)
        h_prev = x_gates.new_zeros(steps, batch, h)  # h_{t-1} (masked), for the weight gradient
        c_prev = x_gates.new_zeros(steps, batch, h)  # c_{t-1} (masked)
        out = x_gates.new_empty(steps, batch, h)
        hx = x_gates.new_zeros(batch, h)
        cx = x_gates.new_zeros(batch, h)
        for t in range(steps):
            if t:
                h_prev[t] = hx
                c_prev[t] = cx
                gates = torch.addmm(x_t[t], hx, w_t)
            else:
                gates = x_t[t]
            a = act[t]
            torch.sigmoid(gates, out=a)
            g = a[:, 2 * h : 3 * h].mul_(2.0).sub_(1.0)
            c = torch.addcmul(a[:, h : 2 * h] * cx, a[:, :h], g, out=c_new[t])
            tc = torch.sigmoid(c * 2.0, out=tanh_c[t]).mul_(2.0).sub_(1.0)
            hx = torch.mul(a[:, 3 * h :] * tc, m_t[t], out=out[t])
            cx = c * m_t[t]
        ctx.save_for_backward(mask, weight_hh, act, c_new, tanh_c, h_prev, c_prev)
        return out.transpose(0, 1)

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        mask, weight_hh, act, c_new, tanh_c, h_prev, c_prev = ctx.saved_tensors
        steps, batch, four_h = act.shape
        h = four_h // 4
        i, f, g, o = act[..., :h], act[..., h : 2 * h], act[..., 2 * h : 3 * h], act[..., 3 * h :]
        m = mask.t().unsqueeze(-1)  # T x B x 1
        # everything that does not depend on the backward recurrence, for all steps at once
        h_new = o * tanh_c  # h'_t
        through_h = m * o * (1.0 - tanh_c * tanh_c)  # dL/dc'_t per unit of dL/dh_t through h'_t
        factors = torch.cat(  # d gates / d c'_t (i, f, g blocks) and d gates / d h'_t (o block)
            [g * i * (1.0 - i), c_prev * f * (1.0 - f), i * (1.0 - g * g), tanh_c * o * (1.0 - o)], dim=-1
        ).view(steps, batch, 4, h)
        grad_h_out = grad_out.transpose(0, 1)  # T x B x H
        grad_gates = act.new_empty(steps, batch, 4, h)
        grad_h_total = act.new_empty(steps, batch, h)  # dL/dh_t (output plus recurrence)
        grad_c_total = act.new_empty(steps, batch, h)  # dL/dc_t
        grad_h = act.new_zeros(batch, h)
        grad_c = act.new_zeros(batch, h)
        for t in range(steps - 1, -1, -1):
            gh = torch.add(grad_h_out[t], grad_h, out=grad_h_total[t])
            grad_c_total[t] = grad_c
            gc_new = torch.addcmul(m[t] * grad_c, gh, through_h[t])  # dL/dc'_t
            gg = grad_gates[t]
            torch.mul(gc_new.unsqueeze(1), factors[t, :, :3], out=gg[:, :3])
            torch.mul(gh * m[t], factors[t, :, 3], out=gg[:, 3])
            if t:
                grad_h = gg.view(batch, four_h) @ weight_hh
                grad_c = gc_new * f[t]  # dL/dc_{t-1}
        grad_x = grad_gates.view(steps, batch, four_h)
        grad_mask = None
        if ctx.needs_input_grad[1]:
            grad_mask = (grad_h_total * h_new + grad_c_total * c_new).sum(-1).t()
        grad_w = None
        if ctx.needs_input_grad[2]:
            grad_w = grad_x[1:].reshape(-1, four_h).t() @ h_prev[1:].reshape(-1, h)
        return grad_x.transpose(0, 1), grad_mask, grad_w


def masked_lstm(x_gates: torch.Tensor, mask: torch.Tensor | None, weight_hh: torch.Tensor) -> torch.Tensor:
    """(B, T, 4H) input gates, (B, T) mask or None (all ones), (4H, H) W_hh -> (B, T, H) masked hidden states."""
    if mask is None:
        mask = x_gates.new_ones(x_gates.shape[:2])
    return MaskedLSTM.apply(x_gates, mask, weight_hh)


__all__ = ["MaskedLSTM", "input_gates", "masked_lstm"]
