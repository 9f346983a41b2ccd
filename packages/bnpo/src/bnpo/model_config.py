"""``OptionModelConfig``: the sizes and choices of an option model (saved with every checkpoint)."""

from __future__ import annotations

from dataclasses import dataclass, field

from bnpo.prior import ESTIMATORS

RELAXATIONS = ("concrete", "straight_through")
OBJECTIVES = ("relaxed", "exact")


@dataclass
class OptionModelConfig:
    """Sizes of the option model (saved with every checkpoint; the constructor is the config)."""

    obs_dim: int
    """State dimension D (flattened observation)."""
    n_actions: int
    """Number of discrete actions |A|, or the action dimension when ``continuous``."""
    n_options: int = 1
    """Initial number of options K (1 for nonparametric runs, which then grow)."""
    continuous: bool = False
    """Continuous actions: Gaussian heads with a tanh mean and a global learned log-std (initialised to 1)."""
    policy_hidden: list[int] = field(default_factory=lambda: [16])
    """Policy trunk layer sizes."""
    termination_hidden: list[int] = field(default_factory=lambda: [16])
    """Termination trunk layer sizes."""
    encoder_embed: int = 32
    """Encoder (s, a) embedding width."""
    encoder_hidden: int = 32
    """Backward LSTM hidden size."""
    head_hidden: int = 32
    """Width of the encoder's per-step head."""
    estimator: str = "plugin"
    """``"plugin"`` (public code: averaged stick draws, one-point KL) or ``"mc"`` (Monte Carlo eta and KL)."""
    n_stick_draws: int = 30
    """Stick draws for the plug-in average / Monte Carlo KL."""
    objective: str = "relaxed"
    """``"relaxed"`` (the paper: relaxed ELBO with the autoregressive posterior) or ``"exact"`` (options and
    terminations marginalised exactly by the forward algorithm; only the sticks are variational, so the objective is
    E_q(v)[log p(a | s, eta(v))] - KL, a true lower bound; the encoder is then unused)."""
    relaxation: str = "concrete"
    """``"concrete"`` (the paper: relaxed samples in log p~ and log q) or ``"straight_through"`` (hard samples in the
    forward pass, Concrete gradients): the relaxed objective can be gamed on long trajectories (see the README)."""
    seed: int = 0
    """Seeds every parameter initialisation, including options added later (option k from derive_seed(seed, k))."""

    def __post_init__(self) -> None:
        if self.obs_dim < 1 or self.n_actions < 1 or self.n_options < 1:
            raise ValueError(
                f"obs_dim, n_actions and n_options must be >= 1, got {self.obs_dim}, {self.n_actions}, {self.n_options}"
            )
        if self.estimator not in ESTIMATORS:
            raise ValueError(f"estimator must be one of {ESTIMATORS}, got {self.estimator!r}")
        if self.objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {OBJECTIVES}, got {self.objective!r}")
        if self.relaxation not in RELAXATIONS:
            raise ValueError(f"relaxation must be one of {RELAXATIONS}, got {self.relaxation!r}")
