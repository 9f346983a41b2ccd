"""Offline option discovery: the training loop.

``fit()`` runs one training run, or with ``restarts > 1`` several and keeps the one with the best exact
log-likelihood. One run (``_train``) reads top to bottom: derive sizes, split, build, (resume), then per epoch the
schedules, the growth check on the first minibatch of every 10th epoch, the minibatch updates, logging and
checkpointing, and growth at the epoch boundary; at the epochs in ``split_epochs`` a split trial trains two
branches and keeps the likelier one.

The pieces live in modules of their own and are importable from here as before: the optimiser
(:mod:`bnpo.optim`), data order and splits (:mod:`bnpo.batching`), checkpoints (:mod:`bnpo.checkpoint`) and scores
(:mod:`bnpo.evaluation`).
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import torch

from bnpo import schedules
from bnpo.batching import BatchStream, split_indices, split_windows, training_batches
from bnpo.checkpoint import (
    CHECKPOINT_NAME,
    CheckpointError,
    checkpoint_file,
    load_model,
    load_model_weights,
    rebuild_model,
    save_model,
)
from bnpo.data import Dataset
from bnpo.distinct import MAX_DISTINCT_FRACTION, distinct_steps
from bnpo.evaluation import evaluate, selection_score, viterbi_usage
from bnpo.fit_config import FitConfig
from bnpo.model import OptionModel
from bnpo.optim import GroupedAdam, clip_grad_norm, make_optimizer
from bnpo.training import changed_options, divergence_message, restore_training, training_state
from sixlab_shared import RunDir, UserError, derive_seed, make_generator, progress

logger = logging.getLogger(__name__)

__all__ = [
    "CHECKPOINT_NAME",
    "ROOM_PRESET",
    "BatchStream",
    "CheckpointError",
    "FitConfig",
    "FitResult",
    "GroupedAdam",
    "TrainingDiverged",
    "checkpoint_file",
    "clip_grad_norm",
    "evaluate",
    "fit",
    "load_model",
    "make_optimizer",
    "save_model",
    "selection_score",
    "split_indices",
    "split_windows",
    "training_batches",
    "viterbi_usage",
]

ROOM_PRESET: dict[str, Any] = {"objective": "exact", "split_epochs": [150, 200, 250, 300, 350, 400]}
"""The documented Room(V) recipe (README "Room(6) over 10 seeds"): FitConfig fields on top of the defaults. The
exact objective (options marginalised by the forward algorithm) plus split trials: when growth has stalled with an
idle option (one option serving two rooms, the newest idle, reference §2.4), a trial copies the most used option into
the idle one and keeps the copy when the exact training log-likelihood after 50 epochs is higher. Unsupervised (no
ground truth read); 10 of 10 seeds on Room(6) where the paper's recipe gives 6 of 10."""


class TrainingDiverged(UserError):
    """The loss or its gradient became NaN or infinite (typically a learning rate that is too high)."""


@dataclass
class FitResult:
    """What ``fit()`` returns."""

    model: OptionModel
    history: list[dict[str, Any]]
    train_index: torch.Tensor
    heldout_index: torch.Tensor
    seconds: float
    run_seed: int = 0
    """Seed of the kept run (``config.seed`` without restarts, else ``config.restart_seed(r)``)."""
    selection: list[dict[str, Any]] = field(default_factory=list)
    """With ``restarts > 1``: per restart ``restart``, ``seed``, ``K``, ``score_set`` (``heldout`` or ``train``),
    ``loglik_per_step`` (exact, forward algorithm) and ``selected``."""
    candidates: list[OptionModel] = field(default_factory=list)
    """With ``restarts > 1``: every restart's model after its warm-up, in restart order (for diagnostics)."""


