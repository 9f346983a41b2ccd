"""Train and evaluate an ensemble as a run directory (what ``eb-ensembles train`` and ``evaluate`` do).

A training run folder holds ``config.json`` (the :class:`RunConfig`), ``members/member_XXX.safetensors`` (one
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
from eb_ensembles.data import CORRUPTIONS, DATASETS, Dataset, load_dataset
from eb_ensembles.ensemble import DeepEnsemble
from eb_ensembles.evaluation import evaluate_classification, evaluate_regression
from eb_ensembles.methods.base import MethodConfig, method_config_dict, network_factory
from eb_ensembles.training.train import train_ensemble
from sixlab_shared import RunDir, atomic_write_json, is_main_process

logger = logging.getLogger(__name__)

__all__ = ["RunConfig", "evaluate_run", "load_run", "train_run"]


def _rewind(run: RunDir, resume: bool) -> None:
    """On resume, drop the member rows a previous attempt logged (members are indexed from 0; all are re-logged)."""
    if resume:
        run.rewind_metrics(-1)


@dataclass
class RunConfig:
    """Everything a training run needs (written to ``config.json``; ``evaluate`` rebuilds the run from it).

    The top of the config chain: ``RunConfig`` → :class:`~eb_ensembles.methods.MethodConfig` →
    :class:`~eb_ensembles.training.config.TrainConfig`. The task comes from the dataset.

    Attributes:
        dataset: one of :data:`eb_ensembles.data.DATASETS`.
        holdout_classes: classes kept out of training (near OOD); classification only.
        method: the method config (network, likelihood; ``method.train`` holds members, epochs, seed, ...).
    """

    dataset: str = "digits"
    holdout_classes: tuple[int, ...] = ()
    method: MethodConfig = field(default_factory=MethodConfig)

    def __post_init__(self) -> None:
        self.holdout_classes = tuple(int(c) for c in self.holdout_classes)
        if isinstance(self.method, dict):
            self.method = MethodConfig(**self.method)
        self.validate()

    def validate(self) -> None:
        """Raise :class:`InvalidInputError` for an unknown dataset or a bad method config."""
        if self.dataset not in DATASETS:
            raise InvalidInputError(f"unknown dataset {self.dataset!r}; choose one of {', '.join(DATASETS)}")
        self.method.validate()

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {
            "dataset": self.dataset,
            "holdout_classes": list(self.holdout_classes),
            "method": method_config_dict(self.method),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunConfig:
        """Inverse of :meth:`to_dict`.

        Raises:
            UserError: the dict is not a run config (e.g. a config.json from an older version or another verb).
        """
        try:
            return cls(**data)
        except TypeError as err:
            raise InvalidInputError(f"config.json is not an eb-ensembles training run config ({err})") from None


def _dataset(config: RunConfig) -> Dataset:
    return load_dataset(config.dataset, config.method.train.seed, holdout_classes=config.holdout_classes)


def train_run(
    config: RunConfig,
    out: str | Path,
    *,
    resume: bool = False,
    overwrite: bool = False,
    device: str | None = None,
    on_epoch_end=None,
) -> dict[str, Any]:
    """Train an ensemble into the run folder ``out`` and return its summary.

    Raises:
        UserError: bad config; ``out`` holds a run and neither ``resume`` nor ``overwrite``; ``resume`` with a
            different config.
    """
    config.validate()
    data = _dataset(config)  # validates holdout classes before anything is written
    factory = network_factory(data, config.method)
    barrier = _shard_barrier(config, device)
    if not is_main_process():  # a sharded job's other processes: wait for the main one to set the folder up
        barrier()
        run = RunDir(out, resume=True)
        return _train_into(run, config, data, factory, resume, device, on_epoch_end)
    run = RunDir(out, resume=resume, overwrite=overwrite, flags=("--resume", "--overwrite"))
    if resume:
        previous = run.read_config()
        if previous != config.to_dict():
            raise InvalidInputError(
                f"--resume: the options differ from the run's config.json in {str(run.path)!r}; "
                "pass the same options (or --config) as the original run"
            )
    else:
        run.write_config(config.to_dict(), seed=config.method.train.seed, device=device, packages=("eb-ensembles",))
    barrier()
    return _train_into(run, config, data, factory, resume, device, on_epoch_end)


def _shard_barrier(config: RunConfig, device: str | None):
    """accelerate's ``wait_for_everyone`` when the members are sharded over processes, else a no-op."""
    if not config.method.train.shard:
        return lambda: None
    from accelerate import PartialState

    return PartialState(cpu=device in (None, "cpu")).wait_for_everyone


def _train_into(run: RunDir, config: RunConfig, data: Dataset, factory, resume: bool, device, on_epoch_end):
    """Train (this process's share of) the members into ``run`` and write the summary (the main process only)."""
    noise_std = config.method.noise_std if data.task == "regression" else None
    ensemble = train_ensemble(
        factory,
        data.x_train,
        data.y_train,
        config.method.train,
        noise_std=noise_std,
        checkpoint_dir=run.path,
        resume=resume,
        device=device,
        on_epoch_end=on_epoch_end,
    )
    _rewind(run, resume)
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


def load_run(run_dir: str | Path) -> tuple[RunConfig, DeepEnsemble]:
    """Load a finished training run: its config and ensemble.

    Raises:
        UserError: the folder holds no run or no member checkpoints.
    """
    path = Path(run_dir)
    if not (path / "config.json").is_file():
        raise InvalidInputError(f"--run {str(path)!r} holds no training run (no config.json); run `train` first")
    config = RunConfig.from_dict(RunDir(path, resume=True).read_config())
    data = _dataset(config)
    noise_std = config.method.noise_std if data.task == "regression" else None
    return config, DeepEnsemble.load(path, network_factory(data, config.method), data.task, noise_std=noise_std)


def evaluate_run(
    run_dir: str | Path,
    out: str | Path,
    *,
    fast: bool = False,
    seed: int | None = None,
    device: str | None = None,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Evaluate a training run on its dataset's test split, shifts and OOD sets; write ``metrics.json`` to ``out``.

    Args:
        run_dir: a folder written by :func:`train_run`.
        out: a new run folder for the evaluation.
        fast: two corruptions at severities 1, 3, 5 and 200 points per synthetic OOD set.
        seed: seed of the corruptions and synthetic OOD sets (default: the training run's seed).
        device: where the members run (default: CPU); metrics are computed on CPU.

    Raises:
        UserError: ``run_dir`` holds no run; ``out`` holds a run already (and not ``overwrite``).
    """
    config, ensemble = load_run(run_dir)
    data = _dataset(config)
    seed = config.method.train.seed if seed is None else seed
    if seed < 0:
        raise InvalidInputError(f"seed must be >= 0, got {seed}")
    run = RunDir(out, overwrite=overwrite, flags=("--overwrite",))
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
