"""Input checks shared by the metrics, the empirical-Bayes object and the ensembles.

Every check raises :class:`InvalidInputError` (a :class:`~sixlab_shared.UserError` and a ``ValueError``) whose
one-line message names the argument, what was expected and what arrived.
"""

from __future__ import annotations

import torch

from sixlab_shared import UserError


class InvalidInputError(UserError, ValueError):
    """An argument has the wrong shape, range or value; the message says which and how to fix it."""


def check_ndim(name: str, tensor: torch.Tensor, ndim: int, layout: str) -> None:
    """Raise unless ``tensor`` has ``ndim`` dimensions (``layout`` names them, e.g. ``"(M, N, K)"``)."""
    if not isinstance(tensor, torch.Tensor):
        raise InvalidInputError(f"`{name}` must be a torch.Tensor of shape {layout}, got {type(tensor).__name__}")
    if tensor.ndim != ndim:
        raise InvalidInputError(f"`{name}` must have shape {layout}, got shape {tuple(tensor.shape)}")


def check_probabilities(name: str, probs: torch.Tensor, *, atol: float = 1e-4) -> None:
    """Raise unless ``probs`` holds probabilities over its last dimension (in [0, 1], rows summing to 1)."""
    if not torch.is_floating_point(probs):
        raise InvalidInputError(f"`{name}` must be a floating-point tensor of probabilities, got dtype {probs.dtype}")
    if probs.numel() == 0:
        raise InvalidInputError(f"`{name}` is empty (shape {tuple(probs.shape)}); pass at least one prediction")
    if not bool(torch.isfinite(probs).all()):
        raise InvalidInputError(f"`{name}` holds NaN or infinite values; pass finite probabilities")
    low, high = float(probs.min()), float(probs.max())
    if low < -atol or high > 1 + atol:
        raise InvalidInputError(
            f"`{name}` must hold probabilities in [0, 1], got values in [{low:.4g}, {high:.4g}]; "
            "apply softmax to logits first"
        )
    sums = probs.sum(-1)
    worst = float((sums - 1).abs().max())
    if worst > atol:
        raise InvalidInputError(
            f"`{name}` rows must sum to 1 over the class dimension, worst row is off by {worst:.3g}; "
            "apply softmax to logits first"
        )


def check_labels(name: str, labels: torch.Tensor, n: int, num_classes: int) -> None:
    """Raise unless ``labels`` is an integer vector of length ``n`` with values in ``[0, num_classes)``."""
    check_ndim(name, labels, 1, "(N,)")
    if labels.dtype.is_floating_point or labels.dtype == torch.bool:
        raise InvalidInputError(f"`{name}` must hold integer class indices, got dtype {labels.dtype}")
    if labels.shape[0] != n:
        raise InvalidInputError(f"`{name}` has {labels.shape[0]} entries but the predictions have {n} rows")
    if n and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise InvalidInputError(
            f"`{name}` must lie in [0, {num_classes}), got values in [{int(labels.min())}, {int(labels.max())}]"
        )


def check_log_probabilities(name: str, log_probs: torch.Tensor, *, atol: float = 1e-3) -> None:
    """Raise unless ``log_probs`` holds log-probabilities over its last dimension (``logsumexp = 0``, all ≤ 0).

    Probabilities (values in [0, 1] summing to 1) and raw logits each get a message saying what to pass instead.
    """
    if not torch.is_floating_point(log_probs):
        raise InvalidInputError(f"`{name}` must be a floating-point tensor of log-probabilities, got {log_probs.dtype}")
    if log_probs.numel() == 0:
        raise InvalidInputError(f"`{name}` is empty (shape {tuple(log_probs.shape)}); pass at least one prediction")
    if bool(torch.isnan(log_probs).any()) or bool(torch.isposinf(log_probs).any()):
        raise InvalidInputError(f"`{name}` holds NaN or +inf values; pass finite log-probabilities")
    worst = float(torch.logsumexp(log_probs.double(), -1).abs().max())
    if worst <= atol:
        return
    if float(log_probs.min()) >= 0 and float((log_probs.double().sum(-1) - 1).abs().max()) <= atol:
        raise InvalidInputError(f"`{name}` holds probabilities where log-probabilities are expected; pass their log")
    raise InvalidInputError(
        f"`{name}` rows must be log-probabilities (logsumexp 0), worst row is off by {worst:.3g}; apply log_softmax"
    )
