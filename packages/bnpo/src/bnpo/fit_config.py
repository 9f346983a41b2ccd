"""``FitConfig``: every setting of a fit, validated on construction (the CLI's one table of defaults and help)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bnpo.model_config import OptionModelConfig
from sixlab_shared import UserError, derive_seed


@dataclass
class FitConfig:
    """Everything ``fit()`` needs (the CLI maps its options onto this; saved in config.json and checkpoints)."""

    nonparametric: bool = True
    """Grow K from 1 with the stick-breaking prior (§1.4-1.5); False trains a fixed number ``k`` of options."""
    k: int = 3
    """Number of options for a fixed-K run (ignored when nonparametric)."""
    epochs: int = 500
    """Training epochs."""
    batch_size: int = 512
    """Trajectories per minibatch (capped at the training-set size); batches wrap across epochs, always full."""
    lr: float = 1e-3
    """Adam learning rate."""
    weight_decay: float = 1e-4
    """Adam (L2) weight decay."""
    grad_clip: float = 5.0
    """Gradient-norm clip."""
    tau_initial: float = 1.0
    """Initial temperature of the relaxations."""
    tau_decay: float = 0.999
    """Temperature multiplied by this every epoch."""
    entropy_initial: float = 5.0
    """Initial weight of the usage-entropy bonus (lambda_ent)."""
    entropy_decay: float = 0.999
    """lambda_ent multiplied by this every epoch (public code 0.995; 0.999 recovers K reliably, reference §2.4)."""
    growth_every: int = 10
    """Check the growth rule every this many epochs (0, 10, 20, ...)."""
    growth_tol: float = 0.5
    """Add an option when every option's usage is >= growth_tol / K."""
    split_epochs: list[int] = field(default_factory=list)
    """Epochs at whose start a split trial runs (the growth rule never splits merged skills, reference §5.4). When
    growth has stalled (the least used option's Viterbi usage on the training set is below growth_tol / K), two
    branches train for ``split_trial_epochs`` epochs from the same state and randomness: the model as it is, and the
    model with its most used option copied into its least used one (N(0, split_noise^2) noise, Adam state reset).
    The branch with the higher exact training log-likelihood continues; an epoch inside another trial's window is
    skipped. Off by default (not in the paper)."""
    split_trial_epochs: int = 50
    """Epochs each branch of a split trial trains before the comparison."""
    split_noise: float = 0.05
    """Standard deviation of the split move's perturbation."""
    estimator: str = "plugin"
    """Prior estimator: ``plugin`` (public code) or ``mc`` (corrected Monte Carlo), see ``bnpo.prior``."""
    n_stick_draws: int = 30
    """Stick draws for the plug-in average / Monte Carlo KL."""
    objective: str = "relaxed"
    """``relaxed`` (paper) or ``exact`` (options marginalised by the forward algorithm; see ``OptionModelConfig``)."""
    relaxation: str = "concrete"
    """``concrete`` (paper) or ``straight_through`` (hard forward samples; resists the long-trajectory exploit)."""
    seq_len: int | None = None
    """Steps per training window T; default: the shortest episode. Longer episodes are cut into several windows
    that cover every step (``Dataset.windows``), never truncated."""
    window_stride: int | None = None
    """Steps between the starts of an episode's windows (default T: adjacent windows; smaller: overlapping)."""
    padding: bool = False
    """Fit every episode whole, padded to the longest with a mask (``Dataset.padded``), instead of windows; needs
    ``objective="exact"`` (padded steps are neutral in the forward algorithm) for BNPO; ``method="compile"`` takes it
    as is (each padded row is encoded and scored as if cut to its real steps). ``seq_len``/``window_stride`` are
    then unused."""
    holdout_fraction: float = 0.01
    """Fraction of trajectories held out for the exact log-likelihood (at least one when there are >= 2)."""
    policy_hidden: list[int] = field(default_factory=lambda: [16])
    """Policy trunk sizes."""
    termination_hidden: list[int] = field(default_factory=lambda: [16])
    """Termination trunk sizes."""
    encoder_hidden: int = 32
    """Encoder embedding, LSTM and head width."""
    checkpoint_every: int = 50
    """Save a checkpoint every this many epochs (and at the end) when a run directory is given."""
    restarts: int = 1
    """Independent initialisations; the one with the best exact log-likelihood is kept (see :func:`fit`)."""
    restart_epochs: int | None = None
    """Warm-up epochs each restart trains before the selection (None: all ``epochs``, capped at ``epochs``)."""
    restart_select: str = "heldout"
    """Trajectories scoring the restarts: ``heldout`` (the training ones when none are held out) or ``train``."""
    method: str = "bnpo"
    """``bnpo`` (the option model of the paper) or ``compile`` (the CompILE baseline, ``bnpo.compile``: fixed K with
    ``nonparametric=False``, NP-CompILE with the stick-breaking prior and its growth rule otherwise)."""
    compile_segments: int = 10
    """CompILE: most soft segments per trajectory N (capped at the window length; paper 10)."""
    compile_length_rate: float = 3.0
    """CompILE: rate of the Poisson prior on segment lengths (paper 3)."""
    compile_beta_b: float = 0.1
    """CompILE: weight of the KL on boundaries (paper 0.1, both variants)."""
    compile_beta_z: float | None = None
    """CompILE: weight of the KL on latents (unset: 0.1 for CompILE, 0.5 for NP-CompILE, reference §2.3)."""
    compile_beta_eta: float = 1.0
    """NP-CompILE: weight of the stick-breaking KL (reference §2.3: 1)."""
    compile_hidden: int = 64
    """CompILE: encoder width (embedding, LSTM, heads)."""
    seed: int = 0
    """Seeds the split, the initialisation, minibatch order and every sample."""

    def __post_init__(self) -> None:
        def sizes(values: Any) -> bool:
            return isinstance(values, list | tuple) and len(values) > 0 and all(int(v) >= 1 for v in values)

        checks = {  # field -> (valid?, what it must be)
            "nonparametric": (isinstance(self.nonparametric, bool), "true or false"),
            "k": (self.k >= 1, "an integer >= 1"),
            "epochs": (self.epochs >= 1, "an integer >= 1"),
            "batch_size": (self.batch_size >= 1, "an integer >= 1"),
            "lr": (self.lr > 0 and np.isfinite(self.lr), "a finite number > 0"),
            "weight_decay": (self.weight_decay >= 0, ">= 0"),
            "grad_clip": (self.grad_clip > 0, "> 0"),
            "tau_initial": (self.tau_initial > 0 and np.isfinite(self.tau_initial), "a finite number > 0"),
            "tau_decay": (0 < self.tau_decay <= 1, "in (0, 1]"),
            "entropy_initial": (self.entropy_initial >= 0 and np.isfinite(self.entropy_initial), ">= 0"),
            "entropy_decay": (0 < self.entropy_decay <= 1, "in (0, 1]"),
            "growth_every": (self.growth_every >= 1, "an integer >= 1"),
            "growth_tol": (self.growth_tol > 0, "> 0"),
            "split_epochs": (all(e >= 1 for e in self.split_epochs), "epochs >= 1"),
            "split_trial_epochs": (self.split_trial_epochs >= 1, "an integer >= 1"),
            "split_noise": (self.split_noise >= 0, ">= 0"),
            "estimator": (self.estimator in ("plugin", "mc"), "plugin or mc"),
            "n_stick_draws": (self.n_stick_draws >= 1, "an integer >= 1"),
            "objective": (self.objective in ("relaxed", "exact"), "relaxed or exact"),
            "relaxation": (self.relaxation in ("concrete", "straight_through"), "concrete or straight_through"),
            "seq_len": (self.seq_len is None or self.seq_len >= 2, "an integer >= 2 (or unset)"),
            "window_stride": (self.window_stride is None or self.window_stride >= 1, "an integer >= 1 (or unset)"),
            "padding": (
                not self.padding or self.objective == "exact" or self.method == "compile",
                "false unless objective is exact (or method is compile)",
            ),
            "holdout_fraction": (0.0 <= self.holdout_fraction < 1.0, "in [0, 1)"),
            "policy_hidden": (sizes(self.policy_hidden), "a non-empty list of sizes >= 1"),
            "termination_hidden": (sizes(self.termination_hidden), "a non-empty list of sizes >= 1"),
            "encoder_hidden": (self.encoder_hidden >= 1, "an integer >= 1"),
            "checkpoint_every": (self.checkpoint_every >= 1, "an integer >= 1"),
            "restarts": (self.restarts >= 1, "an integer >= 1"),
            "restart_epochs": (self.restart_epochs is None or self.restart_epochs >= 1, "an integer >= 1 (or unset)"),
            "restart_select": (self.restart_select in ("heldout", "train"), "heldout or train"),
            "method": (self.method in ("bnpo", "compile"), "bnpo or compile"),
            "compile_segments": (self.compile_segments >= 1, "an integer >= 1"),
            "compile_length_rate": (
                self.compile_length_rate > 0 and np.isfinite(self.compile_length_rate),
                "a finite number > 0",
            ),
            "compile_beta_b": (self.compile_beta_b >= 0 and np.isfinite(self.compile_beta_b), "a finite number >= 0"),
            "compile_beta_z": (
                self.compile_beta_z is None or (self.compile_beta_z >= 0 and np.isfinite(self.compile_beta_z)),
                "a finite number >= 0 (or unset)",
            ),
            "compile_beta_eta": (
                self.compile_beta_eta >= 0 and np.isfinite(self.compile_beta_eta),
                "a finite number >= 0",
            ),
            "compile_hidden": (self.compile_hidden >= 1, "an integer >= 1"),
            "seed": (self.seed >= 0, "an integer >= 0"),
        }
        for name, (ok, requirement) in checks.items():
            if not ok:
                raise UserError(
                    f"invalid fit option {name}={getattr(self, name)!r}: must be {requirement}; see `bnpo fit --help`"
                )
        if self.method == "compile":
            unsupported = {
                "objective": self.objective != "relaxed",
                "split_epochs": bool(self.split_epochs),
                "restarts": self.restarts != 1,
            }
            for name, bad in unsupported.items():
                if bad:
                    raise UserError(
                        f"invalid fit option {name}={getattr(self, name)!r}: not available with method=compile "
                        "(CompILE fits windows or padded episodes with its own relaxed ELBO, one run)"
                    )

    @classmethod
    def from_dict(cls, values: Any, source: str = "config") -> FitConfig:
        """Build from a stored dict (config.json, a checkpoint), with one-line errors for unknown or invalid keys.

        Raises:
            UserError: ``values`` is not a dict, names an unknown field, or holds an invalid value.
        """
        if not isinstance(values, dict):
            raise UserError(f"{source}: the fit configuration must be a JSON object, got {type(values).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise UserError(f"{source}: unknown fit option(s) {', '.join(unknown)}")
        try:
            return cls(**values)
        except (TypeError, ValueError) as err:
            raise UserError(f"{source}: invalid fit configuration ({err})") from err

    def restart_seed(self, restart: int) -> int:
        """Seed of restart ``restart`` (initialisation, minibatches, samples): ``seed`` itself when ``restarts == 1``,
        else ``derive_seed(seed, "restart", restart)``. The train/held-out split always follows ``seed``."""
        return self.seed if self.restarts == 1 else derive_seed(self.seed, "restart", restart)

    def model_config(
        self, obs_dim: int, n_actions: int, continuous: bool, run_seed: int | None = None
    ) -> OptionModelConfig:
        """The model sizes this run builds (initial K = 1 when nonparametric); ``run_seed`` defaults to ``seed``."""
        return OptionModelConfig(
            obs_dim=obs_dim,
            n_actions=n_actions,
            n_options=1 if self.nonparametric else self.k,
            continuous=continuous,
            policy_hidden=list(self.policy_hidden),
            termination_hidden=list(self.termination_hidden),
            encoder_embed=self.encoder_hidden,
            encoder_hidden=self.encoder_hidden,
            head_hidden=self.encoder_hidden,
            estimator=self.estimator,
            n_stick_draws=self.n_stick_draws,
            relaxation=self.relaxation,
            objective=self.objective,
            seed=derive_seed(self.seed if run_seed is None else run_seed, "init"),
        )


__all__ = ["FitConfig"]