def fit(
    dataset: Dataset,
    config: FitConfig,
    *,
    run: RunDir | None = None,
    resume: bool = False,
    device: str | torch.device = "cpu",
) -> FitResult:
    """Fit options to expert trajectories (fixed K or nonparametric), optionally keeping the best of random restarts.

    With ``config.restarts = N > 1`` (unsupervised model selection), N independent runs are started with seeds
    ``derive_seed(seed, "restart", r)`` (initialisation, minibatch order and samples; the train/held-out split is
    shared) and each trains for ``restart_epochs`` epochs (default: all ``epochs``). The run with the highest exact
    log-likelihood per step (forward algorithm, :meth:`OptionModel.log_likelihood`) on the held-out trajectories
    (``restart_select="heldout"``; the training ones when none are held out) or on the training trajectories
    (``restart_select="train"``) is kept; ground-truth options are never read. When the
    warm-up is shorter than ``epochs``, the kept run is trained again from its seed to ``epochs`` (its first
    ``restart_epochs`` epochs replay the warm-up exactly on the same device). Only the kept run writes
    ``metrics.jsonl`` and the checkpoint; with full-length restarts the checkpoint is written once, at the end.

    Args:
        dataset: the expert data.
        config: :class:`FitConfig`.
        run: where checkpoints and ``metrics.jsonl`` go (optional).
        resume: continue from ``run``'s last checkpoint (its config must match; the kept restart continues).
        device: torch device.

    Returns:
        :class:`FitResult` with the trained model (on ``device``), the per-epoch history and, with restarts, the
        per-restart ``selection`` scores.

    Raises:
        UserError: bad data (episodes shorter than ``seq_len``), or a checkpoint that does not match the config.
    """
    if config.method == "compile":
        from bnpo.compile.fit import fit_compile

        return fit_compile(dataset, config, run=run, resume=resume, device=device)
    if config.restarts == 1 or resume:
        return _train(dataset, config, run=run, resume=resume, device=device, run_seed=config.seed)[0]
    started = time.perf_counter()
    warmup = min(config.restart_epochs or config.epochs, config.epochs)
    windows = training_batches(dataset, config)
    candidates = []
    for r in range(config.restarts):
        seed = config.restart_seed(r)
        result, state = _train(dataset, config, run=None, device=device, run_seed=seed, epochs=warmup)
        on_heldout = config.restart_select == "heldout" and len(result.heldout_index) > 0
        index = result.heldout_index if on_heldout else result.train_index
        score = selection_score(
            result.model, windows["states"][index], windows["actions"][index], windows["mask"][index]
        )
        candidates.append((score, r, result, state))
        logger.info("restart %d (seed %d): K=%d, log-lik/step %.5f", r, seed, result.model.n_options, score)
    best = max(candidates, key=lambda c: (c[0], -c[1]))  # ties: the earliest restart
    _, best_r, result, state = best
    selection = [
        {
            "restart": r,
            "seed": config.restart_seed(r),
            "K": res.model.n_options,
            "score_set": "heldout" if config.restart_select == "heldout" and len(res.heldout_index) else "train",
            "loglik_per_step": score,
            "selected": r == best_r,
        }
        for score, r, res, _ in candidates
    ]
    if warmup < config.epochs:
        result, state = _train(dataset, config, run=run, device=device, run_seed=result.run_seed)
    elif run is not None:
        for record in result.history:
            run.log_metrics(step=record["epoch"], **record)
        run.save_checkpoint(state, CHECKPOINT_NAME)
    result.selection = selection
    result.candidates = [res.model for _, _, res, _ in candidates]
    result.seconds = time.perf_counter() - started
    return result


