"""The configuration dataclasses of the CLI verbs (the one table of defaults) and the names they accept.

Kept free of torch/diffusers imports so that ``direct-cms --help`` builds its options without loading the
libraries; the modules that run the jobs import these classes from here (and re-export them).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from sixlab_shared import UserError

__all__ = [
    "CLIP_MODEL",
    "DATASETS",
    "DEFAULT_KS",
    "DEFAULT_LORA_TARGETS",
    "LOSS_NAMES",
    "OBJECTIVES",
    "OPTIMIZERS",
    "PAPER_LORA_TARGETS",
    "PRESETS",
    "SCHEDULES",
    "SOLVER_NAMES",
    "STUDENT_KINDS",
    "DistillConfig",
    "EvaluateConfig",
    "SampleConfig",
    "TeacherConfig",
]

#: Built-in datasets.
DATASETS = ("digits", "ring")
#: β schedules of the built-in teachers: name → (β_start, β_end).
SCHEDULES = {"scaled_linear": (0.00085, 0.012), "linear": (1e-4, 0.02)}
#: Distillation objectives.
OBJECTIVES = ("cd", "direct")
#: Teacher ODE solvers (:data:`direct_cms.solvers.SOLVERS` has these keys).
SOLVER_NAMES = ("ddim", "euler", "heun")
#: Losses (:data:`direct_cms.objectives.LOSSES` has these keys).
LOSS_NAMES = ("l2", "huber")
#: Student kinds.
STUDENT_KINDS = ("lora", "full")
#: LoRA targets for the built-in teachers: UNet attention, resnet convs and time projections, and MLP linears.
DEFAULT_LORA_TARGETS = ("to_q", "to_k", "to_v", "to_out.0", "conv1", "conv2", "time_emb_proj", "fc_in", "fc_hidden")
#: The paper's 14 LoRA target module groups: attention q/k/v/out, proj_in/out, feed-forward, resnet convs and
#: shortcut, down/upsampler convs, time-embedding projection.
PAPER_LORA_TARGETS = (
    "to_q",
    "to_k",
    "to_v",
    "to_out.0",
    "proj_in",
    "proj_out",
    "ff.net.0.proj",
    "ff.net.2",
    "conv1",
    "conv2",
    "conv_shortcut",
    "downsamplers.0.conv",
    "upsamplers.0.conv",
    "time_emb_proj",
)

#: Student step counts K evaluated by default.
DEFAULT_KS = (1, 2, 4, 8)
#: The paper's CLIP model for the CLIP score.
CLIP_MODEL = "openai/clip-vit-large-patch14"


@dataclass
class TeacherConfig:
    """Settings of ``direct-cms train-teacher``."""

    dataset: str = "digits"
    """``digits`` (UNet2DModel) or ``ring`` (MLP)."""
    steps: int = 2000
    """Optimiser steps."""
    batch_size: int = 64
    """Examples per step."""
    lr: float = 2e-3
    """Adam learning rate (cosine decay to 0)."""
    label_dropout: float = 0.1
    """Probability of replacing a label by the null class (for CFG)."""
    schedule: str = "scaled_linear"
    """β schedule: ``scaled_linear`` (SDXL's 0.00085 → 0.012, the paper's) or ``linear`` (1e-4 → 0.02)."""
    width: int = 16
    """Base width (UNet channels (w, 2w); MLP hidden = 4w)."""
    seed: int = 0
    """Seeds initialisation and the data/noise stream."""
    device: str | None = None
    """``cpu``, ``cuda`` or ``mps`` (default: best available)."""

    def validate(self) -> None:
        """Raises UserError for values the user can fix."""
        if self.dataset not in DATASETS:
            raise UserError(f"unknown dataset {self.dataset!r}; choose one of {', '.join(DATASETS)}")
        if self.steps < 1 or self.batch_size < 1:
            raise UserError(f"--steps and --batch-size must be >= 1, got {self.steps} and {self.batch_size}")
        if self.schedule not in SCHEDULES:
            raise UserError(f"unknown schedule {self.schedule!r}; choose one of {', '.join(SCHEDULES)}")
        if not 0.0 <= self.label_dropout < 1.0:
            raise UserError(f"--label-dropout must lie in [0, 1), got {self.label_dropout}")


OPTIMIZERS = ("adamw", "adamw8bit")

#: Named presets. ``paper``: the paper's SDXL setting (reference §2). Precedence of a value, highest first: the
#: command line, a ``--config`` file, the preset, the dataclass default (:meth:`DistillConfig.from_preset`; the CLI
#: reads which options were given from click's parameter sources).
PRESETS: dict[str, dict[str, Any]] = {
    "paper": {
        "num_intervals": 100,
        "solver": "ddim",
        "guidance": 9.0,
        "lora_rank": 64,
        "lora_alpha": 64.0,
        "lora_targets": list(PAPER_LORA_TARGETS),
        "lr": 1e-4,
        "weight_decay": 1e-2,
        "grad_clip": 1.0,
        "batch_size": 16,
        "steps": 250,
        "seed": 24,
        "checkpoint_every": 50,
        "mixed_precision": "fp16",
        "gradient_checkpointing": True,
        "optimizer": "adamw8bit",
        "resolution": 1024,
    }
}


@dataclass
class DistillConfig:
    """Settings of ``direct-cms distill`` (identical for both objectives except ``objective``)."""

    teacher: str = ""
    """Teacher: a ``train-teacher`` folder, or a diffusers SD 1.5 / SDXL pipeline (Hugging Face id or folder)."""
    data: str = ""
    """Captioned image folder for SD/SDXL teachers (``metadata.jsonl`` imagefolder or ``.txt`` sidecars)."""
    vae: str = ""
    """VAE replacing the pipeline's (id or folder, e.g. ``madebyollin/sdxl-vae-fp16-fix``)."""
    variant: str = ""
    """Weight variant of the pipeline (e.g. ``fp16``)."""
    revision: str = ""
    """Hub revision of the pipeline."""
    resolution: int = 512
    """Square crop size in pixels for SD/SDXL data (paper: 1024)."""
    cache: str = ""
    """Latent + prompt-embedding cache file (safetensors; built on first use) so the VAE and text encoders are not
    needed during training; empty: encode every batch."""
    preset: str = ""
    """A named preset (``paper``): the paper's values for every option not given on the command line or in
    --config. In Python, build with ``DistillConfig.from_preset(name, **values)`` (here it is only recorded)."""
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
    """LoRA rank (paper: 64)."""
    lora_alpha: float | None = None
    """LoRA α (default: the rank)."""
    lora_targets: list[str] = field(default_factory=list)
    """Module-name suffixes that get LoRA adapters; empty: the built-in teachers' list, or the paper's 14 groups
    for SD/SDXL."""
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
    optimizer: str = "adamw"
    """``adamw`` (torch) or ``adamw8bit`` (bitsandbytes, the paper's; CUDA)."""
    mixed_precision: str = "no"
    """``no``, ``fp16`` or ``bf16``: frozen weights are stored in that dtype and autocast computes in it; the
    trained (LoRA) weights stay float32."""
    gradient_checkpointing: bool = False
    """Recompute UNet activations in the backward pass (saves memory, costs time)."""
    checkpoint_every: int = 50
    """Write ``checkpoints/last.safetensors`` every M updates (and at the end)."""
    log_every: int = 10
    """Log metrics every this many updates."""
    tensorboard: bool = True
    """Also log to TensorBoard (``<out>/tensorboard``)."""
    seed: int = 0
    """Seeds the data/noise/index stream (identical for both objectives) and the LoRA initialisation."""
    device: str | None = None
    """``cpu``, ``cuda``, ``cuda:N`` or ``mps`` (default: accelerate's choice)."""

    def __post_init__(self) -> None:
        # The preset is applied once, by from_preset; here it is only a recorded name. Filling default-valued fields
        # here would re-run on every rebuild (dataclasses.replace, a run's saved config) and overwrite values the
        # user gave explicitly at their defaults.
        if self.preset and self.preset not in PRESETS:
            raise UserError(f"--preset must be one of {', '.join(PRESETS)}, got {self.preset!r}")

    @classmethod
    def from_preset(cls, preset: str, /, **given: Any) -> DistillConfig:
        """The preset's values with ``given`` on top: every given value wins, even one equal to the default.

        Args:
            preset: a name in :data:`PRESETS` (empty: no preset, plain defaults).
            **given: field values set by the user (command line or ``--config``).

        Returns:
            The config, with ``preset`` recorded.

        Raises:
            UserError: an unknown preset.

        Example:
            >>> DistillConfig.from_preset("paper", lr=1e-3).lr  # 1e-3 is the default, given explicitly
            0.001
            >>> DistillConfig.from_preset("paper").lr
            0.0001
        """
        if preset and preset not in PRESETS:
            raise UserError(f"--preset must be one of {', '.join(PRESETS)}, got {preset!r}")
        values = {**copy.deepcopy(PRESETS.get(preset, {})), **given, "preset": preset}
        return cls(**values)

    def validate(self) -> None:
        """Check every option the user can get wrong (before anything is written).

        Raises:
            UserError: naming the option, what it must be and what arrived.
        """
        if self.objective not in OBJECTIVES:
            raise UserError(f"--objective must be one of {', '.join(OBJECTIVES)}, got {self.objective!r}")
        if self.solver not in SOLVER_NAMES:
            raise UserError(f"--solver must be one of {', '.join(SOLVER_NAMES)}, got {self.solver!r}")
        if self.loss not in LOSS_NAMES:
            raise UserError(f"--loss must be one of {', '.join(LOSS_NAMES)}, got {self.loss!r}")
        if self.student not in STUDENT_KINDS:
            raise UserError(f"--student must be one of {', '.join(STUDENT_KINDS)}, got {self.student!r}")
        if self.optimizer not in OPTIMIZERS:
            raise UserError(f"--optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}")
        if self.guidance < 0:
            raise UserError(f"--guidance must be >= 0 (Imagen form, 1 = no guidance), got {self.guidance}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise UserError(f"--ema-decay must lie in [0, 1), got {self.ema_decay}")
        for name in ("steps", "batch_size", "grad_accum", "checkpoint_every", "log_every", "lora_rank", "resolution"):
            if getattr(self, name) < 1:
                raise UserError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        if self.lr <= 0 or self.weight_decay < 0 or self.grad_clip <= 0 or self.huber_c <= 0:
            raise UserError("--lr, --grad-clip and --huber-c must be > 0 and --weight-decay >= 0")
        if self.mixed_precision not in ("no", "fp16", "bf16"):
            raise UserError(f"--mixed-precision must be no, fp16 or bf16, got {self.mixed_precision!r}")
        if not self.teacher:
            raise UserError("--teacher is required: a folder from `direct-cms train-teacher` or a diffusers pipeline")


@dataclass
class SampleConfig:
    """Settings of ``direct-cms sample``."""

    steps: int = 4
    """K sampling steps (1..N)."""
    num_samples: int = 100
    """Built-in students: number of samples (labels balanced over classes)."""
    prompt: list[str] = field(default_factory=list)
    """SD/SDXL students: prompts (repeatable), one image each."""
    seed: int = 0
    """Seeds the initial and re-noising draws."""
    precision: str = "fp32"
    """SD/SDXL: weights dtype of the pipeline (fp32, fp16, bf16)."""
    device: str | None = None
    """Where the student runs (default: the best available); the noise is drawn on the CPU."""

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise ValueError(f"--steps must be >= 1, got {self.steps}")
        if self.num_samples < 1:
            raise ValueError(f"--num-samples must be >= 1, got {self.num_samples}")
        if self.precision not in ("fp32", "fp16", "bf16"):
            raise ValueError(f"--precision must be fp32, fp16 or bf16, got {self.precision!r}")


@dataclass
class EvaluateConfig:
    """Settings of ``direct-cms evaluate`` (built-in students, or SD/SDXL students with ``--prompts``)."""

    prompts: str = ""
    """SD/SDXL students: a text file with one prompt per line (the evaluation set)."""
    ks: list[int] = field(default_factory=lambda: list(DEFAULT_KS))
    """Student step counts K (repeatable)."""
    num_samples: int = 500
    """Built-in students: fixed initial noises."""
    sanity_samples: int = 64
    """Built-in students: samples for the teacher's N-step vs fine solve (0 skips)."""
    sanity_intervals: int = 1000
    """Built-in students: grid of the fine teacher solve."""
    classifier: str = ""
    """Built-in digits: classifier file (trained and saved there if missing; default in --out)."""
    classifier_steps: int = 400
    """Built-in digits: training steps of the classifier when it is not cached."""
    clip_model: str = CLIP_MODEL
    """SD/SDXL: CLIP model (id or folder) for the CLIP score; empty skips it."""
    fd_encoders: list[str] = field(default_factory=list)
    """SD/SDXL: dgm-eval encoders for Fréchet distances (inception → FID, dinov2 → FD-DINOv2; repeatable)."""
    real_images: str = ""
    """SD/SDXL: folder of real images, the reference set of the teacher's FD."""
    batch_size: int = 8
    """SD/SDXL: images per forward pass."""
    precision: str = "fp32"
    """SD/SDXL: compute precision of sampling and decoding (fp32, or autocast fp16/bf16 on a GPU)."""
    seed: int = 0
    """Seeds the fixed noise (stored once in --out, reused)."""
    device: str | None = None
    """Where the teacher and students run (default: the best available); noise is drawn and metrics computed on
    the CPU."""

    def __post_init__(self) -> None:
        if not self.ks or min(self.ks) < 1:
            raise ValueError(f"--ks must hold integers >= 1, got {self.ks}")
        if self.num_samples < 2:
            raise ValueError(f"--num-samples must be >= 2, got {self.num_samples}")
        if self.precision not in ("fp32", "fp16", "bf16"):
            raise ValueError(f"--precision must be fp32, fp16 or bf16, got {self.precision!r}")
        if self.batch_size < 1 or self.sanity_samples < 0 or self.classifier_steps < 1:
            raise ValueError("--batch-size and --classifier-steps must be >= 1, --sanity-samples >= 0")
