"""E6: how far an ensemble is from its empirical-Bayes idealisation, against the training-set size n.

On digits (classes 8, 9 held out) an ensemble of M MLPs is trained on the first n training points for several n,
with weight decay off (the paper's faithful mode: each member maximises the likelihood) and on (``α / n``, α = 1,
a MAP member), for the same number of Adam steps at every n (60 epochs of the full set). Per (n, weight decay)
over seeds:

* member log-likelihood spread: std and range of ``ℓ_m = Σ_i log p(y_i | x_i, θ_m)`` (nats), and the EB gap
  ``max_m ℓ_m − log mean_m exp ℓ_m`` of the uniform prior on the atoms;
* the posterior weights ``∝ exp ℓ_m`` under the realised likelihoods and their effective sample size
  ``1 / Σ w_m²`` (M when the members are equally good, 1 when one dominates);
* function-space diversity on the test set: mean pairwise top-1 disagreement and total variation between members;
* test NLL of the uniform ensemble and of the posterior-weighted one.
"""

from __future__ import annotations

import itertools
import logging
from pathlib import Path
from typing import Any

from eb_ensembles.data import load_dataset
from eb_ensembles.experiments.common import mean_std
from eb_ensembles.metrics import ensemble_nll
from eb_ensembles.models import mlp_factory
from eb_ensembles.plots import plot_curves, plot_weights
from eb_ensembles.training.config import TrainConfig
from eb_ensembles.training.train import train_ensemble
from sixlab_shared import atomic_write_json

logger = logging.getLogger(__name__)

__all__ = ["run_e6"]

_KEYS = (
    "loglik_std",
    "loglik_range",
    "eb_gap",
    "posterior_ess",
    "disagreement",
    "pairwise_tv",
    "nll_uniform",
    "nll_posterior",
)


def _one(
    data, n: int, weight_decay: bool, members: int, epochs: int, seed: int
) -> tuple[dict[str, float], list[float]]:
    x, y = data.x_train[:n], data.y_train[:n]
    train = TrainConfig(members=members, epochs=epochs, batch_size=64, lr=1e-3, seed=seed)
    if weight_decay:
        train.weight_decay = 1.0 / n
    ens = train_ensemble(mlp_factory(data.in_features, data.num_classes, (100,)), x, y, train)
    loglik = ens.train_loglik()
    prior = ens.prior()
    posterior = prior.posterior(loglik)
    log_probs = ens.member_log_probs(data.x_test).double()
    probs = log_probs.exp()
    pairs = list(itertools.combinations(range(probs.shape[0]), 2))
    disagree = [float((probs[a].argmax(-1) != probs[b].argmax(-1)).double().mean()) for a, b in pairs]
    tv = [float(0.5 * (probs[a] - probs[b]).abs().sum(-1).mean()) for a, b in pairs]
    row = {
        "loglik_std": float(loglik.std()),
        "loglik_range": float(loglik.max() - loglik.min()),
        "eb_gap": prior.eb_gap(loglik),
        "posterior_ess": posterior.ess(),
        "disagreement": sum(disagree) / len(disagree),
        "pairwise_tv": sum(tv) / len(tv),
        "nll_uniform": ensemble_nll(log_probs, data.y_test),
        "nll_posterior": ensemble_nll(log_probs, data.y_test, log_weights=posterior.log_weights.to(log_probs.dtype)),
    }
    return row, posterior.weights.tolist()


def run_e6(
    out: Path | None = None,
    *,
    seed: int = 0,
    fast: bool = False,
    members: int = 10,
    seeds: int | None = None,
    sizes: tuple[int, ...] | None = None,
) -> dict[str, Any]:
    """Run E6; return per-(n, weight decay) mean ± std over seeds and write figures under ``out``.

    Args:
        out: output folder (None: compute only).
        seed: first seed.
        fast: 1 seed, 3 sizes, 5 epochs (a smoke run).
        members: ensemble size M.
        seeds: number of seeds (default 3; 1 when fast).
        sizes: training-set sizes n (default 100, 200, 400, 800 and all; capped at the training set).
    """
    seeds = seeds or (1 if fast else 3)
    epochs = 5 if fast else 60
    curves: dict[str, dict[str, dict[str, dict[str, float]]]] = {"off": {}, "on": {}}
    weights_seed0: dict[str, list[float]] = {}
    ns: list[int] = []
    for s in range(seed, seed + seeds):
        data = load_dataset("digits", s, holdout_classes=(8, 9))
        full = int(data.x_train.shape[0])
        chosen = sizes or ((100, 400, full) if fast else (100, 200, 400, 800, full))
        ns = sorted({min(n, full) for n in chosen})
        for wd, n in itertools.product(("off", "on"), ns):
            # the same number of optimiser steps at every n (a smaller n gets more epochs), so n is not confounded
            # with training length
            row, weights = _one(data, n, wd == "on", members, max(1, round(epochs * full / n)), s)
            for key, value in row.items():
                curves[wd].setdefault(str(n), {}).setdefault(key, []).append(value)
            if s == seed and n == ns[-1]:
                weights_seed0[f"weight decay {wd}"] = weights
    summary = {
        wd: {n: {k: mean_std(v) for k, v in rows.items()} for n, rows in by_n.items()} for wd, by_n in curves.items()
    }
    result: dict[str, Any] = {
        "experiment": "E6",
        "seed": seed,
        "seeds": seeds,
        "members": members,
        "sizes": ns,
        "fast": fast,
        "summary": summary,
        "posterior_weights_largest_n_seed0": weights_seed0,
        "table": {
            f"n={n}/wd {wd}": {k: summary[wd][str(n)][k]["mean"] for k in _KEYS} for wd in ("off", "on") for n in ns
        },
    }
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        for key, label, logy in (
            ("posterior_ess", "posterior ESS of the members (of M)", False),
            ("loglik_std", "std of member log-likelihoods ℓ_m (nats)", True),
            ("disagreement", "mean pairwise disagreement (test)", False),
            ("nll_uniform", "test NLL of the ensemble", False),
        ):
            plot_curves(
                out / f"e6_{key}.png",
                ns,
                {f"weight decay {wd}": [summary[wd][str(n)][key]["mean"] for n in ns] for wd in ("off", "on")},
                errors={f"weight decay {wd}": [summary[wd][str(n)][key]["std"] for n in ns] for wd in ("off", "on")},
                xlabel="training-set size n",
                ylabel=label,
                title=f"E6 digits, M = {members}, mean ± std over {seeds} seed(s)",
                logx=True,
                logy=logy,
            )
        plot_weights(
            out / "e6_posterior_weights.png", weights_seed0, title=f"posterior weights ∝ exp ℓ_m at n = {ns[-1]}"
        )
        atomic_write_json(out / "metrics.json", result)
    return result
