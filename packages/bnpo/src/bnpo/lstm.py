"""The posterior encoder's LSTM (reference §1.2) as one autograd node with its gradient written out, for minibatches
whose steps hold few distinct (state, action) pairs.

The encoder reads (s_t, a_t) through a per-step embedding, runs a one-layer LSTM over the time-reversed sequence
(PyTorch's equations and gate order i, f, g, o; zero initial state) and feeds each summary e_t to the posterior head,
whose first layer starts with ``W_e e_t + b_e``. :func:`lstm_head_input` computes that product from the LSTM's
input-side gate pre-activations ``x W_ih^T + b_ih + b_hh``, which the caller computes once per distinct input row
(:mod:`bnpo.distinct`) and the node gathers (``index``): the input projection, three (B T x 32) x (32 x 128) products
per minibatch with oneDNN's LSTM, then costs next to nothing. The recurrence runs time-major on contiguous (B, 4H)
blocks, tanh is ``2 sigmoid(2x) - 1`` (one sigmoid over all four gate blocks; ATen's CPU tanh costs about five
sigmoids), and the backward through time takes one (B x 4H) x (4H x H) product and a handful of elementwise operations
per step, the weight gradients one product over all steps.

Its per-step loop is Python, so it pays only for large minibatches: measured against oneDNN's LSTM plus autograd on
one CPU thread (forward and backward, widths 32, 30 distinct rows), 2.9 against 3.9 ms at B = 512, T = 5 and 9.3
against 9.8 ms at B = 256, T = 30, but 5.0 against 2.7 ms at B = 64, T = 30 (:data:`bnpo.encoder.HAND_LSTM_MIN_BATCH`
chooses). Tested against ``nn.LSTM`` with autograd in float64 (``tests/test_bnpo_fast_paths.py``).
"""

from __future__ import annotations

import torch


class _LSTMHeadInput(torch.autograd.Function):
    """See :func:`lstm_head_input`; ``apply(gates, index, steps, batch, w_hh, w_e, b_e)``."""

    @staticmethod
    def forward(ctx, gates, index, steps, batch, w_hh, w_e, b_e):  # type: ignore[override]
        four_h = gates.shape[-1]
        h = four_h // 4
        # act: (T, B, 4H) pre-activations, the g block doubled so that one sigmoid gives tanh as 2 s - 1
        act = gates.index_select(0, index).view(steps, batch, four_h)
        act.view(steps, batch, 4, h)[:, :, 2].mul_(2.0)
        w_rec_t = w_hh.t().clone()
        w_rec_t[:, 2 * h : 3 * h] *= 2.0
        hs = gates.new_empty(steps, batch, h)
        cs = gates.new_empty(steps, batch, h)
        tanh_cs = gates.new_empty(steps, batch, h)
        for n in range(steps):
            a = act[n]
            if n:
                a.addmm_(hs[n - 1], w_rec_t)
            a.sigmoid_()
            g = a[:, 2 * h : 3 * h].mul_(2.0).sub_(1.0)
            c = torch.mul(a[:, :h], g, out=cs[n])
            if n:
                c.addcmul_(a[:, h : 2 * h], cs[n - 1])
            tanh_c = torch.mul(c, 2.0, out=tanh_cs[n]).sigmoid_().mul_(2.0).sub_(1.0)
            torch.mul(a[:, 3 * h :], tanh_c, out=hs[n])
        ctx.save_for_backward(index, w_hh, w_e, act, cs, tanh_cs, hs)
        ctx.n_rows = gates.shape[0]
        return torch.addmm(b_e, hs.view(steps * batch, h), w_e.t()).view(steps, batch, -1)

    @staticmethod
    def backward(ctx, grad_pre):  # type: ignore[override]
        index, w_hh, w_e, act, cs, tanh_cs, hs = ctx.saved_tensors
        steps, batch, four_h = act.shape
        h = four_h // 4
        flat_pre = grad_pre.reshape(steps * batch, -1)
        grad_w_e = torch.mm(flat_pre.t(), hs.view(steps * batch, h))
        grad_b_e = flat_pre.sum(0)
        grad_h = torch.mm(flat_pre, w_e).view(steps, batch, h)  # dL/dh_n through the head's first layer
        grad_z = torch.empty_like(act)  # dL/d pre-activation (unscaled), per step
        carried = act.new_empty(batch, 4, h)  # what multiplies each block's activation slope
        zero_c = act.new_zeros(batch, h)
        grad_c = zero_c
        for n in range(steps - 1, -1, -1):
            a = act[n]
            i, f, g, o = a.view(batch, 4, h).unbind(1)
            tanh_c = tanh_cs[n]
            last = n == steps - 1
            grad_h_n = grad_h[n] if last else torch.addmm(grad_h[n], grad_z[n + 1], w_hh)
            # dL/dc_n = dL/dh_n o (1 - tanh(c_n)^2) + dL/dc_{n+1} f_{n+1}
            grad_c_n = torch.addcmul(o, o, tanh_c.square(), value=-1.0).mul_(grad_h_n)
            if not last:
                grad_c_n.addcmul_(grad_c, act[n + 1].view(batch, 4, h)[:, 1])
            grad_c = grad_c_n
            torch.mul(g, grad_c, out=carried[:, 0])
            torch.mul(cs[n - 1] if n else zero_c, grad_c, out=carried[:, 1])
            torch.mul(i, grad_c, out=carried[:, 2])
            torch.mul(tanh_c, grad_h_n, out=carried[:, 3])
            z = grad_z[n].view(batch, 4, h)
            torch.addcmul(a, a, a, value=-1.0, out=grad_z[n])  # sigmoid slope s (1 - s) for i, f, o
            torch.addcmul(z[:, 2].fill_(1.0), g, g, value=-1.0, out=z[:, 2])  # tanh slope 1 - g^2 for g
            z.mul_(carried)
        flat_z = grad_z.view(steps * batch, four_h)
        grad_w_hh = torch.mm(grad_z[1:].view(-1, four_h).t(), hs[:-1].reshape(-1, h))
        grad_gates = flat_z.new_zeros(ctx.n_rows, four_h).index_add_(0, index, flat_z)
        return grad_gates, None, None, None, grad_w_hh, grad_w_e, grad_b_e


def lstm_head_input(
    gates: torch.Tensor,
    index: torch.Tensor,
    steps: int,
    batch: int,
    w_hh: torch.Tensor,
    w_e: torch.Tensor,
    b_e: torch.Tensor,
) -> torch.Tensor:
    """``W_e h_n + b_e`` for every step n of a one-layer LSTM (zero initial state) run over steps 0, ..., T-1.

    Args:
        gates: input-side gate pre-activations ``x W_ih^T + b_ih + b_hh``, (R, 4H) float, gate order i, f, g, o: any
            R rows (e.g. one per distinct input), of which step n of sequence b reads row ``index[n B + b]``.
        index: (T B,) int64 (``torch.arange(T * B)`` for rows already in time-major order).
        steps, batch: T and B.
        w_hh: (4H, H) the LSTM's recurrent weights.
        w_e, b_e: (H', H) and (H',) the head's weights for the LSTM state and its bias.

    Returns:
        (T, B, H') float, time-major in the order the LSTM ran (the encoder feeds reversed time).
    """
    return _LSTMHeadInput.apply(gates, index, steps, batch, w_hh, w_e, b_e)
