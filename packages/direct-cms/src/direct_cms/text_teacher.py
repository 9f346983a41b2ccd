"""Text-to-image teachers: a diffusers Stable Diffusion 1.5 or SDXL pipeline (Hugging Face id or local folder).

:func:`check_teacher_source` reads only ``model_index.json`` and the scheduler config, and refuses in one line what
the paper's method cannot use, *before* any weights load: pipelines other than SD/SDXL, schedulers that are not
DDPM-like (flow matching), v-prediction and zero-terminal-SNR schedules. :func:`load_text_teacher` then loads the
pipeline with diffusers (optionally a VAE override such as ``madebyollin/sdxl-vae-fp16-fix``, a ``variant`` such
as ``fp16`` and a ``revision``). The time grid takes ᾱ from the teacher's own scheduler object.

Prompts are encoded by the pipeline's own ``encode_prompt``; the unconditional branch of CFG is what diffusers
uses without a negative prompt: the empty-prompt embedding for SD 1.5, zeros for SDXL
(``force_zeros_for_empty_prompt``).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from direct_cms.conditioning import TextCond, sdxl_time_ids
from direct_cms.grid import TimeGrid
from sixlab_shared import UserError

logger = logging.getLogger(__name__)

__all__ = [
    "DDPM_LIKE_SCHEDULERS",
    "PIPELINE_KINDS",
    "TextTeacher",
    "check_scheduler_config",
    "check_teacher_source",
    "is_pipeline_source",
    "load_text_teacher",
]

#: diffusers pipeline class → kind.
PIPELINE_KINDS = {"StableDiffusionPipeline": "sd", "StableDiffusionXLPipeline": "sdxl"}

#: Scheduler classes whose ᾱ comes from a discrete DDPM β schedule (any of them gives the same ᾱ).
DDPM_LIKE_SCHEDULERS = (
    "DDPMScheduler",
    "DDIMScheduler",
    "PNDMScheduler",
    "LMSDiscreteScheduler",
    "EulerDiscreteScheduler",
    "EulerAncestralDiscreteScheduler",
    "HeunDiscreteScheduler",
    "DPMSolverMultistepScheduler",
    "DPMSolverSinglestepScheduler",
    "KDPM2DiscreteScheduler",
    "KDPM2AncestralDiscreteScheduler",
    "UniPCMultistepScheduler",
    "DEISMultistepScheduler",
    "LCMScheduler",
    "TCDScheduler",
    "DDIMParallelScheduler",
    "DDPMParallelScheduler",
)


def check_scheduler_config(config: dict[str, Any], where: str = "teacher") -> None:
    """Refuse a scheduler config the paper's ε-prediction, 1000-step DDPM setting cannot use.

    Raises:
        UserError: flow matching, a class that is not DDPM-like, v-/sample-prediction or a zero-terminal-SNR
            (``rescale_betas_zero_snr``) schedule.

    Example:
        >>> check_scheduler_config({"_class_name": "EulerDiscreteScheduler", "prediction_type": "epsilon"})
        >>> try:
        ...     check_scheduler_config({"_class_name": "FlowMatchEulerDiscreteScheduler"})
        ... except UserError as err:
        ...     print(str(err)[:58])
        teacher scheduler FlowMatchEulerDiscreteScheduler is a flo
    """
    name = str(config.get("_class_name", "?"))
    if "FlowMatch" in name or "flow" in str(config.get("prediction_type", "")).lower():
        raise UserError(
            f"{where} scheduler {name} is a flow-matching schedule; direct-cms needs a DDPM-like (beta schedule, "
            "epsilon-prediction) teacher such as SD 1.5 or SDXL"
        )
    if name not in DDPM_LIKE_SCHEDULERS:
        raise UserError(
            f"{where} scheduler {name} is not DDPM-like; direct-cms needs one of {', '.join(DDPM_LIKE_SCHEDULERS[:5])}"
            ", … (a beta schedule with epsilon-prediction)"
        )
    prediction = config.get("prediction_type", "epsilon")
    if prediction != "epsilon":
        raise UserError(
            f"{where} scheduler has prediction_type={prediction!r}; direct-cms needs an epsilon-prediction teacher "
            "(SD 2.x-v and other v-prediction models are not supported)"
        )
    if config.get("rescale_betas_zero_snr"):
        raise UserError(
            f"{where} scheduler uses a zero-terminal-SNR schedule (rescale_betas_zero_snr=true); the paper's x̂₀ = "
            "(x − σε̂)/α is undefined at α_T = 0, so such teachers are not supported"
        )


def _hub_kwargs(revision: str | None) -> dict[str, Any]:
    return {"revision": revision} if revision else {}


def _offline_hint() -> str:
    return f"HF_HUB_OFFLINE is {'set' if _offline() else 'not set'}"


def _read_config(source: str, subfolder: str | None, filename: str, revision: str | None) -> dict[str, Any]:
    path = Path(source)
    if path.is_dir():
        file = path / subfolder / filename if subfolder else path / filename
        if not file.is_file():
            raise FileNotFoundError(str(file))
        return json.loads(file.read_text())
    from huggingface_hub import hf_hub_download

    return json.loads(Path(hf_hub_download(source, filename, subfolder=subfolder, **_hub_kwargs(revision))).read_text())


def _hub_file_available(repo_id: str, filename: str, revision: str | None) -> bool:
    """Whether ``filename`` of the Hub model ``repo_id`` can be read: offline, from the local cache only (never the
    network); online, by downloading it (an unknown repository or a missing file is False).

    Raises:
        UserError: offline and the cache holds no copy of the repository's file, or online and the Hub cannot be
            reached; ``repo_id`` is not a valid Hub id.
    """
    from huggingface_hub import hf_hub_download, try_to_load_from_cache
    from huggingface_hub.errors import (
        EntryNotFoundError,
        HFValidationError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    try:
        if _offline():
            cached = try_to_load_from_cache(repo_id, filename, revision=revision)
            if isinstance(cached, str):
                return True
            if cached is None:  # no record at all: the repository was never downloaded
                raise UserError(_not_available(repo_id, "HF_HUB_OFFLINE is set and the local Hugging Face cache"))
            return False  # the cache knows this file does not exist in the repository
        hf_hub_download(repo_id, filename, **_hub_kwargs(revision))
        return True
    except HFValidationError as err:
        raise UserError(
            f"teacher {repo_id!r} is neither an existing local folder nor a valid Hugging Face id; pass the folder of "
            "a `direct-cms train-teacher` run or of a diffusers SD 1.5 / SDXL pipeline, or a Hub id such as "
            "stabilityai/stable-diffusion-xl-base-1.0"
        ) from err
    except LocalEntryNotFoundError as err:  # before its base EntryNotFoundError: online, Hub unreachable, no cache
        raise UserError(_not_available(repo_id, "the Hugging Face Hub cannot be reached and the local cache")) from err
    except (EntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError):
        return False


def _not_available(repo_id: str, where: str) -> str:
    return (
        f"teacher {repo_id!r} is not a local folder, and as a Hugging Face id its weights are not available: {where} "
        f"has no copy of it; download it first (`hf download {repo_id}` on a machine with network, same HF_HOME) or "
        "pass the local folder of the pipeline"
    )


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0")


def is_pipeline_source(source: str | Path, revision: str | None = None) -> bool:
    """True when ``source`` is a diffusers pipeline: a local folder with ``model_index.json``, or a Hub id whose
    ``model_index.json`` can be read (offline: from the cache). False for other local paths (built-in teachers)
    and for Hub models that are not pipelines (``unet/`` + ``scheduler/``).

    Raises:
        UserError: ``source`` is no local path and, as a Hub id, neither its ``model_index.json`` nor its
            ``scheduler/scheduler_config.json`` can be read (offline and not cached, the Hub unreachable, an
            unknown id): one line naming the id and how to provide the weights. Nothing is loaded before this.
    """
    path = Path(source).expanduser()
    if path.exists():
        return path.is_dir() and (path / "model_index.json").is_file()
    repo_id = str(source)
    if _hub_file_available(repo_id, "model_index.json", revision):
        return True
    if _hub_file_available(repo_id, "scheduler/scheduler_config.json", revision):
        return False  # a Hub model with unet/ and scheduler/: loaded as a built-in-style teacher
    raise UserError(
        f"teacher {repo_id!r} is neither an existing local folder nor a Hugging Face model with model_index.json or "
        "scheduler/scheduler_config.json; pass a `direct-cms train-teacher` folder or an SD 1.5 / SDXL pipeline "
        "(local folder, or a Hub id such as stabilityai/stable-diffusion-xl-base-1.0)"
    )


def check_teacher_source(source: str | Path, revision: str | None = None) -> tuple[str, dict[str, Any]]:
    """Read ``model_index.json`` and the scheduler config of a pipeline and refuse unusable teachers (no weights
    are loaded).

    Returns:
        ``(kind, scheduler_config)`` with kind ``"sd"`` or ``"sdxl"``.

    Raises:
        UserError: the configs cannot be read (offline, wrong id or path), the pipeline is not SD 1.5/SDXL-like,
            or :func:`check_scheduler_config` refuses its scheduler.
    """
    try:
        index = _read_config(str(source), None, "model_index.json", revision)
        scheduler_config = _read_config(str(source), "scheduler", "scheduler_config.json", revision)
    except (OSError, ValueError) as err:
        raise UserError(
            f"could not read the pipeline {str(source)!r} (model_index.json and scheduler/scheduler_config.json): "
            f"pass a local folder or a Hugging Face id such as stabilityai/stable-diffusion-xl-base-1.0 and download "
            f"it first ({_offline_hint()})"
        ) from err
    name = index.get("_class_name", "?")
    if name not in PIPELINE_KINDS:
        if "FlowMatch" in str(index.get("scheduler", "")):
            check_scheduler_config({"_class_name": index["scheduler"][1]})
        raise UserError(
            f"teacher pipeline {str(source)!r} is a {name}; direct-cms distils StableDiffusionPipeline (SD 1.5) or "
            "StableDiffusionXLPipeline (SDXL) teachers"
        )
    check_scheduler_config(scheduler_config)
    return PIPELINE_KINDS[name], scheduler_config


@dataclass
class TextTeacher:
    """A loaded text-to-image teacher.

    Attributes:
        pipe: the diffusers pipeline (its UNet is the teacher network; LoRA students adapt it in place).
        kind: ``"sd"`` or ``"sdxl"``.
        scheduler: the pipeline's own scheduler (ᾱ is read from it).
        source: what was loaded (absolute path for local folders).
    """

    pipe: Any
    kind: str
    scheduler: Any
    source: str

    @property
    def network(self) -> torch.nn.Module:
        return self.pipe.unet

    @property
    def vae(self) -> Any:
        return self.pipe.vae

    def grid(self, num_intervals: int) -> TimeGrid:
        """The N-interval grid on ᾱ of the teacher's scheduler."""
        return TimeGrid.from_scheduler(self.scheduler, num_intervals)

    @property
    def latent_channels(self) -> int:
        return int(self.pipe.unet.config.in_channels)

    @property
    def vae_scale_factor(self) -> int:
        return 2 ** (len(self.pipe.vae.config.block_out_channels) - 1)

    @torch.no_grad()
    def encode_prompts(
        self,
        prompts: list[str],
        time_ids: torch.Tensor | None = None,
        device: torch.device | str | None = None,
    ) -> TextCond:
        """Encode prompts with the pipeline's ``encode_prompt`` (no CFG).

        Args:
            prompts: ``B`` captions.
            time_ids: SDXL micro-conditioning ``(B, 6)`` or ``(6,)`` (default: square resolution of the UNet's
                sample size, no crop); ignored for SD 1.5.

        Returns:
            ``TextCond`` with ``prompt_embeds (B, L, D)`` (and ``pooled (B, P)``, ``time_ids (B, 6)`` for SDXL),
            float32 on ``device`` (default: the text encoder's).
        """
        device = device or self.pipe.text_encoder.device
        if self.kind == "sdxl":
            embeds, _, pooled, _ = self.pipe.encode_prompt(
                prompt=list(prompts), device=device, num_images_per_prompt=1, do_classifier_free_guidance=False
            )
            if time_ids is None:
                size = self.default_resolution()
                time_ids = sdxl_time_ids((size, size), (0, 0), (size, size))
            time_ids = time_ids.reshape(-1, 6).expand(len(prompts), 6).float().to(device)
            return TextCond(embeds.float(), pooled.float(), time_ids)
        embeds, _ = self.pipe.encode_prompt(
            prompt=list(prompts), device=device, num_images_per_prompt=1, do_classifier_free_guidance=False
        )
        return TextCond(embeds.float())

    @torch.no_grad()
    def null_cond(self, device: torch.device | str | None = None) -> TextCond:
        """The unconditional branch of batch 1, as diffusers builds it without a negative prompt: zeros for SDXL
        (``force_zeros_for_empty_prompt``), the empty-prompt embedding ``(1, L, D)`` for SD 1.5."""
        if self.kind == "sdxl" and self.pipe.config.get("force_zeros_for_empty_prompt", True):
            cond = self.encode_prompts([""], device=device)
            return TextCond(torch.zeros_like(cond.prompt_embeds), torch.zeros_like(cond.pooled), cond.time_ids)
        return self.encode_prompts([""], device=device)

    def default_resolution(self) -> int:
        """Pixel resolution the UNet was configured for (``sample_size × vae_scale_factor``)."""
        return int(self.pipe.unet.config.sample_size) * self.vae_scale_factor


