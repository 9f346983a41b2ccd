"""``distill()``: consistency distillation (``cd``) or Direct CM (``direct``) of a teacher into a student.

Reads top to bottom: configuration, validation, models, then the loop. The two objectives share everything (data
stream, noise, grid indices, student, optimiser, loss) and differ only in the target function
(:func:`~direct_cms.objectives.cd_target` vs :func:`~direct_cms.objectives.direct_target`).

Runs under accelerate (``accelerate launch -m direct_cms.cli distill ...``): mixed precision, data sharded per
process (each process draws its own seeded shard), gradient accumulation, and only the main process writes.
Checkpoints (``checkpoints/last.safetensors``: trainable weights, optimiser, EMA, step) are written atomically
every ``checkpoint_every`` steps; ``resume=True`` continues from the last one exactly (the stream is a pure
function of seed and step).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from direct_cms.data import draw_batch, load_dataset
from direct_cms.guidance import GuidedTeacher
from direct_cms.objectives import LOSSES, OBJECTIVES, cd_target, direct_target, pseudo_huber_loss, student_output
from direct_cms.solvers import SOLVERS, make_solver
from direct_cms.students import DEFAULT_LORA_TARGETS, STUDENT_KINDS, StudentTeacher
from direct_cms.teacher import load_teacher
from sixlab_shared import RunDir, UserError, derive_seed, progress

logger = logging.getLogger(__name__)

__all__ = ["STUDENT_FILE", "DistillConfig", "distill", "load_student"]

STUDENT_FILE = "student.safetensors"
#: Settings a resumed run must share with its checkpoint.
_RESUME_KEYS = ("objective", "num_intervals", "solver", "guidance", "student", "lora_rank", "lora_targets", "loss")


@dataclass
class DistillConfig:
    """Settings of ``direct-cms distill`` (identical for both objectives except ``objective``)."""

    teacher: str = ""
    """Teacher folder (``train-teacher`` output) or diffusers model folder / Hugging Face id."""
    objective: str = "cd"
    """``cd`` (one teacher step + stop-gradient target) or ``direct`` (teacher solve to t = 0)."""
    num_intervals: int = 20
    """N, the grid; must divide the scheduler's training steps (paper: 100)."""
    solver: str = "ddim"
    """Teacher ODE solver: ``ddim``, ``euler`` or ``heun``."""
    guidance: float = 3.0
    """Fixed Imagen-form CFG scale w of the teacher (paper: 9 for SDXL)."""
    loss: str = "l2"
    """``l2`` (the paper's) or ``huber`` (pseudo-Huber)."""
    huber_c: float = 1e-3
    """c of the pseudo-Huber loss."""
    student: str = "lora"
    """``lora`` (peft adapters, the paper's) or ``full`` fine-tuning."""
    lora_rank: int = 8
    """LoRA rank."""
    lora_alpha: float | None = None
    """LoRA α (default: the rank)."""
    lora_targets: list[str] = field(default_factory=lambda: list(DEFAULT_LORA_TARGETS))
    """Module-name suffixes that get LoRA adapters."""
    ema_decay: float = 0.0
    """EMA decay of the CD target network; 0 = stop-gradient online target (the paper's LoRA scripts)."""
    steps: int = 200
    """Optimiser updates."""
    batch_size: int = 32
    """Examples per micro-batch per process."""
    grad_accum: int = 1
    """Micro-batches per update."""
    lr: float = 1e-3
    """AdamW learning rate (constant)."""
    weight_decay: float = 1e-2
    """AdamW weight decay."""
    grad_clip: float = 1.0
    """Gradient-norm clip."""
    mixed_precision: str = "no"
    """accelerate mixed precision: ``no``, ``fp16`` or ``bf16``."""
    checkpoint_every: int = 50
    """Write ``checkpoints/last.safetensors`` every M updates (and at the end)."""
    log_every: int = 10
    """Log metrics every this many updates."""
    tensorboard: bool = True
    """Also log to TensorBoard (``<out>/tensorboard``)."""
    seed: int = 0
    """Seeds the data/noise/index stream (identical for both objectives)."""
    device: str | None = None
    """``cpu``, ``cuda``, ``mps`` (default: accelerate's choice)."""

    def validate(self) -> None:
        """Check every option the user can get wrong (before anything is written).

        Raises:
            UserError: naming the option, what it must be and what arrived.
        """
        if self.objective not in OBJECTIVES:
            raise UserError(f"--objective must be one of {', '.join(OBJECTIVES)}, got {self.objective!r}")
        if self.solver not in SOLVERS:
            raise UserError(f"--solver must be one of {', '.join(SOLVERS)}, got {self.solver!r}")
        if self.loss not in LOSSES:
            raise UserError(f"--loss must be one of {', '.join(LOSSES)}, got {self.loss!r}")
        if self.student not in STUDENT_KINDS:
            raise UserError(f"--student must be one of {', '.join(STUDENT_KINDS)}, got {self.student!r}")
        if self.guidance < 0:
            raise UserError(f"--guidance must be >= 0 (Imagen form, 1 = no guidance), got {self.guidance}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise UserError(f"--ema-decay must lie in [0, 1), got {self.ema_decay}")
        for name in ("steps", "batch_size", "grad_accum", "checkpoint_every", "log_every", "lora_rank"):
            if getattr(self, name) < 1:
                raise UserError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        if self.mixed_precision not in ("no", "fp16", "bf16"):
            raise UserError(f"--mixed-precision must be no, fp16 or bf16, got {self.mixed_precision!r}")
        if not self.teacher:
            raise UserError("--teacher is required: a folder from `direct-cms train-teacher` or a diffusers model")


@contextlib.contextmanager
def _swapped_in(params: list[torch.nn.Parameter], values: list[torch.Tensor] | None) -> Iterator[None]:
    """Temporarily copy ``values`` (EMA weights) into ``params``; no-op when ``values`` is None."""
    if values is None:
        yield
        return
    saved = [p.detach().clone() for p in params]
    with torch.no_grad():
        for p, v in zip(params, values, strict=True):
            p.copy_(v)
    try:
        yield
    finally:
        with torch.no_grad():
            for p, v in zip(params, saved, strict=True):
                p.copy_(v)


def distill(config: DistillConfig, out: str | Path, *, resume: bool = False, overwrite: bool = False) -> dict[str, Any]:
    """Distil ``config.teacher`` into a student with ``config.objective``; write the run to ``out``.

    Returns:
        The summary (also written to ``summary.json``): final loss, updates/s, teacher network calls per update.

    Raises:
        UserError: invalid options, teacher not loadable, N not dividing T, a non-DDPM scheduler, ``out`` holding a
            run without ``resume``/``overwrite``, or a checkpoint from a different configuration.
    """
    from accelerate import Accelerator

    # -- 1. validate everything before writing anything --------------------------------------------------------
    config.validate()
    teacher = load_teacher(config.teacher)
    grid = teacher.grid(config.num_intervals)
    if teacher.dataset is None:
        raise UserError(
            f"teacher {config.teacher!r} has no built-in dataset; distilling text-to-image teachers needs a "
            "prompt/latent data pipeline, not built yet"
        )
    data = load_dataset(teacher.dataset, seed=config.seed)
    run = RunDir(out, resume=resume, overwrite=overwrite)
    if resume:
        if not run.has_checkpoint():
            raise UserError(f"--resume given but {str(out)!r} has no checkpoints/last.safetensors; drop --resume")
        saved = run.read_config()
        changed = [key for key in _RESUME_KEYS if saved.get(key) != asdict(config).get(key)]
        if changed:
            raise UserError(
                f"checkpoint in {str(out)!r} was trained with different {', '.join(changed)}; resume with the same "
                "settings or choose another --out"
            )

    # -- 2. accelerate, models, optimiser -----------------------------------------------------------------------
    accelerator = Accelerator(
        mixed_precision=config.mixed_precision,
        cpu=config.device == "cpu",
        log_with="tensorboard" if config.tensorboard else None,
        project_dir=str(out),
    )
    device = accelerator.device
    if not resume:
        run.write_config(asdict(config), seed=config.seed, device=device, packages=("direct-cms", "diffusers", "peft"))
    torch.manual_seed(derive_seed(config.seed, "student-init"))  # peft's LoRA A init reads the global RNG
    models = StudentTeacher(
        teacher.network, config.student, config.lora_rank, config.lora_alpha, config.lora_targets
    ).to(device)
    params = models.trainable_parameters()
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    model, optimizer = accelerator.prepare(models, optimizer)
    core: StudentTeacher = accelerator.unwrap_model(model)
    null = torch.tensor(data.null_class, dtype=torch.int64)
    guided = GuidedTeacher(core.teacher_eps, config.guidance, null)
    solver = make_solver(config.solver, grid)
    loss_fn = (lambda a, b: pseudo_huber_loss(a, b, config.huber_c)) if config.loss == "huber" else LOSSES["l2"]
    ema = [p.detach().clone() for p in params] if config.ema_decay > 0 else None
    start_step = 0
    if resume:
        state = run.load_checkpoint(device="cpu")
        core.load_trainable_state_dict(state["student"])
        optimizer.load_state_dict(state["optimizer"])
        if ema is not None:
            ema = [v.to(device) for v in state["ema"]]
        start_step = int(state["step"])
        logger.info("resumed from step %d", start_step)
    if config.tensorboard:
        accelerator.init_trackers(
            "tensorboard", config={k: v for k, v in asdict(config).items() if isinstance(v, int | float | str)}
        )

    def save(step: int) -> None:
        state = {
            "student": core.trainable_state_dict(),
            "optimizer": optimizer.state_dict(),
            "ema": ema if ema is not None else [],
            "step": step,
            "config": asdict(config),
        }
        run.save_checkpoint(state)

    # -- 3. the loop ---------------------------------------------------------------------------------------------
    target_eps = core.student_eps
    losses: list[float] = []
    calls_per_update: list[float] = []
    start_time = time.perf_counter()
    for step in progress(range(start_step, config.steps), desc=f"distill {config.objective}", leave=False):
        calls_before = guided.network_calls
        step_loss = 0.0
        for micro in range(config.grad_accum):
            batch = draw_batch(
                data, config.batch_size, grid.num_intervals, config.seed, step, micro, accelerator.process_index
            )
            x0, cond, noise = batch.x0.to(device), batch.labels.to(device), batch.noise.to(device)
            t = grid.time_of_index(batch.index).to(device)
            x_t = grid.add_noise(x0, noise, t)
            with accelerator.autocast():
                if config.objective == "cd":
                    with _swapped_in(params, ema):
                        target = cd_target(guided, solver, target_eps, x_t, t, cond)
                else:
                    target = direct_target(guided, solver, x_t, t, cond)
                prediction = student_output(model, grid, x_t, t, cond)
                loss = loss_fn(prediction.float(), target.float()) / config.grad_accum
            sync = micro == config.grad_accum - 1
            with contextlib.nullcontext() if sync else accelerator.no_sync(model):
                accelerator.backward(loss)
            step_loss += loss.item()
        accelerator.clip_grad_norm_(params, config.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if ema is not None:
            with torch.no_grad():
                for e, p in zip(ema, params, strict=True):
                    e.lerp_(p.detach(), 1.0 - config.ema_decay)
        losses.append(step_loss)
        calls_per_update.append(float(guided.network_calls - calls_before))
        if (step + 1) % config.log_every == 0 or step + 1 == config.steps:
            metrics = {"loss/train": step_loss, "teacher/calls_per_update": calls_per_update[-1]}
            run.log_metrics(step=step + 1, **metrics)
            if config.tensorboard:
                accelerator.log(metrics, step=step + 1)
        if (step + 1) % config.checkpoint_every == 0 or step + 1 == config.steps:
            save(step + 1)
    elapsed = time.perf_counter() - start_time
    accelerator.wait_for_everyone()

    # -- 4. results ------------------------------------------------------------------------------------------------
    from sixlab_shared import save_checkpoint

    if accelerator.is_main_process:
        save_checkpoint(run.file(STUDENT_FILE), {"student": core.trainable_state_dict(), "config": asdict(config)})
    done = len(losses)
    summary = {
        "objective": config.objective,
        "steps": config.steps,
        "final_loss": losses[-1] if losses else None,
        "mean_loss_last10": sum(losses[-10:]) / max(1, len(losses[-10:])) if losses else None,
        "first_loss": losses[0] if losses else None,
        "updates_per_s": done / elapsed if elapsed > 0 and done else None,
        "teacher_calls_per_update": sum(calls_per_update) / done if done else None,
    }
    run.write_summary(summary)
    if config.tensorboard:
        accelerator.end_training()
    return summary


def load_student(run_dir: str | Path, teacher_override: str | None = None) -> tuple[StudentTeacher, DistillConfig, Any]:
    """Load a distilled student (``student.safetensors``) from a ``distill`` run directory.

    Returns:
        ``(models, config, teacher)``: the student/teacher pair (eval mode, CPU), the run's config and the teacher.

    Raises:
        UserError: the folder holds no finished distillation run.
    """
    from sixlab_shared import load_checkpoint

    path = Path(run_dir) / STUDENT_FILE
    if not path.is_file():
        raise UserError(f"{str(run_dir)!r} holds no {STUDENT_FILE}; pass the --out folder of a finished `distill` run")
    state = load_checkpoint(path)
    config = DistillConfig(**state["config"])
    teacher = load_teacher(teacher_override or config.teacher)
    models = StudentTeacher(teacher.network, config.student, config.lora_rank, config.lora_alpha, config.lora_targets)
    models.load_trainable_state_dict(state["student"])
    return models.eval(), config, teacher
