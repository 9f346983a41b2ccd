"""Distinct (state, action) pairs of a training set: every per-step network computed once per pair, then gathered.

The option policies, the terminations and the encoder's input side (embedding and LSTM input gates) read one step at
a time, so on the discrete environments here, where a minibatch of 512 x 5 steps holds a few dozen distinct
(state, action) pairs (30 in the whole Room(6) training set, 200 in Landmarks), they are computed for the distinct
pairs and gathered; gradients are summed back per pair. The values are the same as computing every step (each row
goes through the same arithmetic); only the order of the gradient sums differs. ``fit`` builds the table once per
run from the training split (:func:`distinct_steps`) and uses it when the pairs are at most a quarter of a
minibatch's steps (every pair is computed for every minibatch); otherwise (continuous or image observations, or
many pairs, as on Taxi) every step is computed.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

MAX_DISTINCT_FRACTION = 0.25
"""``fit`` uses the table only when the distinct pairs are at most this fraction of a minibatch's steps."""


@dataclass(frozen=True)
class DistinctSteps:
    """Distinct (state, action) pairs and, per step, the pair it holds.

    Attributes:
        states: (U, D) float distinct states, one per pair.
        actions: (U,) int64 (discrete) or (U, A) float (continuous) actions of the pairs.
        index: (N, T) int64: step t of trajectory n holds pair ``index[n, t]``.
    """

    states: torch.Tensor
    actions: torch.Tensor
    index: torch.Tensor

    def take(self, rows: torch.Tensor) -> DistinctSteps:
        """The same pairs for the trajectories ``rows`` (a minibatch): ``index[rows]``."""
        return DistinctSteps(self.states, self.actions, self.index[rows])

    def gather(self, values: torch.Tensor) -> torch.Tensor:
        """(U, ...) per-pair values -> (N, T, ...) per-step values (one ``index_select``; its backward sums per
        pair)."""
        n, t = self.index.shape
        return values.index_select(0, self.index.reshape(-1)).view(n, t, *values.shape[1:])


def distinct_steps(states: torch.Tensor, actions: torch.Tensor, *, max_rows: int | None = None) -> DistinctSteps | None:
    """Find the distinct (state, action) pairs of (N, T) trajectories.

    Args:
        states: (N, T, D) float.
        actions: (N, T) int64 (discrete) or (N, T, A) float (continuous).
        max_rows: return None when there are more distinct pairs than this (default: a quarter of all N T steps).

    Returns:
        :class:`DistinctSteps`, or None when pairs rarely repeat or there are no steps.
    """
    n, t, d = states.shape
    if n * t == 0:
        return None
    discrete = actions.dim() == 2
    flat_actions = actions.reshape(n * t, -1)
    if discrete:
        flat_actions = flat_actions.to(torch.float64)
    rows = torch.cat([states.reshape(n * t, d).to(torch.float64), flat_actions.to(torch.float64)], dim=1)
    unique, inverse = torch.unique(rows, dim=0, return_inverse=True)
    if unique.shape[0] > (MAX_DISTINCT_FRACTION * n * t if max_rows is None else max_rows):
        return None
    pair_states = unique[:, :d].to(states.dtype)
    pair_actions = unique[:, d].to(actions.dtype) if discrete else unique[:, d:].to(actions.dtype)
    return DistinctSteps(pair_states, pair_actions, inverse.view(n, t))
