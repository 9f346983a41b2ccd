"""CompILE (Kipf et al. 2019) as an offline option learner, and NP-CompILE (reference §2.3).

The trajectory is cut into at most N soft segments. Each segment i has a boundary b_i (a Gumbel-softmax sample over
its last step, Poisson length prior) and a latent option z_i (a Gumbel-softmax sample over K options, prior
Uniform(K) for CompILE, Cat(eta) with eta from the same GEM stick-breaking prior as BNPO for NP-CompILE). The
decoder is a set of K sub-policies pi_k(a | s); a segment with soft latent z explains its steps by the mixture
sum_k z_k pi_k(a | s), as in the authors' fork. There is no termination function: an option used downstream runs
until the step cap.

Encoder: (s_t, one-hot a_t) -> Linear, ReLU, Linear -> an LSTM cell run forward once per segment, its state reset
(multiplied by the soft mask) on the steps that earlier segments took (``bnpo.compile.masked_lstm``: the input
projection computed once for all segments, the recurrence in one autograd node with a hand-written backward);
b_i's logits come from every step's state, z_i's from the state at the segment's last step (read out with b_i).
Sub-policies share BNPO's network (a ReLU trunk and one linear softmax head per option,
``bnpo.networks.GrowableHeads``) so the comparison isolates the inference; the fork's sub-policies are linear
softmax on the raw state. Episodes padded at the end (a mask) are encoded and scored as if cut to their real steps.

Loss (minimised, per trajectory, averaged over the minibatch; the fork's):

    nll + beta_z sum_i KL(q(z_i) || prior_z) + beta_b N KL(q(b_1) || Poisson length prior)
        [+ beta_eta KL(q(v) || GEM(alpha)) + lambda_ent sum_k u_k log u_k]   (NP-CompILE)

with nll = - sum_i sum_t m_i[t] log(sum_k z_ik pi_k(a_t | s_t) + 1e-5), the KL on boundaries taken on the first
segment only and multiplied by N (the public code's approximation), and u the segment-weighted usage of z.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn import functional as F

from bnpo.compile import elbo
from bnpo.compile.hsmm import segment_log_likelihood
from bnpo.compile.masked_lstm import input_gates, masked_lstm
from bnpo.networks import GrowableHeads, init_linear_, uniform_
from bnpo.prior import ESTIMATORS, StickBreakingPrior
from sixlab_shared import derive_seed, make_generator

logger = logging.getLogger(__name__)

LOG_EPS = 1e-5  # the public code's stable_log constant
_PRIOR_EPS = 1e-16


@dataclass
class CompILEConfig:
    """Sizes and priors of a CompILE model (saved with every checkpoint; the constructor is the config)."""

    obs_dim: int
    """State dimension D (flattened observation)."""
    n_actions: int
    """Number of discrete actions |A| (CompILE here supports discrete actions only)."""
    n_options: int = 7
    """Latent dimension K (initial K for NP-CompILE, which then grows); the paper's CompILE uses 7."""
    nonparametric: bool = False
    """NP-CompILE: z ~ Cat(eta) with eta from the GEM stick-breaking prior (bnpo.prior), K grows."""
    policy_hidden: list[int] = field(default_factory=lambda: [16])
    """Sub-policy trunk sizes (shared trunk, one softmax head per option, as BNPO's option policies)."""
    hidden: int = 64
    """Encoder embedding, LSTM and head width."""
    max_segments: int = 10
    """N, the most segments per trajectory (capped at the trajectory length); the paper's CompILE uses 10."""
    length_rate: float = 3.0
    """Rate of the Poisson prior on segment lengths (3 in the paper's runs)."""
    estimator: str = "plugin"
    """Stick-breaking estimator for NP-CompILE (``bnpo.prior.StickBreakingPrior``)."""
    n_stick_draws: int = 30
    """Stick draws for the plug-in average / Monte Carlo KL."""
    seed: int = 0
    """Seeds every initialisation, including options added later."""

    def __post_init__(self) -> None:
        if self.obs_dim < 1 or self.n_actions < 1 or self.n_options < 1:
            raise ValueError(
                f"obs_dim, n_actions and n_options must be >= 1, got {self.obs_dim}, {self.n_actions}, {self.n_options}"
            )
        if self.hidden < 1 or self.max_segments < 1 or not self.length_rate > 0:
            raise ValueError(
                f"hidden and max_segments must be >= 1 and length_rate > 0, got {self.hidden}, {self.max_segments}, "
                f"{self.length_rate}"
            )
        if self.estimator not in ESTIMATORS:
            raise ValueError(f"estimator must be one of {ESTIMATORS}, got {self.estimator!r}")

    @property
    def continuous(self) -> bool:
        """Always False: CompILE here models discrete actions (the interface of ``OptionModelConfig``)."""
        return False


