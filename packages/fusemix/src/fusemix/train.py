"""Training the fusion adapters on cached latents with FuseMix (reference §1.5-1.7), top to bottom.

Nothing here loads or imports an encoder: the inputs are the safetensors latents of :mod:`fusemix.cache`, read
by :mod:`fusemix.latents`.

Per step: take the next ``2B`` shuffled (item, caption) pairs (``B`` without mixup, so the *contrastive* batch is
``B`` either way), mix the two halves with one ``lambda ~ Beta(alpha, alpha)`` shared by both modalities, map both
sides through their adapters, and minimise the symmetric InfoNCE with the clamped learnable temperature. AdamW
(decay on matrices only), linear warm-up then cosine. The checkpoint kept as ``best`` is chosen on the
*validation* split (never the test split; reference §6.2).

Under accelerate (``accelerate launch -m fusemix.cli train ...``) each process takes its own slice of every
epoch's permutation, gradients are averaged by DistributedDataParallel, and only the main process evaluates and
writes. Negatives stay within each process's batch (no cross-process gather), so the contrastive batch is ``B``
per process.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from pathlib import Path
from typing import Any

import torch

from fusemix.adapters import ADAPTER_PRESETS, AdapterConfig, FusionModel, count_parameters
from fusemix.checkpoint import load_state_strict
from fusemix.evaluate import evaluate_retrieval
from fusemix.latents import PairedLatents, cached_encoder, load_paired_latents
from fusemix.loss import symmetric_infonce
from fusemix.mixup import fusemix, mixup_alpha
from fusemix.optim import build_optimizer, learning_rate, set_learning_rate
from fusemix.subsample import STRATEGIES, choose_items
from sixlab_shared import RunDir, UserError, derive_seed, get_device, make_generator, progress, seeded

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class TrainConfig:
    """Everything a training run needs; defaults are the paper's (reference §1.4-1.7)."""

    cache_dir: str
    """Root of the latent cache written by ``fusemix cache``."""
    dataset: str
    """Dataset name used when caching."""
    item_encoder: str | None = None
    """Item (image, audio) encoder name or ``hf:<id>@<pooling>``, as when caching; ``None`` reads it from the
    cache (needed only when several encoders are cached for the split)."""
    text_encoder: str | None = None
    """Text encoder name or ``hf:<id>@<pooling>``; ``None`` reads it from the cache."""
    train_split: str = "train"
    """Split trained on."""
    val_split: str | None = "val"
    """Split used for model selection (``best`` checkpoint); ``None`` keeps only the last checkpoint."""
    preset: str = "paper"
    """Adapter preset of :data:`fusemix.adapters.ADAPTER_PRESETS` (``paper``: L=4, x4, dropout 0.6, D=512)."""
    depth: int | None = None
    """Override the preset's number of residual blocks."""
    expansion: int | None = None
    """Override the preset's hidden expansion."""
    dropout: float | None = None
    """Override the preset's dropout."""
    out_dim: int | None = None
    """Override the preset's shared dimension."""
    batch_size: int = 20480
    """Contrastive batch ``B`` (pairs in the loss); with mixup ``2B`` pairs are loaded per step."""
    mixup: bool = True
    """FuseMix on; ``False`` is the no-mixup ablation with the same contrastive batch."""
    alpha: float = 1.0
    """Beta(alpha, alpha) parameter at the start."""
    alpha_final: float = 1.0
    """Beta parameter reached at the last epoch (for the cosine/exp schedules)."""
    alpha_schedule: str = "constant"
    """``constant``, ``cosine`` or ``exp``, stepped once per epoch."""
    lr: float = 1e-3
    """Peak learning rate."""
    min_lr: float = 1e-6
    """Final learning rate of the cosine."""
    warmup_start_lr: float = 1e-6
    """Learning rate at step 0."""
    warmup_steps: int = 100
    """Linear warm-up steps."""
    weight_decay: float = 0.1
    """AdamW decay of weight matrices (biases, LayerNorms and the temperature excluded)."""
    epochs: int = 500
    """Passes over the training pairs (paper mode: cosine over epochs)."""
    steps: int | None = None
    """Total steps instead of ``epochs``; the cosine then runs over steps."""
    init_temperature: float = 0.07
    """Initial temperature."""
    eval_every: int | None = None
    """Validation every this many steps (default: once per epoch)."""
    train_items: int | None = None
    """Train on a subset of this many items (all their captions), for data-efficiency studies."""
    align_to_text: bool = False
    """Keep the text latents as they are (identity text adapter) and map the items into that space; used to
    align audio to a frozen text-to-image pipeline's text space (:mod:`fusemix.generate`)."""
    subsample: str = "uniform"
    """How ``train_items`` are chosen: ``uniform`` (seeded), ``kdpp-item`` or ``kdpp-text`` (greedy k-DPP over the
    item latents or each item's mean caption latent, kernel ``(cos + 1)^2``; see :mod:`fusemix.subsample`)."""
    seed: int = 0
    """Seed of everything random (data order, lambda, dropout, initialisation, subset)."""
    device: str | None = None
    """``cpu``, ``cuda``, ``mps`` or ``None`` for automatic."""
    eval_chunk: int = 256
    """Similarity rows per evaluation chunk."""

    def validate(self) -> None:
        """Check every setting that can be checked without data.

        Raises:
            UserError: an out-of-range number, an unknown preset or schedule, or a validation split that is the
                training split or the test split (model selection must never see the test split, reference §6.2).
        """
        self.adapter_settings()
        if self.alpha_schedule not in ("constant", "cosine", "exp"):
            raise UserError(f"--alpha-schedule must be constant, cosine or exp, got {self.alpha_schedule!r}")
        if self.mixup and self.alpha <= 0:
            raise UserError(f"--alpha must be > 0 with mixup (got {self.alpha}); use --no-mixup to turn mixup off")
        if self.batch_size < 2:
            raise UserError(f"--batch-size must be >= 2, got {self.batch_size}")
        for name in ("epochs", "steps", "eval_every", "train_items", "eval_chunk"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise UserError(f"--{name.replace('_', '-')} must be >= 1, got {value}")
        if self.subsample not in STRATEGIES:
            raise UserError(f"--subsample must be one of {', '.join(STRATEGIES)}, got {self.subsample!r}")
        if self.warmup_steps < 0:
            raise UserError(f"--warmup-steps must be >= 0, got {self.warmup_steps}")
        for name in ("lr", "min_lr", "warmup_start_lr", "init_temperature"):
            if not getattr(self, name) > 0:
                raise UserError(f"--{name.replace('_', '-')} must be > 0, got {getattr(self, name)}")
        if self.weight_decay < 0:
            raise UserError(f"--weight-decay must be >= 0, got {self.weight_decay}")
        if not 0 <= self.seed < 2**32:
            raise UserError(f"--seed must be in [0, 2**32), got {self.seed}")
        if self.val_split is not None and self.val_split == self.train_split:
            raise UserError(
                f"--val-split {self.val_split!r} is the training split; choose a held-out split, or --val-split '' "
                "to train without validation (the last checkpoint is kept)"
            )
        if self.val_split is not None and self.val_split == "test":
            raise UserError(
                "--val-split 'test' would select the model on the test split; choose a validation split, or "
                "--val-split '' to train without validation (the last checkpoint is kept)"
            )

    def adapter_settings(self) -> dict[str, Any]:
        """The preset with the overrides applied.

        Raises:
            UserError: unknown preset.
        """
        if self.preset not in ADAPTER_PRESETS:
            raise UserError(f"unknown adapter preset {self.preset!r}; choose one of {', '.join(ADAPTER_PRESETS)}")
        settings = dict(ADAPTER_PRESETS[self.preset])
        for key in ("depth", "expansion", "dropout", "out_dim"):
            if getattr(self, key) is not None:
                settings[key] = getattr(self, key)
        return settings


@dataclasses.dataclass
class TrainResult:
    """What :func:`train` produced."""

    run_dir: Path
    steps: int
    best: dict[str, float] | None
    last: dict[str, float] | None
    temperature: float
    seconds: float
    steps_per_second: float


def _subset_items(data: PairedLatents, n_items: int, seed: int, strategy: str = "uniform") -> PairedLatents:
    total = data.items.shape[0]
    chosen = choose_items(
        strategy, total, n_items, seed=seed, item_latents=data.items, text_latents=data.texts, txt2item=data.txt2item
    )
    new_row = torch.full((total,), -1, dtype=torch.int64)
    new_row[chosen] = torch.arange(n_items)
    keep = new_row[data.txt2item] >= 0
    keep_list = keep.tolist()
    return dataclasses.replace(
        data,
        items=data.items[chosen],
        texts=data.texts[keep],
        txt2item=new_row[data.txt2item[keep]],
        item_ids=[data.item_ids[i] for i in chosen.tolist()],
        item_paths=[data.item_paths[i] for i in chosen.tolist()],
        captions=[c for c, k in zip(data.captions, keep_list, strict=True) if k],
    )


def load_training_data(config: TrainConfig) -> tuple[PairedLatents, PairedLatents | None]:
    """Resolve the encoders (specs only, nothing loaded) and read the train/val latents.

    Raises:
        UserError: missing caches, encoder mismatch, or latent sizes that differ between the splits.
    """
    item_spec = cached_encoder(config.cache_dir, config.dataset, config.train_split, "items", config.item_encoder)
    text_spec = cached_encoder(config.cache_dir, config.dataset, config.train_split, "texts", config.text_encoder)
    train_data = load_paired_latents(config.cache_dir, item_spec, text_spec, config.dataset, config.train_split)
    if config.train_items is not None:
        train_data = _subset_items(train_data, config.train_items, config.seed, config.subsample)
    val_data = None
    if config.val_split:
        try:
            val_data = load_paired_latents(config.cache_dir, item_spec, text_spec, config.dataset, config.val_split)
        except UserError as err:
            raise UserError(
                f"{err}; or pass --val-split '' to train without a validation split (the last checkpoint is kept)"
            ) from err
        for side in ("items", "texts"):
            a, b = getattr(train_data, side).shape[1], getattr(val_data, side).shape[1]
            if a != b:
                raise UserError(f"{side} latents are {a}-d in {config.train_split!r} but {b}-d in {config.val_split!r}")
    return train_data, val_data


def train(
    config: TrainConfig,
    out: str | Path,
    *,
    resume: bool = False,
    overwrite: bool = False,
    data: tuple[PairedLatents, PairedLatents | None] | None = None,
    show_progress: bool | None = None,
) -> TrainResult:
    """Train FuseMix adapters on cached latents and write the run directory.

    Args:
        config: the run's settings.
        out: run directory (``config.json``, ``metrics.jsonl``, ``summary.json``, ``checkpoints/{last,best}``).
        resume: continue the run in ``out`` from its last checkpoint (same settings required).
        overwrite: start afresh in a folder that already holds a run.
        data: already loaded ``(train, val)`` latents (the demo reuses them across runs); read from the cache
            otherwise.
        show_progress: force the progress bar on/off (default: on a terminal only).

    Returns:
        Steps done, best (validation) and last metrics, final temperature, timing.

    Raises:
        UserError: bad settings (validated before anything is written), missing caches, a batch larger than the
            data, or a resumed run whose stored settings differ.
    """
    from accelerate import Accelerator

    config.validate()
    settings = config.adapter_settings()
    device = get_device(config.device)
    train_data, val_data = data if data is not None else load_training_data(config)

    accelerator = Accelerator(cpu=device.type == "cpu")
    device = accelerator.device if device.type != "cpu" else device
    world = accelerator.num_processes
    loaded = 2 * config.batch_size if config.mixup else config.batch_size  # contrastive batch is B either way
    steps_per_epoch = train_data.n_pairs // (loaded * world)  # drop_last
    if steps_per_epoch < 1:
        raise UserError(
            f"a step loads {loaded} pairs per process ({'2 x ' if config.mixup else ''}--batch-size "
            f"{config.batch_size}) but the training split has {train_data.n_pairs}; lower --batch-size"
        )

    run = RunDir(out, resume=resume, overwrite=overwrite)
    # initialisation and dropout draw from torch's global generator: seed it for this run only, then restore it
    with seeded(config.seed, devices=[device] if device.type == "cuda" else []):
        return _train_loop(config, run, accelerator, device, settings, train_data, val_data, resume, show_progress)


def _train_loop(
    config: TrainConfig,
    run: RunDir,
    accelerator: Any,
    device: torch.device,
    settings: dict[str, Any],
    train_data: PairedLatents,
    val_data: PairedLatents | None,
    resume: bool,
    show_progress: bool | None,
) -> TrainResult:
    world, rank = accelerator.num_processes, accelerator.process_index
    loaded = 2 * config.batch_size if config.mixup else config.batch_size
    steps_per_epoch = train_data.n_pairs // (loaded * world)
    total_steps = config.steps if config.steps is not None else config.epochs * steps_per_epoch
    max_epochs = math.ceil(total_steps / steps_per_epoch)
    eval_every = config.eval_every or steps_per_epoch
    if config.align_to_text:  # the items are mapped into the text encoder's own space; the text side is fixed
        d_text = train_data.texts.shape[1]
        item_cfg = AdapterConfig(in_dim=train_data.items.shape[1], **{**settings, "out_dim": d_text})
        text_cfg = AdapterConfig(in_dim=d_text, out_dim=d_text, depth=0, dropout=0.0, identity=True)
    else:
        item_cfg = AdapterConfig(in_dim=train_data.items.shape[1], **settings)
        text_cfg = AdapterConfig(in_dim=train_data.texts.shape[1], **settings)
    model = FusionModel(item_cfg, text_cfg, config.init_temperature)
    optimizer = build_optimizer(model, config.lr, config.weight_decay)
    start_step, best, last = 0, None, None
    if resume:
        if not run.has_checkpoint("last"):
            raise UserError(f"--resume given but {str(run.path)!r} has no checkpoints/last.safetensors")
        state = run.load_checkpoint("last")
        stored = state.get("train_config", {})
        defaults = {f.name: f.default for f in dataclasses.fields(TrainConfig)}  # fields added since the run began
        changed = [
            k for k, v in dataclasses.asdict(config).items() if k != "device" and stored.get(k, defaults[k]) != v
        ]
        if changed:
            raise UserError(f"--resume with settings that differ from the stored run: {', '.join(changed)}")
        load_state_strict(model, state["model"], str(run.checkpoint_path("last")))
        optimizer.load_state_dict(state["optimizer"])
        start_step, best, last = state["step"], state.get("best"), state.get("last")
        run.rewind_metrics(start_step)  # rows logged after the checkpoint are written again below
    else:
        run.write_config(dataclasses.asdict(config), seed=config.seed, device=device, packages=("fusemix",))
    logger.info(
        "training %d parameters: %d pairs, %d steps/epoch, %d steps, mixup=%s, B=%d",
        count_parameters(model), train_data.n_pairs, steps_per_epoch, total_steps, config.mixup, config.batch_size,
    )  # fmt: skip

    model, optimizer = accelerator.prepare(model, optimizer)
    core: FusionModel = accelerator.unwrap_model(model)
    items, texts = train_data.items.to(device), train_data.texts.to(device)
    txt2item = train_data.txt2item.to(device)
    extras = {
        "encoders": {"item": train_data.item_spec.to_dict(), "text": train_data.text_spec.to_dict()},
        "dataset": config.dataset,
        "train_config": dataclasses.asdict(config),
        "text_norm": float(train_data.texts.norm(dim=1).mean()),  # the length generation gives aligned vectors
    }

    def evaluate_and_save(step: int) -> None:
        nonlocal best, last
        if accelerator.is_main_process and val_data is not None:
            last = evaluate_retrieval(core, val_data, device=device, chunk_size=config.eval_chunk)
            run.log_metrics(step=step, **{f"val/{k}": v for k, v in last.items()})
            if best is None or last["r_mean"] > best["r_mean"]:
                best = {**last, "step": step}
                save = {"model": core.state_dict(), "model_config": core.config(), "step": step, "best": best, **extras}
                run.save_checkpoint(save, "best")
        if accelerator.is_main_process:
            state = {
                "model": core.state_dict(), "model_config": core.config(), "optimizer": optimizer.state_dict(),
                "step": step, "best": best, "last": last, **extras,
            }  # fmt: skip
            run.save_checkpoint(state, "last")
        accelerator.wait_for_everyone()

    started = time.perf_counter()
    perm, perm_epoch = None, -1
    bar = progress(total=total_steps, initial=start_step, desc="train", unit="step", disable=(
        None if show_progress is None else not show_progress))  # fmt: skip
    model.train()
    for step in range(start_step, total_steps):
        epoch, position = divmod(step, steps_per_epoch)
        if epoch != perm_epoch:  # one shuffle per epoch, the same on every process
            perm = torch.randperm(
                train_data.n_pairs, generator=make_generator(derive_seed(config.seed, "epoch", epoch))
            )
            perm, perm_epoch = perm.to(device), epoch
        lr = learning_rate(
            step, epoch, lr=config.lr, min_lr=config.min_lr, warmup_start_lr=config.warmup_start_lr,
            warmup_steps=config.warmup_steps, max_epochs=max_epochs,
            total_steps=config.steps,
        )  # fmt: skip
        set_learning_rate(optimizer, lr)
        torch.manual_seed(derive_seed(config.seed, "dropout", step, rank))  # resumable dropout masks
        offset = (position * world + rank) * loaded
        pairs = perm[offset : offset + loaded]
        z_item, z_text = items[txt2item[pairs]], texts[pairs]
        lam = 1.0
        if config.mixup:
            alpha = mixup_alpha(
                epoch, max_epochs, init=config.alpha, final=config.alpha_final, kind=config.alpha_schedule
            )
            mixed = fusemix(z_item, z_text, alpha, make_generator(derive_seed(config.seed, "lambda", step, rank)))
            z_item, z_text, lam = mixed.x, mixed.y, mixed.lam
        out_item, out_text, tau = model(z_item, z_text)
        loss = symmetric_infonce(out_item, out_text, tau)
        optimizer.zero_grad(set_to_none=True)
        accelerator.backward(loss)
        optimizer.step()
        bar.update(1)
        done = step + 1
        if done % max(1, total_steps // 100) == 0 or done == total_steps:
            run.log_metrics(
                step=done, **{"loss/train": float(loss.detach()), "lr": lr, "tau": float(tau.detach()), "lambda": lam}
            )
        if done % eval_every == 0 or done == total_steps:
            evaluate_and_save(done)
    bar.close()
    seconds = time.perf_counter() - started
    steps_done = total_steps - start_step
    temperature = float(core.temperature.value.detach())
    summary = {
        "steps": total_steps, "best_val": best, "last_val": last, "temperature": temperature,
        "parameters": count_parameters(core), "train_pairs": train_data.n_pairs, "train_items": int(items.shape[0]),
        "seconds": seconds, "steps_per_second": steps_done / seconds if seconds > 0 else float("nan"),
        "selection": "best r_mean on the validation split" if val_data is not None else "last step (no validation)",
    }  # fmt: skip
    run.write_summary(summary)
    accelerator.end_training()
    return TrainResult(run.path, total_steps, best, last, temperature, seconds, summary["steps_per_second"])
