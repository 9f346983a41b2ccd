"""Training, saving and loading teachers: the built-in digits UNet / 2-D MLP, or any diffusers UNet + scheduler.

A teacher folder holds ``unet/`` (``save_pretrained``) and ``scheduler/`` (a ``DDPMScheduler`` config). The
built-in teachers train with ε-prediction on the paper's shifted time convention: t ~ U{1..T},
``x_t = α_t·x₀ + σ_t·ε`` with α_t = √ᾱ_{t−1}, and the network receives the raw ``t``; labels are replaced by the
null class with probability ``label_dropout`` so that classifier-free guidance works.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from diffusers import DDPMScheduler, UNet2DConditionModel, UNet2DModel
from torch import nn

from direct_cms.config import SCHEDULES, TeacherConfig
from direct_cms.data import Dataset, draw_batch, load_dataset
from direct_cms.grid import TimeGrid
from direct_cms.networks import MLPDenoiser, build_digits_unet
from sixlab_shared import UserError, derive_seed, get_device, make_generator, progress, seeded

logger = logging.getLogger(__name__)

__all__ = ["Teacher", "TeacherConfig", "load_teacher", "make_teacher_scheduler", "save_teacher", "train_teacher"]

UNET_DIR = "unet"
SCHEDULER_DIR = "scheduler"


@dataclass
class Teacher:
    """A loaded teacher: network, DDPM scheduler, and what it was trained on."""

    network: nn.Module
    scheduler: Any
    """A DDPM-like diffusers scheduler (ᾱ is read from it)."""
    dataset: str | None
    num_classes: int

    @property
    def null_class(self) -> int:
        return self.num_classes

    def grid(self, num_intervals: int) -> TimeGrid:
        """The N-interval grid on this teacher's schedule."""
        return TimeGrid.from_scheduler(self.scheduler, num_intervals)


def make_teacher_scheduler(schedule: str = "scaled_linear") -> DDPMScheduler:
    """A 1000-step ε-prediction DDPM schedule: SDXL's ``scaled_linear`` β 0.00085 → 0.012 (the paper's; terminal
    α ≈ 0.068) or ``linear`` β 1e-4 → 0.02 (terminal α ≈ 0.006, which makes the one-step x̂₀ = (x − σε̂)/α at
    t = T amplify ε errors ~150×)."""
    start, end = SCHEDULES[schedule]
    return DDPMScheduler(num_train_timesteps=1000, beta_schedule=schedule, beta_start=start, beta_end=end)


def build_network(dataset: str, num_classes: int, width: int) -> nn.Module:
    """Fresh (untrained) network for a built-in dataset."""
    if dataset == "digits":
        return build_digits_unet(num_classes, width)
    return MLPDenoiser(data_dim=2, hidden=4 * width, depth=3, num_classes=num_classes)


