"""Train and evaluate an ensemble as a run directory (what ``eb-ensembles train`` and ``evaluate`` do).

A training run folder holds ``config.json`` (the :class:`TrainRunConfig`), ``members/member_XXX.safetensors`` (one
per member, written as each finishes), ``partial_*.safetensors`` while training, ``metrics.jsonl`` (one line per
member) and ``summary.json`` (member reports and EB diagnostics).
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from eb_ensembles.checks import InvalidInputError
from eb_ensembles.data import CORRUPTIONS, DATASETS, load_dataset
from eb_ensembles.ensemble import DeepEnsemble, EnsembleConfig, train_ensemble
from eb_ensembles.evaluation import evaluate_classification, evaluate_regression
from eb_ensembles.models import mlp_factory
from sixlab_shared import RunDir, atomic_write_json

logger = logging.getLogger(__name__)

__all__ = ["TrainRunConfig", "evaluate_run", "load_run", "train_run"]


@dataclass
class TrainRunConfig:
    """Everything a training run needs (written to ``config.json``; ``evaluate`` rebuilds the run from it).

    Attributes:
        dataset: one of :data:`eb_ensembles.data.DATASETS`.
        holdout_classes: classes kept out of training (near OOD); classification only.
        hidden: MLP hidden widths.
        ensemble: the :class:`~eb_ensembles.ensemble.EnsembleConfig` (members, epochs, seed, ...).
    """

    dataset: str = "digits"
    holdout_classes: tuple[int, ...] = ()
    hidden: tuple[int, ...] = (100,)
    ensemble: EnsembleConfig = field(default_factory=EnsembleConfig)

    def validate(self) -> None:
        """Raise :class:`InvalidInputError` for an unknown dataset or a bad ensemble config."""
        if self.dataset not in DATASETS:
            raise InvalidInputError(f"unknown dataset {self.dataset!r}; choose one of {', '.join(DATASETS)}")
        if any(h < 1 for h in self.hidden):
            raise InvalidInputError(f"hidden widths must be >= 1, got {list(self.hidden)}")
        self.ensemble.validate()

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        out = asdict(self)
        out["holdout_classes"], out["hidden"] = list(self.holdout_classes), list(self.hidden)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainRunConfig:
        """Inverse of :meth:`to_dict`."""
        return cls(
            dataset=data["dataset"],
            holdout_classes=tuple(data["holdout_classes"]),
            hidden=tuple(data["hidden"]),
            ensemble=EnsembleConfig(**data["ensemble"]),
        )


def _dataset_and_factory(config: TrainRunConfig):
    data = load_dataset(config.dataset, config.ensemble.seed, holdout_classes=config.holdout_classes)
    out = data.num_classes if data.task == "classification" else 2
    return data, mlp_factory(data.in_features, out, config.hidden)


def train_run(
    config: TrainRunConfig, out: str | Path, *, resume: bool = False, device: str | None = None, on_epoch_end=None
) -> dict[str, Any]:
    """Train an ensemble into the run folder ``out`` and return its summary.

    Raises:
        UserError: bad config; ``out`` holds a run and ``resume`` is False; ``resume`` with a different config.
    """
    config.ensemble.task = "regression" if config.dataset in ("cubic", "gap") else "classification"
    config.validate()
    data, factory = _dataset_and_factory(config)  # validates holdout classes before anything is written
    run = RunDir(out, resume=resume)
    if resume:
        previous = run.read_config()
        if previous != config.to_dict():
            raise InvalidInputError(
                f"--resume: the options differ from the run's config.json in {str(run.path)!r}; "
                "pass the same options (or --config) as the original run"
            )
    else:
        run.write_config(config.to_dict(), seed=config.ensemble.seed, device=device, packages=("eb-ensembles",))
    ensemble = train_ensemble(
        factory,
        data.x_train,
        data.y_train,
        config.ensemble,
        checkpoint_dir=run.path,
        resume=resume,
        device=device,
        on_epoch_end=on_epoch_end,
    )
    for report in ensemble.reports:
        run.log_metrics(step=report.index, **{f"member/{k}": v for k, v in asdict(report).items()})
    prior = ensemble.prior()
    loglik = ensemble.train_loglik()
    summary = {
        "members": [asdict(r) for r in ensemble.reports],
        "usable_members": ensemble.num_members,
        "failed_members": [r.index for r in ensemble.failed],
        "eb/gap_to_best_member": prior.eb_gap(loglik),
        "eb/posterior_ess_realised_loglik": prior.posterior(loglik).ess(),
        "n_train": int(data.x_train.shape[0]),
    }
    run.write_summary(summary)
    return summary


def load_run(run_dir: str | Path) -> tuple[TrainRunConfig, DeepEnsemble]:
    """Load a finished training run: its config and ensemble.

    Raises:
        UserError: the folder holds no run or no member checkpoints.
    """
    path = Path(run_dir)
    if not (path / "config.json").is_file():
        raise InvalidInputError(f"--run {str(path)!r} holds no training run (no config.json); run `train` first")
    config = TrainRunConfig.from_dict(RunDir(path, resume=True).read_config())
    _, factory = _dataset_and_factory(config)
    return config, DeepEnsemble.load(path, factory, config.ensemble.task)


def evaluate_run(
    run_dir: str | Path, out: str | Path, *, fast: bool = False, seed: int | None = None, device: str | None = None
) -> dict[str, Any]:
    """Evaluate a training run on its dataset's test split, shifts and OOD sets; write ``metrics.json`` to ``out``.

    Args:
        run_dir: a folder written by :func:`train_run`.
        out: a new run folder for the evaluation.
        fast: two corruptions at severities 1, 3, 5 and 200 points per synthetic OOD set.
        seed: seed of the corruptions and synthetic OOD sets (default: the training run's seed).
        device: where the members run (default: CPU); metrics are computed on CPU.

    Raises:
        UserError: ``run_dir`` holds no run; ``out`` holds a run already.
    """
    config, ensemble = load_run(run_dir)
    data, _ = _dataset_and_factory(config)
    seed = config.ensemble.seed if seed is None else seed
    run = RunDir(out)
    run.write_config({"run": str(run_dir), "fast": fast, "train": config.to_dict()}, seed=seed, device=device)
    target = torch.device(device) if device is not None else torch.device("cpu")

    def probs(x: torch.Tensor) -> torch.Tensor:
        return ensemble.member_probs(x.to(target)).cpu()

    def gaussians(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, var = ensemble.member_gaussians(x.to(target))
        return mean.cpu(), var.cpu()

    if data.task == "classification":
        result = evaluate_classification(
            probs,
            data,
            seed=seed,
            corruptions=CORRUPTIONS[:2] if fast else CORRUPTIONS,
            severities=(1, 3, 5) if fast else (1, 2, 3, 4, 5),
            n_ood=200 if fast else 1000,
        )
    else:
        result = evaluate_regression(gaussians, data)
    atomic_write_json(run.path / "metrics.json", result)
    run.write_summary({"test": result["test"], "members": result["members"]})
    return result
