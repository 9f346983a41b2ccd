"""The posterior encoder's backward LSTM (reference §1.2) as one autograd node with its gradient written out.

The encoder reads (s_t, a_t) through a per-step embedding, runs a one-layer LSTM over the time-reversed sequence
(PyTorch's equations and gate order i, f, g, o; zero initial state) and feeds each summary e_t to the posterior head,
whose first layer starts with ``W_e e_t + b_e``. :func:`reversed_lstm_head_input` computes exactly that product from
the LSTM's input-side gate pre-activations ``x_t W_ih^T + b_ih + b_hh``:

- the input side is computed by the caller, so it can be computed once per *distinct* (state, action) pair and
  gathered (``index``): on the discrete environments here a minibatch of 512 x 5 steps holds a few dozen distinct
  pairs (:mod:`bnpo.distinct`);
- the recurrence runs time-major on contiguous (B, 4H) blocks, tanh is ``2 sigmoid(2x) - 1`` (one sigmoid over all
  four gate blocks; ATen's CPU tanh costs about five sigmoids), and the backward through time takes one (B x 4H) x
  (4H x H) product and a handful of elementwise operations per step, the weight gradients one product over all steps.

Why by hand: against oneDNN's LSTM plus autograd on one CPU thread (B = 512, T = 5, widths 32) it is about as fast
without the gather and leaves out the input projection's three (B T x 32) x (32 x 128) products with it. Tested
against ``nn.LSTM`` with autograd in float64 (``tests/test_bnpo_fast_paths.py``).
"""

from __future__ import annotations

import torch


class _ReversedLSTMHeadInput(torch.autograd.Function):
    """See :func:`reversed_lstm_head_input`; ``apply(gates, index, steps, batch, w_hh, w_e, b_e)``."""

    @staticmethod
    def forward(ctx, gates, index, steps, batch, w_hh, w_e, b_e):  # type: ignore[override]
        four_h = gates.shape[-1]
        h = four_h // 4
        # act: (T, B, 4H) pre-activations, the g block doubled so that one sigmoid gives tanh as 2 s - 1
        act = (gates.clone() if index is None else gates.index_select(0, index)).view(steps, batch, four_h)
        act.view(steps, batch, 4, h)[:, :, 2].mul_(2.0)
        w_rec_t = w_hh.t().clone()
        w_rec_t[:, 2 * h : 3 * h] *= 2.0
        hs = gates.new_empty(steps, batch, h)
        cs = gates.new_empty(steps, batch, h)
        tanh_cs = gates.new_empty(steps, batch, h)
        for n, t in enumerate(range(steps - 1, -1, -1)):  # reversed time: step t reads e_{t+1}'s state
            a = act[t]
            if n:
                a.addmm_(hs[t + 1], w_rec_t)
            a.sigmoid_()
            g = a[:, 2 * h : 3 * h].mul_(2.0).sub_(1.0)
            c = torch.mul(a[:, :h], g, out=cs[t])
            if n:
                c.addcmul_(a[:, h : 2 * h], cs[t + 1])
            tanh_c = torch.mul(c, 2.0, out=tanh_cs[t]).sigmoid_().mul_(2.0).sub_(1.0)
            torch.mul(a[:, 3 * h :], tanh_c, out=hs[t])
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
        grad_h = torch.mm(flat_pre, w_e).view(steps, batch, h)  # dL/de_t through the head's first layer
        grad_z = torch.empty_like(act)  # dL/d pre-activation (unscaled), per step
        carried = act.new_empty(batch, 4, h)  # what multiplies each block's activation slope
        zero_c = act.new_zeros(batch, h)
        grad_c = zero_c
        for t in range(steps):  # the forward's order reversed: t = 0 was computed last
            a = act[t]
            i, f, g, o = a.view(batch, 4, h).unbind(1)
            tanh_c = tanh_cs[t]
            grad_h_t = torch.addmm(grad_h[t], grad_z[t - 1], w_hh) if t else grad_h[0]
            # dL/dc_t = dL/dh_t o (1 - tanh(c_t)^2) + dL/dc_{t-1} f_{t-1} (step t-1 read c_t)
            grad_c_t = torch.addcmul(o, o, tanh_c.square(), value=-1.0).mul_(grad_h_t)
            if t:
                grad_c_t.addcmul_(grad_c, act[t - 1].view(batch, 4, h)[:, 1])
            grad_c = grad_c_t
            torch.mul(g, grad_c, out=carried[:, 0])
            torch.mul(cs[t + 1] if t < steps - 1 else zero_c, grad_c, out=carried[:, 1])
            torch.mul(i, grad_c, out=carried[:, 2])
            torch.mul(tanh_c, grad_h_t, out=carried[:, 3])
            z = grad_z[t].view(batch, 4, h)
            torch.addcmul(a, a, a, value=-1.0, out=grad_z[t])  # sigmoid slope s (1 - s) for i, f, o
            torch.addcmul(z[:, 2].fill_(1.0), g, g, value=-1.0, out=z[:, 2])  # tanh slope 1 - g^2 for g
            z.mul_(carried)
        flat_z = grad_z.view(steps * batch, four_h)
        grad_w_hh = torch.mm(grad_z[:-1].view(-1, four_h).t(), hs[1:].reshape(-1, h))
        if index is None:
            grad_gates = flat_z
        else:
            grad_gates = flat_z.new_zeros(ctx.n_rows, four_h).index_add_(0, index, flat_z)
        return grad_gates, None, None, None, grad_w_hh, grad_w_e, grad_b_e


def reversed_lstm_head_input(
    gates: torch.Tensor,
    index: torch.Tensor | None,
    steps: int,
    batch: int,
    w_hh: torch.Tensor,
    w_e: torch.Tensor,
    b_e: torch.Tensor,
) -> torch.Tensor:
    """``W_e e_t + b_e`` for every step, with e_t the state of a one-layer LSTM run over steps T-1, ..., t.

    Args:
        gates: input-side gate pre-activations ``x W_ih^T + b_ih + b_hh``, (R, 4H) float, gate order i, f, g, o:
            with ``index`` None, R = T B rows in time-major order (row t B + b is step t of trajectory b); otherwise
            any R rows (e.g. one per distinct input) of which step t of trajectory b reads row ``index[t B + b]``.
        index: (T B,) int64 or None.
        steps, batch: T and B.
        w_hh: (4H, H) the LSTM's recurrent weights.
        w_e, b_e: (H', H) and (H',) the head's weights for e_t and its bias.

    Returns:
        (T, B, H') float, time-major in natural order (row t: step t).
    """
    return _ReversedLSTMHeadInput.apply(gates, index, steps, batch, w_hh, w_e, b_e)
