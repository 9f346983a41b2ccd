"""``distill()``: consistency distillation (``cd``) or Direct CM (``direct``) of a teacher into a student.

Reads top to bottom: configuration, validation, models, then the loop. The two objectives share everything (data
stream, noise, grid indices, student, optimiser, loss) and differ only in the target function
(:func:`~direct_cms.objectives.cd_target` vs :func:`~direct_cms.objectives.direct_target`).

Runs under accelerate (``accelerate launch -m direct_cms.cli distill ...``): mixed precision, data sharded per
process (each process draws its own seeded shard), gradient accumulation, and only the main process writes.
Checkpoints (``checkpoints/last.safetensors``: trainable weights, optimiser, EMA, step) are written atomically
every ``checkpoint_every`` steps; ``resume=True`` continues from the last one exactly (the stream is a pure
function of seed and step).

Teachers: a built-in ``train-teacher`` folder (class labels, its own dataset), or an SD 1.5 / SDXL pipeline with
``data`` (captioned images through :class:`~direct_cms.captions.TextBatchSource`: VAE latents and
:class:`~direct_cms.conditioning.TextCond`). Frozen weights can be held in fp16/bf16 with the trained (LoRA)
weights in float32, the UNet can recompute activations (gradient checkpointing), and SD/SDXL LoRA students are
also written in diffusers' LoRA format (``<out>/lora``).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from direct_cms.captions import TextBatchSource, build_cache, load_captioned_folder
from direct_cms.config import DEFAULT_LORA_TARGETS, PAPER_LORA_TARGETS, PRESETS, DistillConfig
from direct_cms.data import Batch, draw_batch, load_dataset
from direct_cms.grid import TimeGrid
from direct_cms.guidance import GuidedTeacher
from direct_cms.lora import save_lora
from direct_cms.objectives import LOSSES, cd_target, direct_target, pseudo_huber_loss, student_output
from direct_cms.solvers import make_solver
from direct_cms.students import StudentTeacher
from direct_cms.teacher import load_checked_scheduler, load_teacher, scheduler_from_config
from sixlab_shared import RunDir, UserError, derive_seed, get_device, progress, save_checkpoint, seeded

logger = logging.getLogger(__name__)

__all__ = ["PRESETS", "STUDENT_FILE", "DistillConfig", "distill", "load_student"]

STUDENT_FILE = "student.safetensors"
#: Folder of a text-to-image student's LoRA in diffusers' format (``pipe.load_lora_weights(<out>/lora)``).
LORA_DIR = "lora"
#: Settings a resumed run must share with its checkpoint (everything that changes the result).
_RESUME_KEYS = (
    "teacher",
    "vae",
    "variant",
    "revision",
    "data",
    "resolution",
    "cache",
    "objective",
    "num_intervals",
    "solver",
    "guidance",
    "loss",
    "huber_c",
    "student",
    "lora_rank",
    "lora_alpha",
    "lora_targets",
    "ema_decay",
    "batch_size",
    "grad_accum",
    "lr",
    "weight_decay",
    "grad_clip",
    "optimizer",
    "mixed_precision",
    "seed",
)


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


def _resolve_teacher(source: str) -> str:
    """An existing local path as an absolute path (so a run stored with a relative ``--teacher`` reloads from any
    working directory); Hub ids unchanged."""
    path = Path(source).expanduser()
    return str(path.resolve()) if path.exists() else source


def _require_bitsandbytes() -> Any:
    import importlib

    try:
        # the optional ``direct-cms[bnb]`` extra (CUDA only), imported by name: it is usually not installed
        bitsandbytes = importlib.import_module("bitsandbytes")
    except ImportError as err:
        raise UserError(
            "--optimizer adamw8bit needs bitsandbytes: pip install 'direct-cms[bnb]' (CUDA), or use adamw"
        ) from err
    return bitsandbytes


def _make_optimizer(name: str, params: list[torch.nn.Parameter], lr: float, weight_decay: float):
    if name == "adamw8bit":
        return _require_bitsandbytes().optim.AdamW8bit(params, lr=lr, weight_decay=weight_decay)
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)


class _Setup:
    """Teacher, data stream and CFG null condition of a run (built-in or text-to-image).

    The constructor does the cheap checks (teacher configs, data folder, optimiser); :meth:`load` loads weights.
    """

    def __init__(self, config: DistillConfig, text: bool) -> None:
        from direct_cms.text_teacher import check_teacher_source

        self.config = config
        self.text = text
        if text:
            if not config.data:
                raise UserError("--data is required for SD/SDXL teachers: a folder of captioned images")
            _, scheduler_config = check_teacher_source(config.teacher, config.revision or None)
            scheduler = scheduler_from_config(scheduler_config)
            self.images = load_captioned_folder(config.data)
        else:
            if config.data or config.vae or config.variant or config.cache:
                raise UserError("--data/--vae/--variant/--cache apply to SD/SDXL pipeline teachers only")
            scheduler = load_checked_scheduler(config.teacher)
        TimeGrid.from_scheduler(scheduler, config.num_intervals)  # N must divide T: refused before weights load
        if config.optimizer == "adamw8bit":
            _require_bitsandbytes()

    def load(self, device: torch.device) -> None:
        """Load the teacher's weights, the data stream and the null condition (a new latent cache is built with the
        VAE and text encoders on ``device``, which then go back to the CPU)."""
        from direct_cms.text_teacher import load_text_teacher

        config = self.config
        if self.text:
            self.teacher = load_text_teacher(
                config.teacher,
                vae=config.vae or None,
                variant=config.variant or None,
                revision=config.revision or None,
            )
            self.grid = self.teacher.grid(config.num_intervals)
            cache = None
            if config.cache:
                encoders = [self.teacher.pipe.vae, self.teacher.pipe.text_encoder]
                encoders.append(getattr(self.teacher.pipe, "text_encoder_2", None))
                for module in encoders:
                    if module is not None:
                        module.to(device)
                cache = build_cache(self.teacher, self.images, config.resolution, config.seed, config.cache, config.vae)
                for module in encoders:
                    if module is not None:
                        module.to("cpu")
            self.source = TextBatchSource(self.teacher, self.images, config.resolution, cache)
            self.null = self.teacher.null_cond(device="cpu")
        else:
            self.teacher = load_teacher(config.teacher)
            self.grid = self.teacher.grid(config.num_intervals)
            if self.teacher.dataset is None:
                raise UserError(
                    f"teacher {config.teacher!r} is a bare UNet without a built-in dataset; pass a `train-teacher` "
                    "folder or a diffusers SD 1.5 / SDXL pipeline with --data"
                )
            self.data = load_dataset(self.teacher.dataset, seed=config.seed)
            self.null = torch.tensor(self.data.null_class, dtype=torch.int64)

    def draw(self, config: DistillConfig, step: int, micro: int, process: int) -> Batch:
        if self.text:
            return self.source.draw(config.batch_size, config.num_intervals, config.seed, step, micro, process)
        return draw_batch(self.data, config.batch_size, config.num_intervals, config.seed, step, micro, process)


def distill(config: DistillConfig, out: str | Path, *, resume: bool = False, overwrite: bool = False) -> dict[str, Any]:
    """Distil ``config.teacher`` into a student with ``config.objective``; write the run to ``out``.

    Returns:
        The summary (also written to ``summary.json``): final loss, updates/s, teacher network calls per update.

    Raises:
        UserError: invalid options, teacher not loadable or refused (scheduler, prediction type), N not dividing T,
            bad data, ``out`` holding a run without ``resume``/``overwrite``, a checkpoint from a different
            configuration, or ``adamw8bit`` without bitsandbytes.
    """
    from accelerate import Accelerator

    # -- 1. validate everything before writing anything --------------------------------------------------------
    config.validate()
    from direct_cms.text_teacher import is_pipeline_source

    teacher_source = _resolve_teacher(config.teacher)
    text = is_pipeline_source(teacher_source, config.revision or None)
    targets = config.lora_targets or list(PAPER_LORA_TARGETS if text else DEFAULT_LORA_TARGETS)
    config = DistillConfig(**{**asdict(config), "teacher": teacher_source, "lora_targets": targets})
    device_check = get_device(config.device)  # one line for an unavailable device, before any weights load
    if config.mixed_precision == "fp16" and device_check.type != "cuda":
        raise UserError("--mixed-precision fp16 needs a CUDA device; use bf16 (or no) on the CPU")
    setup = _Setup(config, text)
    created = not Path(out).exists()
    run = RunDir(out, resume=resume, overwrite=overwrite)
    if resume:
        if not run.has_checkpoint():
            raise UserError(f"--resume given but {str(out)!r} has no checkpoints/last.safetensors; drop --resume")
        saved = run.read_config()
        mine = asdict(config)
        changed = [key for key in _RESUME_KEYS if saved.get(key) != mine.get(key)]
        if changed:
            raise UserError(
                f"checkpoint in {str(out)!r} was trained with different {', '.join(changed)}; resume with the same "
                "settings or choose another --out"
            )
    try:
        setup.load(device_check)
    except UserError:
        if created and Path(out).is_dir() and not any(Path(out).iterdir()):
            Path(out).rmdir()  # a teacher or VAE that cannot be loaded leaves nothing behind
        raise
    teacher, grid = setup.teacher, setup.grid

    # -- 2. accelerate, models, optimiser -----------------------------------------------------------------------
    from accelerate.state import AcceleratorState

    if device_check.type == "cuda" and device_check.index is not None and torch.cuda.device_count() > 1:
        torch.cuda.set_device(device_check)  # --device cuda:N in a single process

    # a second run in one process may use another precision: drop accelerate's cached mixed-precision state (the
    # distributed PartialState is kept)
    AcceleratorState._reset_state(reset_partial_state=False)
    accelerator = Accelerator(
        mixed_precision=config.mixed_precision,
        cpu=device_check.type == "cpu",
        log_with="tensorboard" if config.tensorboard else None,
        project_dir=str(out),
    )
    device = accelerator.device
    if not resume:
        run.write_config(asdict(config), seed=config.seed, device=device, packages=("direct-cms", "diffusers", "peft"))
    else:
        run.rewind_metrics(int(run.load_checkpoint(device="cpu")["step"]))
    with seeded(derive_seed(config.seed, "student-init")):  # peft's LoRA A init reads the global RNG
        models = StudentTeacher(
            teacher.network, config.student, config.lora_rank, config.lora_alpha, config.lora_targets
        )
    weight_dtype = {"no": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[config.mixed_precision]
    if weight_dtype != torch.float32:  # frozen weights in half precision, trained weights in float32
        models.network.to(weight_dtype)
        for p in models.trainable_parameters():
            p.data = p.data.float()
    if config.gradient_checkpointing:
        if not hasattr(models.network, "enable_gradient_checkpointing"):
            raise UserError(f"--gradient-checkpointing needs a diffusers UNet, not {type(models.network).__name__}")
        models.network.enable_gradient_checkpointing()
    models.to(device)
    if setup.text and config.cache == "":  # on-the-fly encoding runs the VAE and text encoders on the device
        for module in (teacher.pipe.vae, teacher.pipe.text_encoder, getattr(teacher.pipe, "text_encoder_2", None)):
            if module is not None:
                module.to(device)
    params = models.trainable_parameters()
    optimizer = _make_optimizer(config.optimizer, params, config.lr, config.weight_decay)
    model, optimizer = accelerator.prepare(models, optimizer)
    core: StudentTeacher = accelerator.unwrap_model(model)
    guided = GuidedTeacher(core.teacher_eps, config.guidance, setup.null)
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
            batch = setup.draw(config, step, micro, accelerator.process_index)
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
    if accelerator.is_main_process:
        save_checkpoint(run.file(STUDENT_FILE), {"student": core.trainable_state_dict(), "config": asdict(config)})
        if setup.text and config.student == "lora":
            save_lora(core.network, core.peft_config, run.file(LORA_DIR), teacher.kind)
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
    from direct_cms.text_teacher import is_pipeline_source, load_text_teacher

    source = teacher_override or config.teacher
    if is_pipeline_source(source, config.revision or None):
        teacher = load_text_teacher(
            source, vae=config.vae or None, variant=config.variant or None, revision=config.revision or None
        )
    else:
        teacher = load_teacher(source)
    models = StudentTeacher(teacher.network, config.student, config.lora_rank, config.lora_alpha, config.lora_targets)
    models.load_trainable_state_dict(state["student"])
    return models.eval(), config, teacher
