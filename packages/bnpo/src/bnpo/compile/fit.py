"""Training CompILE / NP-CompILE behind the same interface as ``bnpo.fit.fit``: the same ``FitConfig`` (with
``method="compile"``), data windows, held-out split, minibatch stream, checkpoints, ``--resume`` and ``FitResult``.

NP-CompILE grows K as the fork does (reference §2.3): at *every* minibatch of the epochs 0, growth_every, ...,
the "perfect encoder" usage (k* = argmax_k pi_k(a_t | s_t) on the minibatch) is checked, and one option is added at
once when every option's usage is strictly above growth_tol / K (BNPO: >=, first minibatch only, added at the epoch
boundary). Starts at K = 1 like BNPO.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Callable
from typing import Any

import torch
from torch.nn import functional as F

from bnpo import schedules
from bnpo.compile.model import CompILEConfig, CompILEModel
from bnpo.data import Dataset
from bnpo.fit import (
    CHECKPOINT_NAME,
    BatchStream,
    CheckpointError,
    FitResult,
    TrainingDiverged,
    make_optimizer,
    split_windows,
    training_batches,
)
from bnpo.fit_config import FitConfig
from bnpo.training import (
    changed_options,
    divergence_message,
    guarded_step,
    load_weights,
    rebuild_growable,
    restore_training,
    training_state,
)
from sixlab_shared import RunDir, UserError, derive_seed, load_checkpoint, make_generator, progress, save_checkpoint

logger = logging.getLogger(__name__)

MODEL_KIND = "compile"


def compile_config(config: FitConfig, obs_dim: int, n_actions: int, run_seed: int | None = None) -> CompILEConfig:
    """The CompILE model a ``FitConfig`` builds (K = 1 to start when nonparametric, else ``config.k``)."""
    return CompILEConfig(
        obs_dim=obs_dim,
        n_actions=n_actions,
        n_options=1 if config.nonparametric else config.k,
        nonparametric=config.nonparametric,
        policy_hidden=list(config.policy_hidden),
        hidden=config.compile_hidden,
        max_segments=config.compile_segments,
        length_rate=config.compile_length_rate,
        estimator=config.estimator,
        n_stick_draws=config.n_stick_draws,
        seed=derive_seed(config.seed if run_seed is None else run_seed, "init"),
    )


def beta_z(config: FitConfig) -> float:
    """The KL weight on latents: ``compile_beta_z``, else 0.5 (NP-CompILE) or 0.1 (CompILE)."""
    if config.compile_beta_z is not None:
        return config.compile_beta_z
    return 0.5 if config.nonparametric else 0.1


def save_compile_model(path: str | os.PathLike[str], model: CompILEModel, **extra: Any) -> None:
    """Save a CompILE model (kind, config, K, weights) plus extra state as a checkpoint, atomically."""
    save_checkpoint(
        path,
        {
            "model_kind": MODEL_KIND,
            "model_config": model.config_dict(),
            "n_options": model.n_options,
            "model": model.state_dict(),
            **extra,
        },
    )


def rebuild_compile(state: dict[str, Any], source: str) -> CompILEModel:
    """The CompILE model a checkpoint state describes, grown to its K and loaded; one-line errors otherwise."""
    model = rebuild_growable(
        CompILEModel, CompILEConfig, state.get("model_config"), state.get("n_options"), source, CheckpointError
    )
    load_weights(model, state.get("model"), source, CheckpointError)
    return model


def load_compile_model(path: str | os.PathLike[str], *, device: str | torch.device = "cpu") -> CompILEModel:
    """Load a model saved by :func:`save_compile_model` or a ``--method compile`` fit."""
    state = load_checkpoint(path)
    if state.get("model_kind") != MODEL_KIND:
        raise CheckpointError(f"{str(path)!r} is not a CompILE checkpoint")
    return rebuild_compile(state, f"checkpoint {str(path)!r}").to(device)


def load_any_model(path: str | os.PathLike[str], *, device: str | torch.device = "cpu"):
    """A fitted model from a checkpoint of either method: :class:`CompILEModel` or ``bnpo.model.OptionModel``."""
    from bnpo.fit import load_model

    state = load_checkpoint(path)
    if state.get("model_kind") == MODEL_KIND:
        return rebuild_compile(state, f"checkpoint {str(path)!r}").to(device)
    return load_model(path, device=device)


def fit_compile(
    dataset: Dataset,
    config: FitConfig,
    *,
    run: RunDir | None = None,
    resume: bool = False,
    device: str | torch.device = "cpu",
    stop: Callable[[int, CompILEModel], bool] | None = None,
) -> FitResult:
    """Fit CompILE (``config.nonparametric=False``, K = ``config.k``) or NP-CompILE (grown from K = 1).

    Uses from ``config``: the windows or padded episodes and split (``seq_len``, ``window_stride``, ``padding``,
    ``holdout_fraction``), ``epochs``,
    ``batch_size``, ``lr``, ``weight_decay``, ``grad_clip``, the temperature schedule (both relaxations), the entropy
    schedule (NP-CompILE only), ``growth_every``/``growth_tol``, ``estimator``/``n_stick_draws``, ``policy_hidden``,
    the ``compile_*`` fields, ``checkpoint_every`` and ``seed``.

    ``stop(epoch, model)``, when given, is called after every epoch (after its metrics row and checkpoint); when it
    returns True training ends there (an early-stopping rule such as compare_compile.py's held-out plateau; the
    history then has fewer rows than ``config.epochs``).

    Returns:
        :class:`bnpo.fit.FitResult` with a :class:`CompILEModel`.

    Raises:
        UserError: continuous actions, an empty training split, a checkpoint of another config, or divergence.
    """
    if config.method != MODEL_KIND:
        raise UserError(f"fit_compile needs method='compile', got {config.method!r}")
    if dataset.continuous:
        raise UserError("--method compile supports discrete actions only; this dataset has continuous actions")
    started = time.perf_counter()
    device = torch.device(device)
    windows = training_batches(dataset, config)
    train_index, heldout_index = split_windows(windows["episode"], config.holdout_fraction, config.seed)
    states = windows["states"][train_index].to(device)
    actions = windows["actions"][train_index].to(device)
    masks = windows["mask"][train_index].to(device) if config.padding else None  # real steps of padded episodes
    n_train = states.shape[0]
    if n_train == 0:
        raise UserError(
            f"the training split is empty ({windows['states'].shape[0]} trajectories, holdout_fraction="
            f"{config.holdout_fraction}); lower --holdout or collect more episodes"
        )
    iters_per_epoch = -(-n_train // min(config.batch_size, n_train))
    model_config = compile_config(config, dataset.obs_dim, dataset.n_actions)
    model = CompILEModel(model_config).to(device)
    initial_k = model_config.n_options
    optimizer = make_optimizer(model, initial_k, config)
    generator = make_generator(derive_seed(config.seed, "train"), device)
    stream = BatchStream(n_train, config.batch_size, derive_seed(config.seed, "batches"))
    history: list[dict[str, Any]] = []
    start_epoch = 0
    if resume:
        if run is None or not run.has_checkpoint(CHECKPOINT_NAME):
            raise UserError("--resume given but the run directory holds no checkpoint; drop --resume")
        state = run.load_checkpoint(CHECKPOINT_NAME)
        if state.get("model_kind") != MODEL_KIND or "fit_config" not in state:
            raise CheckpointError("the run's checkpoint is not a `bnpo fit --method compile` checkpoint")
        stored = FitConfig.from_dict(state["fit_config"], "the run's checkpoint")
        changed = changed_options(stored, config)
        if changed:
            raise CheckpointError(
                f"--resume needs the checkpoint's fit options (only --epochs may change); changed: {', '.join(changed)}"
            )
        if state["model_config"] != dataclasses.asdict(model_config):
            raise CheckpointError(
                "the checkpoint's model sizes differ from this configuration (data or options changed); "
                "resume with the original options or start a new --out"
            )
        model = rebuild_compile(state, "the run's checkpoint").to(device)
        optimizer = make_optimizer(model, initial_k, config)
        history, start_epoch = restore_training(state, optimizer, generator, stream)
        run.rewind_metrics(start_epoch - 1)
        logger.info("resumed at epoch %d with K=%d", start_epoch, model.n_options)

    def final_state(next_epoch: int) -> dict[str, Any]:
        return training_state(
            model, config, optimizer, generator, stream, history, next_epoch, config.seed, model_kind=MODEL_KIND
        )

    saved: dict[str, int | None] = {"epoch": start_epoch if resume else None}

    def diverged(what: str, epoch: int, iteration: int) -> TrainingDiverged:
        checkpoints = None if run is None else run.path / "checkpoints"
        return TrainingDiverged(divergence_message(what, epoch, iteration, config.lr, checkpoints, saved["epoch"]))

    weight_z = beta_z(config)
    bar = progress(total=config.epochs - start_epoch, desc="fit compile", unit="epoch")
    for epoch in range(start_epoch, config.epochs):
        tau = schedules.temperature(epoch, initial=config.tau_initial, decay=config.tau_decay)
        lam = (
            schedules.entropy_weight(epoch, initial=config.entropy_initial, decay=config.entropy_decay)
            if config.nonparametric
            else 0.0
        )
        check = config.nonparametric and schedules.is_growth_check_epoch(epoch, every=config.growth_every)
        totals = dict.fromkeys(("loss", "elbo", "nll", "kl_b", "kl_z", "kl_eta", "neg_entropy"), 0.0)
        usage = torch.zeros(model.n_options, device=device)
        for iteration in range(iters_per_epoch):
            index = stream.next().to(device)
            s, a = states[index], actions[index]
            m = None if masks is None else masks[index]
            if check:
                counts = model.greedy_usage(s, a, m)
                if float(counts.min()) > config.growth_tol / model.n_options:  # the fork's strict rule
                    optimizer.add_param_group({"params": model.add_option()})
                    usage = F.pad(usage, (0, 1))
            out = model.loss(
                s,
                a,
                m,
                tau=tau,
                n_train=n_train,
                beta_b=config.compile_beta_b,
                beta_z=weight_z,
                beta_eta=config.compile_beta_eta,
                entropy_weight=lam,
                generator=generator,
            )
            failed = guarded_step(out["loss"], model, optimizer, config.grad_clip)
            if failed:
                raise diverged(failed, epoch, iteration)
            for key in totals:
                totals[key] += float(out[key].detach()) / iters_per_epoch
            usage += out["usage"] / iters_per_epoch
        record = {
            "epoch": epoch,
            "loss/total": totals["loss"],
            "loss/elbo": totals["elbo"],
            "loss/nll": totals["nll"],
            "loss/kl_b": totals["kl_b"],
            "loss/kl_z": totals["kl_z"],
            "loss/kl": totals["kl_eta"],
            "loss/neg_entropy": totals["neg_entropy"],
            "options/K": model.n_options,
            "options/usage": [round(float(u), 6) for u in usage],
            "schedule/tau": tau,
            "schedule/entropy_weight": lam,
        }
        history.append(record)
        if run is not None:
            run.log_metrics(step=epoch, **record)
            if (epoch + 1) % config.checkpoint_every == 0 or epoch + 1 == config.epochs:
                run.save_checkpoint(final_state(epoch + 1), CHECKPOINT_NAME)
                saved["epoch"] = epoch + 1
        bar.update(1)
        if stop is not None and stop(epoch, model):
            logger.info("stopped after epoch %d by the stopping rule", epoch)
            if run is not None and saved["epoch"] != epoch + 1:
                run.save_checkpoint(final_state(epoch + 1), CHECKPOINT_NAME)
            break
    bar.close()
    seconds = time.perf_counter() - started
    logger.info("compile fit done: K=%d in %.1f s", model.n_options, seconds)
    return FitResult(model, history, train_index, heldout_index, seconds, run_seed=config.seed)


__all__ = [
    "MODEL_KIND",
    "beta_z",
    "compile_config",
    "fit_compile",
    "load_any_model",
    "load_compile_model",
    "rebuild_compile",
    "save_compile_model",
]