def load_text_teacher(
    source: str | Path,
    *,
    vae: str | None = None,
    variant: str | None = None,
    revision: str | None = None,
    torch_dtype: torch.dtype | None = None,
) -> TextTeacher:
    """Load an SD 1.5 / SDXL pipeline as a teacher (configs are checked first, see :func:`check_teacher_source`).

    Args:
        source: Hugging Face id or local folder of a diffusers pipeline.
        vae: optional ``AutoencoderKL`` (id or folder, e.g. ``madebyollin/sdxl-vae-fp16-fix``) replacing the
            pipeline's VAE.
        variant: weight variant (``fp16``), passed to ``from_pretrained``.
        revision: Hub revision.
        torch_dtype: dtype to load weights in (default float32).

    Raises:
        UserError: refused by :func:`check_teacher_source`, or weights not loadable (offline, missing files).
    """
    kind, _ = check_teacher_source(source, revision)
    from diffusers import AutoencoderKL, DiffusionPipeline

    kwargs: dict[str, Any] = {**_hub_kwargs(revision)}
    if variant:
        kwargs["variant"] = variant
    if torch_dtype is not None:
        kwargs["torch_dtype"] = torch_dtype
    try:
        if vae:
            kwargs["vae"] = AutoencoderKL.from_pretrained(
                vae, **({"torch_dtype": torch_dtype} if torch_dtype is not None else {})
            )
        if kind == "sd":
            kwargs.update(safety_checker=None, requires_safety_checker=False, feature_extractor=None)
        pipe = DiffusionPipeline.from_pretrained(str(source), **kwargs)
    except (OSError, ValueError) as err:
        what = f"VAE {vae!r} or pipeline {str(source)!r}" if vae else f"pipeline {str(source)!r}"
        raise UserError(
            f"could not load the {what}{f' (variant {variant!r})' if variant else ''}: {str(err).splitlines()[0]} "
            f"({_offline_hint()})"
        ) from err
    pipe.set_progress_bar_config(disable=True)
    for module in (pipe.unet, pipe.vae, pipe.text_encoder, getattr(pipe, "text_encoder_2", None)):
        if module is not None:
            module.eval().requires_grad_(False)
    resolved = str(Path(source).resolve()) if Path(source).exists() else str(source)
    teacher = TextTeacher(pipe, kind, pipe.scheduler, resolved)
    teacher.grid(1)  # ᾱ readable from the scheduler
    return teacher
