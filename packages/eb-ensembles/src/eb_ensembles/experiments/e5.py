"""E5: digits and MNIST-1D. In-distribution metrics, shift curves, OOD AUROC and metrics against ensemble size M.

The ensemble is trained in the faithful mode (no weight decay: each member maximises the likelihood). Rows:
``single`` (one maximum-likelihood member, M = 1), ``ensemble`` (M members), and one row per method in
``methods`` (default: MAP, MC dropout, mean-field VI, last-layer Laplace, SWAG; every BNN under the prior
``N(0, α⁻¹ I)`` with ``α = prior_precision``). Classes 8 and 9 are held out of training and serve as near OOD;
uniform noise and far-away points are the other OOD sets. With ``hmc_reference`` an HMC run on the same network
(4 chains started from MAP fits) is a row too, and every row gets its top-1 agreement and total variation against
the HMC predictive (``agree_hmc``, ``tv_hmc``); its R-hat and ESS are in ``reference_hmc.diagnostics``.

EB diagnostics: each member's training log-likelihood ℓ_m, the EB gap ``max ℓ - log p_π(D)`` of the uniform prior,
and the posterior weights ``∝ exp(ℓ_m)`` under the realised likelihoods with their effective sample size. Members
of a classifier on separable data never attain the supremum (Θ* is empty), so the gap to L* = 1 (log L* = 0)
is reported too.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

from eb_ensembles.checks import InvalidInputError
from eb_ensembles.data import CORRUPTIONS, load_dataset
from eb_ensembles.evaluation import evaluate_classification
from eb_ensembles.experiments.common import summarise_seeds
from eb_ensembles.methods import MethodConfig, build_method, method_config_dict
from eb_ensembles.metrics import agreement, average_probs, reliability_bins, total_variation
from eb_ensembles.plots import plot_curves, plot_reliability, plot_weights
from eb_ensembles.training.config import TrainConfig
from sixlab_shared import atomic_write_json

logger = logging.getLogger(__name__)

__all__ = ["BASELINES", "E5_DATASETS", "run_e5"]

E5_DATASETS = ("digits", "mnist1d")
BASELINES = ("map", "mc_dropout", "vi", "laplace", "swag")
_TABLE_KEYS = ("acc", "nll", "brier", "ece")
#: 30 leapfrog steps and 300 + 300 iterations: with 10 steps and 200 + 200 the predictive R-hat was 1.04-1.12
_HMC_FULL = {"hmc_chains": 4, "hmc_warmup": 300, "hmc_draws": 300, "hmc_leapfrog": 30}
_HMC_FAST = {"hmc_chains": 2, "hmc_warmup": 10, "hmc_draws": 10, "hmc_leapfrog": 5}


def run_e5(
    out: Path | None = None,
    *,
    seed: int = 0,
    seeds: int = 1,
    **options: Any,
) -> dict[str, Any]:
    """Run E5 (:func:`run_e5_seed`) for seeds ``seed, ..., seed + seeds - 1``; return the results.

    With one seed the result is :func:`run_e5_seed`'s. With several, it is the first seed's (whose figures are
    written) plus ``per_seed_tables`` (each seed's methods table), ``per_seed_hmc_diagnostics``, ``summary``
    (mean, std, n of every table entry over seeds), ``table`` (the means) and ``table_std``; ``metrics.json``
    holds all of it.

    Raises:
        InvalidInputError: ``seeds < 1``, or what :func:`run_e5_seed` raises.
    """
    if seeds < 1:
        raise InvalidInputError(f"seeds must be >= 1, got {seeds}")
    first = run_e5_seed(out, seed=seed, **options)
    if seeds == 1:
        return first
    runs = [first] + [run_e5_seed(None, seed=s, **options) for s in range(seed + 1, seed + seeds)]
    tables = [run["table"] for run in runs]
    summary = summarise_seeds(tables)
    result = {
        **first,
        "seeds": seeds,
        "per_seed_tables": tables,
        "per_seed_hmc_diagnostics": [(run["reference_hmc"] or {}).get("diagnostics") for run in runs],
        "summary": summary,
        "table": {m: {k: v["mean"] for k, v in row.items()} for m, row in summary.items()},
        "table_std": {m: {k: v["std"] for k, v in row.items()} for m, row in summary.items()},
    }
    if out is not None:
        atomic_write_json(Path(out) / "metrics.json", result)
    return result


def run_e5_seed(
    out: Path | None = None,
    *,
    seed: int = 0,
    dataset: str = "digits",
    fast: bool = False,
    sizes: tuple[int, ...] = (1, 2, 5, 10),
    epochs: int | None = None,
    hidden: tuple[int, ...] = (100,),
    prior_precision: float = 1.0,
    methods: tuple[str, ...] = BASELINES,
    hmc_reference: bool = True,
    vectorise: bool = True,
    holdout_classes: tuple[int, ...] = (8, 9),
    device: str | None = None,
) -> dict[str, Any]:
    """Run E5 for one seed and return its metrics; write ``metrics.json`` and PNG figures under ``out``.

    Args:
        out: output folder (None: compute only).
        seed: run seed (data split, member streams, corruptions).
        dataset: ``"digits"`` or ``"mnist1d"``.
        fast: a smoke-test budget (few epochs, M ≤ 3, two corruptions at severities 1, 3, 5).
        sizes: ensemble sizes M for the metrics-vs-M curves; the largest is trained.
        epochs: training epochs (default: 40 digits, 60 MNIST-1D; 5 when fast).
        hidden: MLP hidden widths.
        prior_precision: α of the Gaussian weight prior of the MAP and BNN rows (MAP weight decay α / N).
        methods: registered methods evaluated beside the ensemble (each a row; ``ensemble`` itself is always in).
        hmc_reference: also run HMC (4 chains from MAP fits; 300 + 300 iterations of up to 30 leapfrog steps,
            about a minute of one CPU thread for digits) and report each method's agreement and total variation against
            its predictive.
        vectorise: train members with ``torch.func.vmap``.
        holdout_classes: classes kept out of training (near-OOD set).
        device: training device (``None``: CPU); evaluation runs on CPU.

    Raises:
        InvalidInputError: unknown dataset or empty/invalid ``sizes``.
    """
    if dataset not in E5_DATASETS:
        raise InvalidInputError(f"E5 runs on {', '.join(E5_DATASETS)}, got dataset {dataset!r}")
    if not sizes or min(sizes) < 1:
        raise InvalidInputError(f"sizes must be ensemble sizes >= 1, got {sizes}")
    if fast:
        sizes = tuple(sorted({min(s, 3) for s in sizes}))
    sizes = tuple(sorted(set(sizes)))
    m_max = sizes[-1]
    n_train = (1000 if fast else 4000) if dataset == "mnist1d" else None
    data = load_dataset(dataset, seed, n_train=n_train, holdout_classes=holdout_classes)
    epochs = epochs or (5 if fast else (40 if dataset == "digits" else 60))
    corruptions = ("gaussian_noise", "shift") if fast else CORRUPTIONS
    severities = (1, 3, 5) if fast else (1, 2, 3, 4, 5)

    train = TrainConfig(members=m_max, epochs=epochs, batch_size=64, lr=1e-3, vectorise=vectorise, seed=seed)
    base = MethodConfig(hidden=tuple(hidden), prior_precision=prior_precision, device=device, train=train)
    ensemble = build_method("ensemble", base).fit(data)
    ens = ensemble.ensemble
    assert ens is not None

    def evaluate(samples) -> dict:
        return evaluate_classification(
            samples, data, seed=seed, corruptions=corruptions, severities=severities, n_ood=300 if fast else 1000
        )

    predictors = {"single": ens.subset(1).member_probs, f"ensemble_M{ens.num_members}": ens.member_probs}
    for name in methods:
        predictors[name] = build_method(name, base).fit(data).predict_samples
    rows = {name: evaluate(predict) for name, predict in predictors.items()}
    reference = None
    if hmc_reference:
        hmc_config = replace(base, samples=100, hmc_init="map", **(_HMC_FAST if fast else _HMC_FULL))
        hmc = build_method("hmc", hmc_config).fit(data)
        ref_probs = average_probs(hmc.predict_samples(data.x_test))
        predictors["hmc"] = hmc.predict_samples
        rows["hmc"] = evaluate(hmc.predict_samples)
        reference = {"diagnostics": hmc.diagnostics, "vs_hmc": {}}
        for name, predict in predictors.items():
            probs = average_probs(predict(data.x_test))
            reference["vs_hmc"][name] = {
                "agreement": agreement(probs, ref_probs),
                "total_variation": total_variation(probs, ref_probs),
            }
    vs_m: dict[str, dict[str, float]] = {}
    for m in sizes:
        if m > ens.num_members:
            continue
        sub = ens.subset(m)
        res = evaluate_classification(sub.member_probs, data, seed=seed, corruptions=(), ood_kinds=())
        vs_m[str(m)] = {
            **{k: res["test"][k] for k in _TABLE_KEYS},
            **{f"auroc_{s}": v["auroc"] for s, v in res["ood"]["heldout"].items()},
        }

    prior = ens.prior()
    loglik = ens.train_loglik()
    posterior = prior.posterior(loglik)
    eb = {
        "member_train_loglik": loglik.tolist(),
        "member_train_nll": [r.train_nll for r in ens.reports],
        "eb_gap_to_best_member": prior.eb_gap(loglik),
        "eb_gap_to_sup_loglik_0": prior.eb_gap(loglik, log_sup=0.0),
        "posterior_weights": posterior.weights.tolist(),
        "posterior_ess": posterior.ess(),
        "prior_ess": prior.ess(),
        "failed_members": [r.index for r in ens.failed],
    }
    result = {
        "experiment": "E5",
        "dataset": dataset,
        "seed": seed,
        "n_train": int(data.x_train.shape[0]),
        "n_test": int(data.x_test.shape[0]),
        "num_classes": data.num_classes,
        "holdout_classes": list(holdout_classes),
        "config": method_config_dict(base),
        "prior_precision": prior_precision,
        "methods": rows,
        "vs_members": vs_m,
        "eb": eb,
        "reference_hmc": reference,
        "table": {
            name: {
                **{k: row["test"][k] for k in _TABLE_KEYS},
                "auroc_heldout_entropy": row["ood"]["heldout"]["entropy"]["auroc"],
                "shift_nll_sev5": row["shift_mean"][str(severities[-1])]["nll"],
                **(
                    {
                        "agree_hmc": reference["vs_hmc"][name]["agreement"],
                        "tv_hmc": reference["vs_hmc"][name]["total_variation"],
                    }
                    if reference is not None
                    else {}
                ),
            }
            for name, row in rows.items()
        },
    }
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        ms = [int(m) for m in vs_m]
        plot_curves(
            out / f"e5_{dataset}_vs_members.png",
            ms,
            {"NLL": [vs_m[str(m)]["nll"] for m in ms], "ECE": [vs_m[str(m)]["ece"] for m in ms]},
            xlabel="ensemble size M",
            ylabel="metric",
            title=f"E5 {dataset}: metrics vs M",
        )
        plot_curves(
            out / f"e5_{dataset}_shift.png",
            list(severities),
            {name: [row["shift_mean"][str(s)]["nll"] for s in severities] for name, row in rows.items()},
            xlabel="corruption severity",
            ylabel="NLL (mean over corruptions)",
            title=f"E5 {dataset}: shift",
        )
        probs = average_probs(ens.member_probs(data.x_test))
        plot_reliability(
            out / f"e5_{dataset}_reliability.png",
            reliability_bins(probs, data.y_test),
            title=f"E5 {dataset}: ensemble M={ens.num_members}",
        )
        plot_weights(
            out / f"e5_{dataset}_posterior_weights.png",
            {"prior (ensemble)": prior.weights.tolist(), "posterior, realised ℓ_m": posterior.weights.tolist()},
            title="learned point-mass prior vs posterior",
        )
        atomic_write_json(out / "metrics.json", result)
    return result
