"""The option model: generative model, variational posterior, relaxed ELBO and growth (reference §1).

Notation (reference §1.1-§1.4): the table in :mod:`bnpo.objective`; ``tau`` is the temperature of the relaxed
Bernoulli / categorical samples.
"""

from __future__ import annotations

import dataclasses
import logging
import math

import torch
from torch import nn
from torch.nn import functional as F

from bnpo import hmm
from bnpo.distinct import DistinctSteps
from bnpo.encoder import PosteriorEncoder
from bnpo.model_config import OBJECTIVES, RELAXATIONS, OptionModelConfig
from bnpo.networks import GrowableHeads
from bnpo.objective import LOG_EPS, log_softmax, mask_hmm, posterior_log_prob, relaxed_log_joint, relaxed_nll
from bnpo.prior import StickBreakingPrior
from sixlab_shared import derive_seed, make_generator

logger = logging.getLogger(__name__)

__all__ = [
    "LOG_EPS",
    "OBJECTIVES",
    "RELAXATIONS",
    "OptionModel",
    "OptionModelConfig",
    "log_softmax",
    "mask_hmm",
    "posterior_log_prob",
    "relaxed_log_joint",
]

_EPS = 1e-12


class OptionModel(nn.Module):
    """Options (policy + termination each), a GEM prior over their use, and the autoregressive posterior.

    Args:
        config: sizes and seed (:class:`OptionModelConfig`).

    Example:
        >>> model = OptionModel(OptionModelConfig(obs_dim=3, n_actions=2, n_options=2))
        >>> model.log_pi(torch.zeros(4, 5, 3), torch.zeros(4, 5, dtype=torch.long)).shape
        torch.Size([4, 5, 2])
    """

    def __init__(self, config: OptionModelConfig) -> None:
        super().__init__()
        self.config = config
        generator = make_generator(config.seed)
        k = config.n_options
        with torch.random.fork_rng(devices=[]):  # nn.Linear's own init reads the global RNG: keep it untouched
            self.policy = GrowableHeads(config.obs_dim, config.n_actions, config.policy_hidden, k, generator)
            self.termination = GrowableHeads(config.obs_dim, 1, config.termination_hidden, k, generator)
            self.encoder = PosteriorEncoder(
                config.obs_dim + config.n_actions,
                k,
                config.encoder_embed,
                config.encoder_hidden,
                config.head_hidden,
                generator,
            )
        self.prior = StickBreakingPrior(
            k, estimator=config.estimator, n_draws=config.n_stick_draws, generator=generator
        )
        self.log_std = nn.Parameter(torch.ones(config.n_actions)) if config.continuous else None

    # ------------------------------------------------------------------ sizes and growth
    @property
    def n_options(self) -> int:
        """Current K."""
        return self.prior.n_options

    @property
    def device(self) -> torch.device:
        """Device of the parameters."""
        return self.prior.log_alpha.device

    def add_option(self) -> list[nn.Parameter]:
        """Append one option to every part (policy head, termination head, encoder column, row + zero bias, stick).

        The new pieces are initialised from ``derive_seed(config.seed, "option", k)``, so a grown model rebuilt from
        a checkpoint has the same structure, and old parameters are untouched.

        Returns:
            the new parameters, for a new optimiser param group.
        """
        generator = make_generator(derive_seed(self.config.seed, "option", self.n_options))
        new = []
        new += self.policy.add_head(generator)
        new += self.termination.add_head(generator)
        new += self.encoder.add_option(generator)
        new.append(self.prior.add_stick(generator=generator))
        logger.info("added option %d", self.n_options)
        return new

    def option_parameters(self, k: int) -> list[nn.Parameter]:
        """Parameters belonging to option ``k`` alone (the param group created when it was added)."""
        return [
            self.policy.weights[k],
            self.policy.biases[k],
            self.termination.weights[k],
            self.termination.biases[k],
            self.encoder.in_columns[k],
            self.encoder.out_rows[k],
            self.encoder.out_biases[k],
            self.prior.sticks[k],
        ]

    @torch.no_grad()
    def copy_option(self, source: int, target: int, *, noise: float = 0.0, generator=None) -> None:
        """Overwrite option ``target`` with option ``source`` (policy head, termination head, encoder pieces) plus
        N(0, noise^2) perturbations: the split move for merged skills (``FitConfig.split_epochs``). Its stick
        and every other option are untouched."""
        if not (0 <= source < self.n_options and 0 <= target < self.n_options) or source == target:
            raise ValueError(f"source and target must be distinct options < {self.n_options}, got {source}, {target}")
        pieces = (
            self.policy.weights,
            self.policy.biases,
            self.termination.weights,
            self.termination.biases,
            self.encoder.in_columns,
            self.encoder.out_rows,
            self.encoder.out_biases,
        )
        for plist in pieces:
            value = plist[source].detach().clone()
            if noise > 0:
                value += noise * torch.randn(value.shape, generator=generator).to(value.device, value.dtype)
            plist[target].copy_(value)

    # ------------------------------------------------------------------ the generative model
    def _action_inputs(self, actions: torch.Tensor) -> torch.Tensor:
        if self.config.continuous:
            return actions.to(self.prior.log_alpha.dtype)
        # scattered into zeros (F.one_hot's extra min/max pass costs more than the encoding; scatter_ itself
        # rejects indices outside [0, n_actions))
        index = actions.long().unsqueeze(-1)
        shape = (*actions.shape, self.config.n_actions)
        zeros = torch.zeros(shape, dtype=self.prior.log_alpha.dtype, device=actions.device)
        return zeros.scatter_(-1, index, 1.0)

    def log_pi_all(self, states: torch.Tensor) -> torch.Tensor:
        """(..., D) states -> (..., K, |A|) log pi_k(. | s) (discrete) or (..., K, A) means (continuous)."""
        out = self.policy(states)
        return torch.tanh(out) if self.config.continuous else log_softmax(out)

    def log_pi(self, states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """log pi_k(a_t | s_t) for every option.

        Args:
            states: (B, T, D) float.
            actions: (B, T) int64 (discrete) or (B, T, A) float (continuous).

        Returns:
            (B, T, K) log-probabilities (log-densities for continuous actions).
        """
        if not self.config.continuous:
            return self.policy.log_prob_at(states, actions)
        out = self.log_pi_all(states)
        if self.config.continuous:
            std = self.log_std.exp()
            z = (actions.unsqueeze(-2) - out) / std
            return (-0.5 * z**2 - self.log_std - 0.5 * math.log(2 * math.pi)).sum(-1)
        return out.gather(-1, actions.long().unsqueeze(-1).unsqueeze(-1).expand(*actions.shape, out.shape[-2], 1))[
            ..., 0
        ]

    def beta(self, states: torch.Tensor) -> torch.Tensor:
        """(..., D) states -> (..., K) termination probabilities beta_k(s)."""
        return torch.sigmoid(self.termination.flat(states))

    def log_beta(self, states: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(log beta_k(s), log(1 - beta_k(s))), both (..., K), computed stably from the logits."""
        logit = self.termination.flat(states)
        return F.logsigmoid(logit), F.logsigmoid(-logit)

    # ------------------------------------------------------------------ using the options
    @torch.no_grad()
    def act(
        self, state: torch.Tensor, option: int | torch.Tensor, *, greedy: bool = True, generator=None
    ) -> torch.Tensor:
        """Action of option ``option`` at ``state`` (greedy argmax/mean, or sampled).

        Args:
            state: (D,) or (N, D) flattened observation(s).
            option: option index (int) or (N,) indices.
            greedy: argmax (discrete) / mean (continuous) instead of a sample.
            generator: randomness for sampling.

        Returns:
            () or (N,) int64 actions (discrete), () or (N, A) float (continuous).
        """
        state = torch.as_tensor(state, dtype=torch.float32, device=self.device)
        single = state.ndim == 1
        states = state.reshape(-1, self.config.obs_dim)
        options = torch.as_tensor(option, device=self.device).long().reshape(-1).expand(states.shape[0])
        out = self.log_pi_all(states)[torch.arange(states.shape[0], device=self.device), options]
        if self.config.continuous:
            if greedy:
                action = out
            else:
                noise = torch.randn(out.shape, generator=generator).to(self.device)
                action = out + noise * self.log_std.exp()
        elif greedy:
            action = out.argmax(-1)
        else:
            action = torch.multinomial(out.exp(), 1, generator=generator)[:, 0]
        return action[0] if single else action

    @torch.no_grad()
    def terminates(self, state: torch.Tensor, option: int | torch.Tensor) -> torch.Tensor:
        """Termination probability beta_option(state): () for a (D,) state, (N,) for (N, D)."""
        state = torch.as_tensor(state, dtype=torch.float32, device=self.device)
        single = state.ndim == 1
        states = state.reshape(-1, self.config.obs_dim)
        options = torch.as_tensor(option, device=self.device).long().reshape(-1).expand(states.shape[0])
        beta = self.beta(states)[torch.arange(states.shape[0], device=self.device), options]
        return beta[0] if single else beta

    # ------------------------------------------------------------------ inference
    def posterior_sample(
        self,
        states: torch.Tensor,
        actions: torch.Tensor,
        eta: torch.Tensor,
        tau: float,
        *,
        generator=None,
        hard=False,
        straight_through=False,
    ) -> dict[str, torch.Tensor]:
        """Sample (b, h) from q given (B, K) ``eta``; see :meth:`PosteriorEncoder.sample`."""
        inputs = torch.cat([states, self._action_inputs(actions)], dim=-1)
        return self.encoder.sample(inputs, eta, tau, generator=generator, hard=hard, straight_through=straight_through)

    def loss(
        self,
        states: torch.Tensor,
        actions: torch.Tensor,
        *,
        tau: float,
        entropy_weight: float,
        n_train: int,
        generator: torch.Generator | None = None,
        mask: torch.Tensor | None = None,
        distinct: DistinctSteps | None = None,
    ) -> dict[str, torch.Tensor]:
        """Minibatch objective of reference §1.4 (minimised).

        L = mean_i [log q - log p~] + entropy_weight * sum_k m_k log(m_k + 1e-5) + KL_K / n_train,
        with m the relaxed option vector averaged over batch and time.

        Args:
            states: (B, T, D) float.
            actions: (B, T) int64 or (B, T, A) float.
            tau: temperature.
            entropy_weight: lambda_ent.
            n_train: number of training trajectories (the KL weight is 1 / n_train).
            generator: noise source (sticks, Concrete samples).
            mask: (B, T) bool, True at real steps of padded episodes (exact objective only; None: all real).
            distinct: the minibatch's distinct (state, action) pairs (``index`` (B, T), :mod:`bnpo.distinct`): the
                per-step networks then run once per pair. The same values; ``fit`` passes it when pairs repeat.

        Returns:
            dict of 0-dim tensors: ``loss`` (with grad), ``elbo`` (mean relaxed ELBO per trajectory, the KL share
            included), ``kl``, ``neg_entropy``, and ``usage`` (K,) = m.
        """
        batch = states.shape[0]
        eta, kl = self.prior.sample(batch, generator=generator)
        if distinct is None:
            step_states, step_actions, index = states, actions, None
        else:
            step_states, step_actions, index = distinct.states, distinct.actions, distinct.index

        def per_step(values: torch.Tensor) -> torch.Tensor:
            return values if distinct is None else distinct.gather(values)

        log_pi = per_step(self.log_pi(step_states, step_actions))
        if self.config.objective == "exact":
            # eta is sub-normalised (mass beyond K left out): a lower bound on the infinite model's likelihood.
            log_beta, log_not_beta = (per_step(x) for x in self.log_beta(step_states))
            log_pi, log_beta, log_not_beta = mask_hmm(log_pi, log_beta, log_not_beta, mask)
            log_lik, filtered = hmm.forward_log_likelihood(
                log_pi, log_beta, torch.log(eta + _EPS), log_not_beta, return_filtered=True
            )
            if mask is None:
                usage = filtered.mean(dim=(0, 1))
            else:
                weights = mask.to(filtered.dtype).unsqueeze(-1)
                usage = (filtered * weights).sum(dim=(0, 1)) / weights.sum()
            neg_entropy = (usage * torch.log(usage + 1e-5)).sum()
            elbo = log_lik.mean() - kl / n_train
            return {
                "loss": -elbo + entropy_weight * neg_entropy,
                "elbo": elbo.detach(),
                "kl": kl.detach(),
                "neg_entropy": neg_entropy.detach(),
                "usage": usage.detach(),
            }
        if mask is not None and not bool(mask.all()):
            raise ValueError("padded episodes (a mask) need objective='exact'; the relaxed objective takes windows")
        beta = per_step(self.beta(step_states))
        inputs = torch.cat([step_states, self._action_inputs(step_actions)], dim=-1)
        if self.config.relaxation == "straight_through":
            sample = self.encoder.sample(inputs, eta, tau, generator=generator, straight_through=True, index=index)
            log_p = relaxed_log_joint(log_pi, beta, eta, sample["b"], sample["h"])
            log_q = posterior_log_prob(sample["logit_b"], sample["logit_h"], sample["b"], sample["h"])
            usage = sample["h"].mean(dim=(0, 1))
            nll = (log_q - log_p).mean()
        else:  # the same terms from the head's time-major outputs, in one node
            head = self.encoder.sample(inputs, eta, tau, generator=generator, time_major=True, index=index)
            nll, usage = relaxed_nll(log_pi, beta, eta, head["outs"], head["latents"])
        neg_entropy = (usage * torch.log(usage + 1e-5)).sum()
        loss = nll + entropy_weight * neg_entropy + kl / n_train
        return {
            "loss": loss,
            "elbo": -(nll + kl / n_train).detach(),
            "kl": kl.detach(),
            "neg_entropy": neg_entropy.detach(),
            "usage": usage.detach(),
        }

    @torch.no_grad()
    def hard_elbo(
        self, states: torch.Tensor, actions: torch.Tensor, *, n_samples: int = 1, eps: float = LOG_EPS, generator=None
    ) -> torch.Tensor:
        """Per-trajectory ELBO E_q[log p - log q] with exact (hard) samples from q and eta at its posterior mean.

        Args:
            states, actions: as in :meth:`loss`.
            n_samples: Monte Carlo samples averaged.
            eps: constant inside the log-joint's logs (0 for the exact log-joint).
            generator: noise source.

        Returns:
            (B,) ELBO estimates.
        """
        eta = self.prior.mean_eta().expand(states.shape[0], -1)
        log_pi = self.log_pi(states, actions)
        beta = self.beta(states)
        total = torch.zeros(states.shape[0], device=states.device)
        for _ in range(n_samples):
            sample = self.posterior_sample(states, actions, eta, 1.0, generator=generator, hard=True)
            log_p = relaxed_log_joint(log_pi, beta, eta, sample["b"], sample["h"], eps=eps)
            total += log_p - posterior_log_prob(sample["logit_b"], sample["logit_h"], sample["b"], sample["h"])
        return total / n_samples

    @torch.no_grad()
    def log_likelihood(
        self, states: torch.Tensor, actions: torch.Tensor, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Exact log p(a | s) per trajectory by the forward algorithm, eta at its (renormalised) posterior mean.

        ``mask`` (B, T) bool marks the real steps of padded episodes (padded steps contribute nothing).

        Returns:
            (B,) float64 log-likelihoods.
        """
        log_pi = self.log_pi(states, actions).double()
        log_beta, log_not_beta = (x.double() for x in self.log_beta(states))
        log_pi, log_beta, log_not_beta = mask_hmm(log_pi, log_beta, log_not_beta, mask)
        return hmm.forward_log_likelihood(log_pi, log_beta, self.prior.mean_eta().double().log(), log_not_beta)

    @torch.no_grad()
    def segment(
        self, states: torch.Tensor, actions: torch.Tensor, mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Viterbi segmentation: (B, T) option per step and (B, T) bool boundaries (see :func:`hmm.viterbi`); padded
        steps (``mask`` False) keep the option of the last real step and are never boundaries."""
        log_pi = self.log_pi(states, actions).double()
        log_beta, log_not_beta = (x.double() for x in self.log_beta(states))
        log_pi, log_beta, log_not_beta = mask_hmm(log_pi, log_beta, log_not_beta, mask)
        return hmm.viterbi(log_pi, log_beta, self.prior.mean_eta().double().log(), log_not_beta)

    @torch.no_grad()
    def greedy_usage(
        self, states: torch.Tensor, actions: torch.Tensor, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The growth check's "perfect encoder" usage (§1.5): fraction of (s_t, a_t) with k* = argmax_k pi_k(a_t|s_t).

        For continuous actions k* = argmin_k ||mu_k(s_t) - a_t||^2.

        Returns:
            (K,) usage fractions summing to 1.
        """
        if self.config.continuous:
            means = self.log_pi_all(states)
            best = ((means - actions.unsqueeze(-2)) ** 2).sum(-1).argmin(-1)
        else:
            best = self.log_pi(states, actions).argmax(-1)
        if mask is not None:
            best = best[mask.bool()]
        counts = torch.bincount(best.reshape(-1), minlength=self.n_options).to(torch.float64)
        return counts / counts.sum()

    def config_dict(self) -> dict:
        """The constructor's configuration as a JSON-ready dict (``OptionModelConfig(**d)`` rebuilds it)."""
        return dataclasses.asdict(self.config)
