"""Per-epoch schedules and the growth rule (reference §1.5, §1.6), as small named functions."""

from __future__ import annotations

from collections.abc import Sequence


def temperature(epoch: int, *, initial: float = 1.0, decay: float = 0.999) -> float:
    """Temperature tau of both relaxations at ``epoch``: initial * decay**epoch."""
    return initial * decay**epoch


def entropy_weight(epoch: int, *, initial: float = 5.0, decay: float = 0.995) -> float:
    """Weight lambda_ent of the usage-entropy bonus at ``epoch``: initial * decay**epoch."""
    return initial * decay**epoch


def is_growth_check_epoch(epoch: int, *, every: int = 10) -> bool:
    """Whether the growth rule is checked at this epoch (0, every, 2 every, ...)."""
    return every > 0 and epoch % every == 0


def should_grow(usage: Sequence[float], *, tol: float = 0.5) -> bool:
    """The growth rule: add an option when every option's usage is at least tol / K.

    Args:
        usage: (K,) usage fractions of the K current options.
        tol: tolerance (0.5 in the paper).

    Example:
        >>> should_grow([1.0])
        True
        >>> should_grow([0.6, 0.35, 0.05])
        False
    """
    k = len(usage)
    return k > 0 and min(float(u) for u in usage) >= tol / k