def train_teacher(config: TeacherConfig, data: Dataset | None = None) -> tuple[Teacher, list[float]]:
    """Train a built-in teacher from scratch (ε-prediction MSE, shifted time convention).

    Returns:
        The teacher (network in eval mode, on CPU) and the per-step losses.

    Raises:
        UserError: invalid configuration.
    """
    config.validate()
    device = get_device(config.device)
    data = data if data is not None else load_dataset(config.dataset, seed=config.seed)
    with seeded(derive_seed(config.seed, "teacher-init")):  # module init reads the global RNG; restored after
        network = build_network(data.name, data.num_classes, config.width).to(device).train()
    scheduler = make_teacher_scheduler(config.schedule)
    grid = TimeGrid.from_scheduler(scheduler, 1)
    optimizer = torch.optim.Adam(network.parameters(), lr=config.lr)
    lr_schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.steps)
    drop_gen = make_generator(derive_seed(config.seed, "label-dropout"))
    losses: list[float] = []
    start = time.perf_counter()
    for step in progress(range(config.steps), desc="teacher", leave=False):
        batch = draw_batch(data, config.batch_size, grid.num_train_timesteps, config.seed, step)
        t = batch.index + 1  # t ~ U{1..T}: schedule index t−1
        drop = torch.rand(config.batch_size, generator=drop_gen) < config.label_dropout
        labels = torch.where(drop, torch.full_like(batch.labels, data.null_class), batch.labels)
        x_t = grid.add_noise(batch.x0, batch.noise, t)
        out = network(x_t.to(device), t.to(device), class_labels=labels.to(device))
        eps = out.sample if hasattr(out, "sample") else out
        loss = torch.nn.functional.mse_loss(eps, batch.noise.to(device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        lr_schedule.step()
        losses.append(loss.item())
    logger.info("teacher: %d steps in %.1fs, final loss %.4f", config.steps, time.perf_counter() - start, losses[-1])
    network = network.to("cpu").eval().requires_grad_(False)
    return Teacher(network, scheduler, data.name, data.num_classes), losses


def save_teacher(teacher: Teacher, folder: str | Path, extra: dict[str, Any] | None = None) -> None:
    """Save ``unet/`` and ``scheduler/`` under ``folder`` (diffusers ``save_pretrained``).

    A network carrying a student's peft adapters is saved without them (the teacher's own weights), so a saved
    teacher never holds peft-injected keys.
    """
    from direct_cms.lora import has_lora, without_lora

    folder = Path(folder)
    network = without_lora(teacher.network, merge=False) if has_lora(teacher.network) else teacher.network
    network.save_pretrained(folder / UNET_DIR)
    teacher.scheduler.save_pretrained(folder / SCHEDULER_DIR)
    import json

    meta = {"dataset": teacher.dataset, "num_classes": teacher.num_classes, **(extra or {})}
    (folder / "teacher.json").write_text(json.dumps(meta, indent=2))


def load_teacher(source: str | Path, subfolder_unet: str = UNET_DIR) -> Teacher:
    """Load a teacher folder written by :func:`save_teacher`, or a diffusers model folder / Hugging Face id
    holding ``unet/`` and ``scheduler/`` (``UNet2DModel`` or ``UNet2DConditionModel``).

    Raises:
        UserError: nothing loadable at ``source`` (offline, wrong id or path), or the scheduler is not DDPM-like.
    """
    import json

    path = Path(source)
    if path.is_dir() and (path / "teacher.json").is_file():
        meta = json.loads((path / "teacher.json").read_text())
        unet_config = json.loads((path / UNET_DIR / "config.json").read_text())
        cls = MLPDenoiser if unet_config.get("_class_name") == "MLPDenoiser" else UNet2DModel
        network = cls.from_pretrained(path / UNET_DIR)
        scheduler = DDPMScheduler.from_pretrained(path / SCHEDULER_DIR)
        TimeGrid.from_scheduler(scheduler, 1)
        return Teacher(network.eval().requires_grad_(False), scheduler, meta.get("dataset"), meta["num_classes"])
    if path.exists() and not path.is_dir():
        raise UserError(f"teacher {str(source)!r} is a file; pass a folder holding unet/ and scheduler/")
    scheduler = load_checked_scheduler(source)
    try:
        unet_config = UNet2DConditionModel.load_config(str(source), subfolder=subfolder_unet)
        cls = UNet2DConditionModel if unet_config.get("_class_name") == "UNet2DConditionModel" else UNet2DModel
        network = cls.from_pretrained(str(source), subfolder=subfolder_unet)
    except (OSError, ValueError) as err:
        raise UserError(
            f"could not load teacher {str(source)!r} (a local folder with unet/ and scheduler/, or a Hugging Face "
            "id such as stabilityai/stable-diffusion-xl-base-1.0); run `direct-cms train-teacher` or download it "
            f"first (HF_HUB_OFFLINE is {'set' if _offline() else 'not set'})"
        ) from err
    TimeGrid.from_scheduler(scheduler, 1)
    num_classes = int(getattr(network.config, "num_class_embeds", None) or 1) - 1
    return Teacher(network.eval().requires_grad_(False), scheduler, None, num_classes)


def scheduler_from_config(config: dict[str, Any]) -> Any:
    """The scheduler class named in a (checked) config, built from it (no weights involved)."""
    import diffusers

    return getattr(diffusers, config["_class_name"]).from_config(config)


def load_checked_scheduler(source: str | Path) -> Any:
    """The teacher's own scheduler class from its config, refused (before any weights load) when not usable."""
    from direct_cms.text_teacher import check_scheduler_config

    path = Path(source)
    if path.exists() and not path.is_dir():
        raise UserError(f"teacher {str(source)!r} is a file; pass a folder holding unet/ and scheduler/")
    try:
        config = DDPMScheduler.load_config(str(source), subfolder=SCHEDULER_DIR)
    except (OSError, ValueError) as err:
        raise UserError(
            f"could not load teacher {str(source)!r} (a local folder with unet/ and scheduler/, or a Hugging Face "
            "id such as stabilityai/stable-diffusion-xl-base-1.0); run `direct-cms train-teacher` or download it "
            f"first (HF_HUB_OFFLINE is {'set' if _offline() else 'not set'})"
        ) from err
    if "_class_name" not in config:
        config = {**config, "_class_name": "DDPMScheduler"}
    check_scheduler_config(config)
    return scheduler_from_config(config)


def _offline() -> bool:
    import os

    return os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0")


def teacher_config_dict(config: TeacherConfig) -> dict[str, Any]:
    """The config as a JSON-able dict."""
    return asdict(config)