def _train(
    dataset: Dataset,
    config: FitConfig,
    *,
    run: RunDir | None,
    device: str | torch.device,
    run_seed: int,
    resume: bool = False,
    epochs: int | None = None,
) -> tuple[FitResult, dict[str, Any]]:
    """One training run seeded by ``run_seed`` (on resume: the checkpoint's) for ``epochs`` (default
    ``config.epochs``); returns the result and the final checkpoint state."""
    epochs = config.epochs if epochs is None else epochs
    started = time.perf_counter()
    device = torch.device(device)
    # 1. data and derived sizes
    windows = training_batches(dataset, config)
    states_all, actions_all = windows["states"].to(device), windows["actions"].to(device)
    masks_all = windows["mask"].to(device)
    train_index, heldout_index = split_windows(windows["episode"], config.holdout_fraction, config.seed)
    if resume and run is not None and run.has_checkpoint(CHECKPOINT_NAME):
        run_seed = int(run.load_checkpoint(CHECKPOINT_NAME).get("run_seed", config.seed))
    states, actions = states_all[train_index.to(device)], actions_all[train_index.to(device)]
    masks = masks_all[train_index.to(device)]
    padded = not bool(masks.all())  # windows: no mask needed (bit-identical to before)
    n_train = states.shape[0]
    if n_train == 0:
        raise UserError(
            f"the training split is empty ({states_all.shape[0]} trajectories, holdout_fraction="
            f"{config.holdout_fraction}); lower --holdout or collect more episodes"
        )
    iters_per_epoch = -(-n_train // min(config.batch_size, n_train))
    # per-step networks once per distinct (state, action) pair, when the pairs are few against a minibatch's steps
    batch_steps = min(config.batch_size, n_train) * states.shape[1]
    distinct = distinct_steps(states, actions, max_rows=int(MAX_DISTINCT_FRACTION * batch_steps))
    # 2. model, optimiser, randomness
    model_config = config.model_config(dataset.obs_dim, dataset.n_actions, dataset.continuous, run_seed)
    model = OptionModel(model_config).to(device)
    initial_k = model_config.n_options
    optimizer = make_optimizer(model, initial_k, config)
    generator = make_generator(derive_seed(run_seed, "train"), device)
    stream = BatchStream(n_train, config.batch_size, derive_seed(run_seed, "batches"))
    history: list[dict[str, Any]] = []
    start_epoch = 0
    # 3. resume
    if resume:
        if run is None or not run.has_checkpoint(CHECKPOINT_NAME):
            raise UserError("--resume given but the run directory holds no checkpoint; drop --resume")
        state = run.load_checkpoint(CHECKPOINT_NAME)
        if "fit_config" not in state:
            raise CheckpointError("the run's checkpoint holds no fit_config; it is not a `bnpo fit` checkpoint")
        stored = FitConfig.from_dict(state["fit_config"], "the run's checkpoint")
        changed = changed_options(stored, config)
        if changed:
            raise CheckpointError(
                f"--resume needs the checkpoint's fit options (only --epochs may change); changed: {', '.join(changed)}"
            )
        if state.get("model_config") != dataclasses.asdict(model_config):
            raise CheckpointError(
                "the checkpoint's model sizes differ from this configuration (data or options changed); "
                "resume with the original options or start a new --out"
            )
        model = rebuild_model(state["model_config"], state["n_options"], "the run's checkpoint").to(device)
        load_model_weights(model, {k: v.to(device) for k, v in state["model"].items()}, "in the run directory")
        optimizer = make_optimizer(model, initial_k, config)
        history, start_epoch = restore_training(state, optimizer, generator, stream)
        dropped = run.rewind_metrics(start_epoch - 1)  # rows after the checkpoint are written again below
        if dropped:
            logger.info("dropped %d metrics rows written after the checkpoint", dropped)
        logger.info("resumed at epoch %d with K=%d", start_epoch, model.n_options)

    def final_state(next_epoch: int) -> dict[str, Any]:
        return training_state(model, config, optimizer, generator, stream, history, next_epoch, run_seed)

    saved = {"epoch": start_epoch if resume else None}

    def checkpoint(next_epoch: int) -> None:
        if run is not None:
            run.save_checkpoint(final_state(next_epoch), CHECKPOINT_NAME)
            saved["epoch"] = next_epoch

    def diverged(what: str, epoch: int, iteration: int) -> TrainingDiverged:
        checkpoints = None if run is None else run.path / "checkpoints"
        return TrainingDiverged(divergence_message(what, epoch, iteration, config.lr, checkpoints, saved["epoch"]))

    # 4. training
    def run_epoch(model, optimizer, generator, stream, epoch: int) -> dict[str, Any]:
        tau = schedules.temperature(epoch, initial=config.tau_initial, decay=config.tau_decay)
        lam = schedules.entropy_weight(epoch, initial=config.entropy_initial, decay=config.entropy_decay)
        grow = False
        totals = {"loss": 0.0, "elbo": 0.0, "kl": 0.0, "neg_entropy": 0.0}
        usage = torch.zeros(model.n_options, device=device)
        parameters = list(model.parameters())  # K changes only at the epoch boundary
        for iteration in range(iters_per_epoch):
            index = stream.next().to(device)
            s, a = states[index], actions[index]
            m = masks[index] if padded else None
            pairs = None if distinct is None else distinct.take(index)
            if (
                iteration == 0
                and config.nonparametric
                and schedules.is_growth_check_epoch(epoch, every=config.growth_every)
            ):
                grow = schedules.should_grow(model.greedy_usage(s, a, m).tolist(), tol=config.growth_tol)
            out = model.loss(
                s, a, tau=tau, entropy_weight=lam, n_train=n_train, generator=generator, mask=m, distinct=pairs
            )
            if not torch.isfinite(out["loss"]):
                raise diverged("loss", epoch, iteration)
            optimizer.zero_grad(set_to_none=True)
            out["loss"].backward()
            norm = clip_grad_norm(parameters, config.grad_clip)
            if not torch.isfinite(norm):
                raise diverged("gradient", epoch, iteration)
            optimizer.step()
            for key in totals:
                totals[key] += float(out[key].detach()) / iters_per_epoch
            usage += out["usage"] / iters_per_epoch
        record = {
            "epoch": epoch,
            "loss/total": totals["loss"],
            "loss/elbo": totals["elbo"],
            "loss/kl": totals["kl"],
            "loss/neg_entropy": totals["neg_entropy"],
            "options/K": model.n_options,
            "options/usage": [round(float(u), 6) for u in usage],
            "schedule/tau": tau,
            "schedule/entropy_weight": lam,
        }
        if grow:
            optimizer.add_param_group({"params": model.add_option()})
        return record

    def split_trial(epoch: int):
        """Both branches of a split trial from the current state; returns the winner and its records, or None."""
        n_epochs = min(config.split_trial_epochs, epochs - epoch)
        usage = viterbi_usage(model, states, actions, masks if padded else None)
        source, target = int(usage.argmax()), int(usage.argmin())
        if model.n_options < 2 or float(usage[target]) >= config.growth_tol / model.n_options:
            logger.info("epoch %d: no split trial (every option used)", epoch)
            return None
        branches = []
        for split in (False, True):
            branch = copy.deepcopy(model)
            branch_optimizer = make_optimizer(branch, initial_k, config)
            branch_optimizer.load_state_dict(copy.deepcopy(optimizer.state_dict()))  # else Adam's moments alias
            branch_generator = make_generator(0, device)
            branch_generator.set_state(generator.get_state())
            branch_stream = BatchStream(n_train, config.batch_size, 0)
            branch_stream.load_state_dict(stream.state_dict())
            if split:
                noise = make_generator(derive_seed(run_seed, "split", epoch))
                branch.copy_option(source, target, noise=config.split_noise, generator=noise)
                for param in branch.option_parameters(target):
                    branch_optimizer.state.pop(param, None)
            records = [
                run_epoch(branch, branch_optimizer, branch_generator, branch_stream, e)
                for e in range(epoch, epoch + n_epochs)
            ]
            score = selection_score(branch, states, actions, masks if padded else None)
            branches.append((score, branch, branch_optimizer, branch_generator, branch_stream, records))
        accepted = branches[1][0] > branches[0][0]
        info = {
            "source": source,
            "target": target,
            "loglik_per_step_plain": branches[0][0],
            "loglik_per_step_split": branches[1][0],
            "accepted": accepted,
        }
        logger.info("epoch %d: split trial %s", epoch, info)
        _, *winner = branches[1] if accepted else branches[0]
        winner[-1][0]["split"] = info
        return winner

    epoch = start_epoch
    bar = progress(total=epochs - start_epoch, desc="fit", unit="epoch")
    while epoch < epochs:
        trial = split_trial(epoch) if epoch in config.split_epochs else None
        if trial is not None:
            model, optimizer, generator, stream, records = trial
        else:
            records = [run_epoch(model, optimizer, generator, stream, epoch)]
        for record in records:
            history.append(record)
            if run is not None:
                run.log_metrics(step=record["epoch"], **record)
        done = epoch + len(records)
        if any((e + 1) % config.checkpoint_every == 0 for e in range(epoch, done)) or done == epochs:
            checkpoint(done)
        bar.update(len(records))
        epoch = done
    bar.close()
    seconds = time.perf_counter() - started
    logger.info("fit done: K=%d in %.1f s", model.n_options, seconds)
    return FitResult(model, history, train_index, heldout_index, seconds, run_seed=run_seed), final_state(epochs)
