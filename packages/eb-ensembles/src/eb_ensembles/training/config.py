"""How members are optimised: the one training config (the bottom of the config chain).

The chain is :class:`~eb_ensembles.runs.RunConfig` (dataset, method name) → :class:`~eb_ensembles.methods.MethodConfig`
(network, likelihood, method options) → :class:`TrainConfig` (optimiser, epochs, seed). The task is not a field: it
comes from the targets (:func:`~eb_ensembles.training.likelihood.task_of`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from eb_ensembles.checks import InvalidInputError

__all__ = ["DTYPES", "TrainConfig"]

DTYPES = {"float32": torch.float32, "float64": torch.float64}


@dataclass
class TrainConfig:
    """How to train M members by minibatch Adam.

    Attributes:
        members: M, the number of members (≥ 1).
        epochs: passes over the training set per member.
        batch_size: minibatch size (the last batch of an epoch may be smaller).
        lr: Adam learning rate.
        weight_decay: L2 coefficient in Adam. 0 is the faithful mode (members maximise the likelihood); > 0 makes
            each member a MAP estimate under a Gaussian prior, outside the paper's assumption.
        vectorise: train all members at once on stacked parameters (True) or one after another (False).
        seed: run seed (≥ 0); member streams are derived from it.
        checkpoint_every: save the work in progress every this many epochs (when a checkpoint folder is given).
        dtype: ``"float32"`` or ``"float64"``.
        shard: split the members across the processes of an ``accelerate launch`` / ``torchrun`` job (member m
            goes to process ``m mod P``); each process trains its members and saves their checkpoints, then every
            process gathers all members from the checkpoint folder. Needs a checkpoint folder; a single process
            trains everything.

    Example:
        >>> TrainConfig(members=3, epochs=2).members
        3
        >>> TrainConfig(seed=-1)
        Traceback (most recent call last):
        ...
        eb_ensembles.checks.InvalidInputError: seed must be >= 0, got -1
    """

    members: int = 5
    epochs: int = 30
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.0
    vectorise: bool = True
    seed: int = 0
    checkpoint_every: int = 5
    dtype: str = "float32"
    shard: bool = False

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise :class:`InvalidInputError` on any out-of-range field."""
        if self.members < 1:
            raise InvalidInputError(f"an ensemble needs M >= 1 members, got members={self.members}")
        if self.epochs < 1 or self.batch_size < 1:
            raise InvalidInputError(f"epochs and batch_size must be >= 1, got {self.epochs} and {self.batch_size}")
        if self.seed < 0:
            raise InvalidInputError(f"seed must be >= 0, got {self.seed}")
        if self.dtype not in DTYPES:
            raise InvalidInputError(f"unknown dtype {self.dtype!r}; choose one of {', '.join(DTYPES)}")
        if not self.lr > 0 or not self.weight_decay >= 0:
            raise InvalidInputError(f"lr must be > 0 and weight_decay >= 0, got {self.lr} and {self.weight_decay}")
        if self.checkpoint_every < 1:
            raise InvalidInputError(f"checkpoint_every must be >= 1, got {self.checkpoint_every}")

    @property
    def torch_dtype(self) -> torch.dtype:
        """The torch dtype named by :attr:`dtype`."""
        return DTYPES[self.dtype]
