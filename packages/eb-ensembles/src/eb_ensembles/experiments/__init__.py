"""The experiments of the reference, each a function, registered in :data:`EXPERIMENTS` (the CLI dispatches on it).

Each :class:`Experiment` says which shared options its function takes (``members``, ``dataset``, ``device``), its
default ensemble size, and which result keys the CLI prints.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eb_ensembles.checks import InvalidInputError
from eb_ensembles.experiments.e1 import run_e1
from eb_ensembles.experiments.e2 import run_e2
from eb_ensembles.experiments.e3 import run_e3
from eb_ensembles.experiments.e4 import run_e4
from eb_ensembles.experiments.e5 import E5_DATASETS, run_e5
from eb_ensembles.experiments.e6 import run_e6

__all__ = ["EXPERIMENTS", "Experiment", "run_e1", "run_e2", "run_e3", "run_e4", "run_e5", "run_e6", "run_experiment"]


def _e5(out: Path | None, *, seed: int, fast: bool, members: int, dataset: str, device: str | None) -> dict:
    if dataset not in E5_DATASETS:
        raise InvalidInputError(f"E5 runs on {', '.join(E5_DATASETS)}, got --dataset {dataset!r}")
    sizes = tuple(m for m in (1, 2, 5, 10, 20, 50) if m < members) + (members,)
    seeds = 1 if fast else E5_SEEDS
    return run_e5(out, seed=seed, seeds=seeds, dataset=dataset, fast=fast, sizes=sizes, device=device)


#: Seeds of `experiment E5` (mean ± std over them; the demo runs one seed).
E5_SEEDS = 3


@dataclass(frozen=True)
class Experiment:
    """One experiment: how to run it and what to print.

    Attributes:
        name: ``"E1"``, ...
        run: ``run(out, *, seed, fast, **options)`` returning the JSON-ready result.
        options: which of ``members``, ``dataset``, ``device`` ``run`` takes.
        default_members: the ensemble size used when the user gives none (what the README reports).
        summary_keys: scalar result keys printed by the CLI (empty: the result's ``table`` is printed).
        table_columns: columns of the printed table.
    """

    name: str
    run: Callable[..., dict[str, Any]]
    options: tuple[str, ...] = ()
    default_members: int | None = None
    summary_keys: tuple[str, ...] = ()
    table_columns: tuple[str, ...] = ()


EXPERIMENTS: dict[str, Experiment] = {
    "E1": Experiment(
        "E1",
        run_e1,
        options=("members",),
        default_members=20,
        summary_keys=("eb_gap", "max_residual", "max_abs_posterior_minus_prior", "max_abs_bma_minus_ensemble"),
    ),
    "E2": Experiment(
        "E2",
        run_e2,
        summary_keys=("log_sup", "shared_log_marginal_final", "shared_mass_on_argmax", "kw_log_marginal_final"),
    ),
    "E3": Experiment(
        "E3",
        run_e3,
        options=("members",),
        default_members=5,
        table_columns=("rmse", "nll", "coverage_90", "coverage_95"),
    ),
    "E4": Experiment(
        "E4",
        run_e4,
        options=("members",),
        default_members=5,
        table_columns=("acc", "nll", "ece", "auroc_far_entropy", "auroc_far_mi"),
    ),
    "E5": Experiment(
        "E5",
        _e5,
        options=("members", "dataset", "device"),
        default_members=10,
        table_columns=("acc", "nll", "brier", "ece", "auroc_heldout_entropy", "agree_hmc", "tv_hmc"),
    ),
    "E6": Experiment(
        "E6",
        run_e6,
        options=("members",),
        default_members=10,
        table_columns=("loglik_std", "eb_gap", "posterior_ess", "disagreement", "nll_uniform", "nll_posterior"),
    ),
}


def run_experiment(
    name: str,
    out: Path | None,
    *,
    seed: int = 0,
    fast: bool = False,
    members: int | None = None,
    dataset: str = "digits",
    device: str | None = None,
) -> tuple[Experiment, dict[str, Any]]:
    """Run experiment ``name`` (case-insensitive) with the options it takes; return its spec and result.

    Raises:
        InvalidInputError: unknown name, ``members < 1``, or an option the experiment rejects.
    """
    key = name.upper()
    if key not in EXPERIMENTS:
        raise InvalidInputError(f"unknown experiment {name!r}; choose one of {', '.join(EXPERIMENTS)}")
    spec = EXPERIMENTS[key]
    given = {"members": members if members is not None else spec.default_members, "dataset": dataset, "device": device}
    if given["members"] is not None and given["members"] < 1:
        raise InvalidInputError(f"--members must be >= 1, got {given['members']}")
    return spec, spec.run(out, seed=seed, fast=fast, **{k: given[k] for k in spec.options})


def check_experiment_options(name: str, *, members: int | None, dataset: str) -> Experiment:
    """Validate what can be checked before a run folder is made; return the spec."""
    key = name.upper()
    if key not in EXPERIMENTS:
        raise InvalidInputError(f"unknown experiment {name!r}; choose one of {', '.join(EXPERIMENTS)}")
    if members is not None and members < 1:
        raise InvalidInputError(f"--members must be >= 1, got {members}")
    if key == "E5" and dataset not in E5_DATASETS:
        raise InvalidInputError(f"E5 runs on {', '.join(E5_DATASETS)}, got --dataset {dataset!r}")
    return EXPERIMENTS[key]