class CompILEModel(nn.Module):
    """CompILE / NP-CompILE with the option-model interface of :class:`bnpo.model.OptionModel`
    (``log_pi``, ``log_pi_all``, ``act``, ``terminates``, ``log_likelihood``, ``segment``, ``greedy_usage``,
    ``add_option``), so ``bnpo.fit.evaluate``, the metrics and the options wrapper take either.

    Example:
        >>> model = CompILEModel(CompILEConfig(obs_dim=3, n_actions=2, n_options=2))
        >>> model.segment(torch.zeros(4, 5, 3), torch.zeros(4, 5, dtype=torch.long))[0].shape
        torch.Size([4, 5])
    """

    def __init__(self, config: CompILEConfig) -> None:
        super().__init__()
        self.config = config
        generator = make_generator(config.seed)
        h, k = config.hidden, config.n_options
        with torch.random.fork_rng(devices=[]):  # nn.Linear's own init reads the global RNG: keep it untouched
            self.policy = GrowableHeads(config.obs_dim, config.n_actions, config.policy_hidden, k, generator)
            self.embed = nn.Sequential(
                init_linear_(nn.Linear(config.obs_dim + config.n_actions, h), generator),
                nn.ReLU(),
                init_linear_(nn.Linear(h, h), generator),
            )
            self.lstm = nn.LSTMCell(h, h)
            for param in self.lstm.parameters():
                uniform_(param, 1.0 / math.sqrt(h), generator)
            self.head_b = nn.Sequential(
                init_linear_(nn.Linear(h, h), generator), nn.ReLU(), init_linear_(nn.Linear(h, 1), generator)
            )
            self.head_z = init_linear_(nn.Linear(h, h), generator)
        self.z_rows = nn.ParameterList()
        self.z_biases = nn.ParameterList()
        for _ in range(k):
            self._add_z_row(generator)
        self.prior = (
            StickBreakingPrior(k, estimator=config.estimator, n_draws=config.n_stick_draws, generator=generator)
            if config.nonparametric
            else None
        )

    # ------------------------------------------------------------------ sizes and growth
    @property
    def n_options(self) -> int:
        """Current K."""
        return len(self.z_rows)

    @property
    def device(self) -> torch.device:
        """Device of the parameters."""
        return self.head_z.weight.device

    def _add_z_row(self, generator: torch.Generator | None) -> list[nn.Parameter]:
        h = self.config.hidden
        row = nn.Parameter(uniform_(torch.empty(h), 1.0 / math.sqrt(h), generator).to(self.head_z.weight.device))
        bias = nn.Parameter(torch.zeros(1, device=self.head_z.weight.device))
        self.z_rows.append(row)
        self.z_biases.append(bias)
        return [row, bias]

    def add_option(self) -> list[nn.Parameter]:
        """Append one option (sub-policy head, latent logit row and zero bias, and a stick for NP-CompILE),
        initialised from ``derive_seed(config.seed, "option", k)``; old parameters are untouched.

        Returns:
            the new parameters, for a new optimiser param group.
        """
        generator = make_generator(derive_seed(self.config.seed, "option", self.n_options))
        new = self.policy.add_head(generator) + self._add_z_row(generator)
        if self.prior is not None:
            new.append(self.prior.add_stick(generator=generator))
        logger.info("added option %d", self.n_options)
        return new

    def option_parameters(self, k: int) -> list[nn.Parameter]:
        """Parameters belonging to option ``k`` alone."""
        params = [self.policy.weights[k], self.policy.biases[k], self.z_rows[k], self.z_biases[k]]
        return params + ([self.prior.sticks[k]] if self.prior is not None else [])

    def config_dict(self) -> dict:
        """The constructor's configuration as a JSON-ready dict."""
        return dataclasses.asdict(self.config)

    # ------------------------------------------------------------------ sub-policies
    def log_pi_all(self, states: torch.Tensor) -> torch.Tensor:
        """(..., D) states -> (..., K, |A|) log pi_k(. | s)."""
        return F.log_softmax(self.policy(states), dim=-1)

    def log_pi(self, states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """(B, T, D) states, (B, T) int64 actions -> (B, T, K) log pi_k(a_t | s_t)."""
        out = self.log_pi_all(states)
        index = actions.long().unsqueeze(-1).unsqueeze(-1).expand(*actions.shape, out.shape[-2], 1)
        return out.gather(-1, index)[..., 0]

    @torch.no_grad()
    def act(self, state: torch.Tensor, option: int | torch.Tensor, *, greedy: bool = True, generator=None):
        """Greedy (argmax) or sampled action of sub-policy ``option``: () for a (D,) state, (N,) for (N, D)."""
        state = torch.as_tensor(state, dtype=torch.float32, device=self.device)
        single = state.ndim == 1
        states = state.reshape(-1, self.config.obs_dim)
        options = torch.as_tensor(option, device=self.device).long().reshape(-1).expand(states.shape[0])
        out = self.log_pi_all(states)[torch.arange(states.shape[0], device=self.device), options]
        action = out.argmax(-1) if greedy else torch.multinomial(out.exp(), 1, generator=generator)[:, 0]
        return action[0] if single else action

    @torch.no_grad()
    def terminates(self, state: torch.Tensor, option: int | torch.Tensor) -> torch.Tensor:
        """CompILE has no termination function: 0 everywhere (an option runs until the wrapper's step cap)."""
        state = torch.as_tensor(state, dtype=torch.float32, device=self.device)
        return torch.zeros(state.shape[:-1], device=self.device)

    def beta(self, states: torch.Tensor) -> torch.Tensor:
        """(..., D) -> (..., K) zeros (no termination function)."""
        return torch.zeros(*states.shape[:-1], self.n_options, device=states.device)

    # ------------------------------------------------------------------ inference network
    def n_segments(self, steps: int) -> int:
        """Segments used on trajectories of ``steps`` steps: min(max_segments, steps)."""
        return min(self.config.max_segments, steps)

    def z_logits(self, readout: torch.Tensor) -> torch.Tensor:
        """(B, H) segment summaries -> (B, K) latent logits."""
        hidden = torch.relu(self.head_z(readout))
        return hidden @ torch.stack(list(self.z_rows)).T + torch.cat(list(self.z_biases))

    def encode(
        self,
        states: torch.Tensor,
        actions: torch.Tensor,
        mask: torch.Tensor | None = None,
        *,
        tau: float = 1.0,
        hard: bool = False,
        generator: torch.Generator | None = None,
    ) -> dict[str, torch.Tensor]:
        """Run the segment-by-segment encoder.

        Args:
            states: (B, T, D) float; actions: (B, T) int64.
            mask: (B, T) bool real steps of episodes padded at the end (``Dataset.padded``), or None (all real). A
                row of L real steps is encoded as the same row cut to L steps would be: boundaries only on real
                steps, n_b = min(N, L) segments with the last ending at step L - 1, later segments empty.
            tau: temperature of both Gumbel-softmax relaxations.
            hard: evaluation mode: argmax boundaries and latents (CompILE's test-time segmentation), no noise.
            generator: noise source for the relaxed samples.

        Returns:
            dict with ``b`` (N, B, T) boundary samples, ``logits_b`` (N - 1, B, T) (-inf on padded steps),
            ``logits_z`` (N, B, K), ``z`` (N, B, K) latent samples, ``masks`` (N, B, T) segment membership (zero
            on padded steps), ``lengths`` (B,) real steps and ``n_used`` (B,) segments n_b of each row.
        """
        batch, steps, _ = states.shape
        n = self.n_segments(steps)
        lengths = _lengths(mask, batch, steps, states.device)
        n_used = torch.clamp(lengths, max=self.config.max_segments)
        inputs = torch.cat([states, F.one_hot(actions.long(), self.config.n_actions).to(states.dtype)], dim=-1)
        x_gates = input_gates(self.embed(inputs), self.lstm)  # shared by every segment
        last = F.one_hot(lengths - 1, steps).to(states.dtype)  # the last segment ends at the last real step
        real = None if mask is None else mask.bool()
        bs, logits_b, logits_z, zs = [], [], [], []
        for i in range(n):
            reset = elbo.encoder_masks(bs) if bs else None
            encodings = masked_lstm(x_gates, reset, self.lstm.weight_hh)
            if i < n - 1:
                logit = self.head_b(encodings)[..., 0]
                if real is not None:
                    logit = logit.masked_fill(~real, float("-inf"))
                logits_b.append(logit)
                if hard:
                    b = F.one_hot(logit.argmax(-1), steps).to(states.dtype)
                else:
                    b = elbo.gumbel_softmax_sample(logit, tau, generator=generator)
                if real is not None:  # rows with n_b <= i + 1 segments: this one ends at the last real step
                    b = torch.where((n_used <= i + 1)[:, None], last, b)
            else:
                b = last
            bs.append(b)
            logit_z = self.z_logits((encodings * b.unsqueeze(-1)).sum(1))  # read out at the segment's last step
            logits_z.append(logit_z)
            if hard:
                zs.append(F.one_hot(logit_z.argmax(-1), self.n_options).to(states.dtype))
            else:
                zs.append(elbo.gumbel_softmax_sample(logit_z, tau, generator=generator))
        empty = states.new_zeros(0, batch, steps)
        masks = elbo.segment_masks(bs)
        if real is not None:
            masks = masks * real.to(masks.dtype)
        return {
            "b": torch.stack(bs),
            "logits_b": torch.stack(logits_b) if logits_b else empty,
            "logits_z": torch.stack(logits_z),
            "z": torch.stack(zs),
            "masks": masks,
            "lengths": lengths,
            "n_used": n_used,
        }

    # ------------------------------------------------------------------ objective
    def loss(
        self,
        states: torch.Tensor,
        actions: torch.Tensor,
        mask: torch.Tensor | None = None,
        *,
        tau: float,
        n_train: int,
        beta_b: float = 0.1,
        beta_z: float = 0.1,
        beta_eta: float = 1.0,
        entropy_weight: float = 0.0,
        generator: torch.Generator | None = None,
    ) -> dict[str, torch.Tensor]:
        """Minibatch loss (see the module docstring).

        Args:
            states: (B, T, D) float; actions: (B, T) int64.
            mask: (B, T) bool real steps of end-padded episodes, or None; each row's terms are those of the row cut
                to its real steps (its own segment count n_b, Poisson prior truncated to its length).
            tau: temperature; n_train: training trajectories (scales the stick KL in the reported ELBO only).
            beta_b, beta_z, beta_eta: KL weights (CompILE 0.1, 0.1; NP-CompILE 0.1, 0.5, 1).
            entropy_weight: weight of the negative usage entropy (NP-CompILE).
            generator: noise source (sticks and Gumbel-softmax samples).

        Returns:
            dict of 0-dim tensors ``loss`` (with grad), ``elbo`` (relaxed, unit KL weights, stick KL / n_train),
            ``nll``, ``kl_b``, ``kl_z``, ``kl_eta``, ``neg_entropy``, and ``usage`` (K,).
        """
        batch, steps, _ = states.shape
        out = self.encode(states, actions, mask, tau=tau, generator=generator)
        pi = self.log_pi(states, actions).exp()  # B x T x K
        mixture = torch.einsum("nbk,btk->nbt", out["z"], pi)
        nll = -(out["masks"] * torch.log(mixture + LOG_EPS)).sum(dim=(0, 2)).mean()
        q_z = torch.softmax(out["logits_z"], dim=-1)
        n = out["z"].shape[0]
        present = (torch.arange(n, device=states.device)[:, None] < out["n_used"]).to(q_z.dtype)  # N x B
        zero = states.new_zeros(())
        if self.prior is not None:
            eta, kl_eta = self.prior.sample(batch, generator=generator)  # (B, K), ()
            kl_z = (elbo.kl_categorical(q_z, torch.log(eta + _PRIOR_EPS)) * present).sum(0).mean()
        else:
            kl_eta = zero
            kl_z = (elbo.kl_categorical_uniform(q_z) * present).sum(0).mean()
        if n > 1:
            q_b = torch.softmax(out["logits_b"][0], dim=-1)
            log_prior = elbo.truncated_length_log_prior(out["lengths"], steps, self.config.length_rate).to(q_b)
            kl_b = (out["n_used"].to(q_b.dtype) * elbo.kl_categorical(q_b, log_prior)).mean()
        else:
            kl_b = zero
        weights = out["masks"].sum(-1)  # N x B: expected segment lengths
        usage = torch.einsum("nb,nbk->k", weights, out["z"]) / weights.sum()
        neg_entropy = (usage * torch.log(usage + LOG_EPS)).sum()
        loss = nll + beta_z * kl_z + beta_b * kl_b + beta_eta * kl_eta + entropy_weight * neg_entropy
        return {
            "loss": loss,
            "elbo": -(nll + kl_z + kl_b + kl_eta / n_train).detach(),
            "nll": nll.detach(),
            "kl_b": kl_b.detach(),
            "kl_z": kl_z.detach(),
            "kl_eta": kl_eta.detach(),
            "neg_entropy": neg_entropy.detach(),
            "usage": usage.detach(),
        }

    # ------------------------------------------------------------------ evaluation
    def option_weights(self) -> torch.Tensor:
        """(K,) prior option weights for the likelihood: uniform (CompILE) or the renormalised posterior-mean stick
        weights (NP-CompILE)."""
        if self.prior is None:
            return torch.full((self.n_options,), 1.0 / self.n_options, device=self.device)
        return self.prior.mean_eta()

    @torch.no_grad()
    def log_likelihood(
        self, states: torch.Tensor, actions: torch.Tensor, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Exact log p(a | s) of the generative model (:mod:`bnpo.compile.hsmm`), per trajectory, float64 (B,);
        with a ``mask`` of end-padded episodes, each row's over its real steps (rows grouped by length)."""
        batch, steps, _ = states.shape
        lengths = _lengths(mask, batch, steps, states.device)
        log_pi = self.log_pi(states, actions).double()
        log_w = self.option_weights().double().log()
        total = torch.empty(batch, dtype=torch.float64, device=states.device)
        for length in torch.unique(lengths).tolist():
            rows = lengths == length
            log_length = elbo.poisson_length_log_prior(length, self.config.length_rate)
            total[rows] = segment_log_likelihood(log_pi[rows, :length], log_w, log_length, self.n_segments(length))
        return total

    @torch.no_grad()
    def segment(
        self, states: torch.Tensor, actions: torch.Tensor, mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """CompILE's test-time segmentation: argmax boundaries and latents from the encoder.

        Args:
            mask: (B, T) bool real steps of end-padded episodes (padded steps get the last real step's option).

        Returns:
            (B, T) int64 option per step and (B, T) bool segment starts (t >= 1) where the option changes or a
            new segment begins.
        """
        out = self.encode(states, actions, mask, hard=True)
        segment = out["masks"].argmax(0)  # B x T: the segment holding each step
        if mask is not None:  # padded steps keep the last real step's segment (no boundary inside padding)
            segment = torch.where(mask.bool(), segment, segment.gather(1, out["lengths"][:, None] - 1))
        options = out["z"].argmax(-1).T.gather(1, segment)  # B x T
        boundaries = torch.zeros_like(segment, dtype=torch.bool)
        boundaries[:, 1:] = segment[:, 1:] != segment[:, :-1]
        return options, boundaries

    @torch.no_grad()
    def greedy_usage(
        self, states: torch.Tensor, actions: torch.Tensor, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The growth check's "perfect encoder" usage: fraction of (s_t, a_t) with k* = argmax_k pi_k(a_t|s_t)."""
        best = self.log_pi(states, actions).argmax(-1)
        if mask is not None:
            best = best[mask.bool()]
        counts = torch.bincount(best.reshape(-1), minlength=self.n_options).to(torch.float64)
        return counts / counts.sum()


def _lengths(mask: torch.Tensor | None, batch: int, steps: int, device: torch.device) -> torch.Tensor:
    """(B,) int64 real steps per row from an end-padding mask (None: all ``steps``).

    Raises:
        ValueError: the mask has the wrong shape, a row without real steps, or real steps after padding.
    """
    if mask is None:
        return torch.full((batch,), steps, dtype=torch.int64, device=device)
    if mask.shape != (batch, steps):
        raise ValueError(f"mask must have shape ({batch}, {steps}), got {tuple(mask.shape)}")
    mask = mask.bool()
    lengths = mask.sum(1)
    prefix = torch.arange(steps, device=mask.device)[None, :] < lengths[:, None]
    if bool((lengths < 1).any()) or not bool((prefix == mask).all()):
        raise ValueError("CompILE needs episodes padded at the end: every mask row is True for 1 or more first steps")
    return lengths.to(device)


__all__ = ["CompILEConfig", "CompILEModel"]
