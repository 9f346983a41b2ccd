"""Audio -> image: align audio latents into a frozen diffusers text-to-image pipeline's text space, then generate.

The generator is never retrained. What is aligned, and how it reaches the UNet:

1. **Target space.** Each caption's ``prompt_embeds`` from the pipeline's own ``encode_prompt`` (``(L, D)``, the
   sequence the UNet's cross-attention reads), averaged over the ``L`` token positions: one ``D``-d vector per
   caption, cached like any text latent (encoder ``diffusers:<pipeline>``).
2. **Training.** Only the audio adapter trains (FuseMix + InfoNCE against those vectors); the text side is the
   identity (``TrainConfig.align_to_text``), so the adapter's output lives in the pipeline's space. Its direction
   is what InfoNCE fixes; its length is set to the mean norm of the training captions' vectors (stored in the
   checkpoint).
3. **Generation.** The aligned vector ``e`` is tiled over the ``L`` positions: ``prompt_embeds = e`` repeated
   ``(1, L, D)``, and the unconditional branch is the empty prompt's vector tiled the same way. With identical keys
   and values at every position, cross-attention returns the value of ``e``: the UNet is conditioned on one
   embedding, as the paper's generator (conditioned on one CLIP embedding) was, through the standard
   ``prompt_embeds`` input of the pipeline.

This mapping is a choice documented here, not the paper's code (which is not public). A Stable Diffusion UNet was
trained on per-token sequences, not tiled ones; image quality with real weights is not measured here.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path
from typing import Any

import torch

from fusemix.captions import clean_caption
from fusemix.encoders.spec import EncoderSpec
from sixlab_shared import UserError

logger = logging.getLogger(__name__)


def load_pipeline(location: str, device: torch.device | str = "cpu") -> Any:
    """``diffusers.DiffusionPipeline.from_pretrained`` on a folder or hub id, on ``device``, progress bar off.

    Raises:
        UserError: the pipeline cannot be loaded (offline without a local copy, not a pipeline folder).
    """
    try:
        from diffusers import DiffusionPipeline
    except ImportError as err:
        raise UserError("audio -> image needs diffusers: pip install 'fusemix[generate]'") from err

    from fusemix.encoders.huggingface import _hub_reachable

    local_only = not Path(location).is_dir() and (_offline() or not _hub_reachable())
    try:
        pipe = DiffusionPipeline.from_pretrained(location, local_files_only=local_only)
    except (OSError, ValueError) as err:
        text = str(err).strip()
        reason = text.splitlines()[0] if text else type(err).__name__
        raise UserError(
            f"could not load the diffusers pipeline {location!r} ({reason}); pass a local folder saved with "
            "save_pretrained, or download it once while online"
        ) from err
    if not hasattr(pipe, "encode_prompt"):
        raise UserError(f"{location!r} is a {type(pipe).__name__}, not a text-to-image pipeline with encode_prompt")
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").upper() in ("1", "ON", "YES", "TRUE")


@torch.no_grad()
def pooled_prompt_embeds(pipe: Any, prompts: list[str]) -> torch.Tensor:
    """The pipeline's ``prompt_embeds`` for ``prompts``, averaged over the token positions: ``(B, D)`` float32."""
    device = pipe._execution_device
    embeds = pipe.encode_prompt(prompts, device, 1, False)[0]  # B x L x D
    return embeds.float().mean(dim=1)


class PipelineTextEncoder:
    """The ``diffusers`` text backend: ``encode(captions) -> (B, D)`` float32 CPU latents (see the module docstring).

    Args:
        spec: a ``diffusers`` spec (``model``: pipeline folder or hub id).
        device: where the text encoder runs.
    """

    def __init__(self, spec: EncoderSpec, device: torch.device | str = "cpu") -> None:
        self.spec = spec
        self.pipe = load_pipeline(spec.model, device)
        self.dim = int(pooled_prompt_embeds(self.pipe, [""]).shape[1])

    def encode(self, inputs: list[str]) -> torch.Tensor:
        """Pooled prompt embeddings of the (cleaned) captions."""
        texts = [clean_caption(t) if self.spec.clean_captions else t for t in inputs]
        return pooled_prompt_embeds(self.pipe, texts).cpu()

    def close(self) -> None:
        """Drop the pipeline."""
        self.__dict__.pop("pipe", None)


def conditioning(pipe: Any, aligned: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``prompt_embeds`` and ``negative_prompt_embeds`` the pipeline receives for one aligned vector.

    Args:
        pipe: the frozen pipeline.
        aligned: ``(D,)`` vector in the pooled prompt-embedding space (already at its target length).

    Returns:
        Two ``(1, L, D)`` tensors on the pipeline's device and dtype: ``aligned`` and the empty prompt's pooled
        vector, each tiled over the ``L = tokenizer.model_max_length`` positions.
    """
    length = int(pipe.tokenizer.model_max_length)
    dtype = pipe.text_encoder.dtype
    device = pipe._execution_device
    positive = aligned.to(device, dtype)[None, None, :].expand(1, length, -1).contiguous()
    negative = pooled_prompt_embeds(pipe, [""]).to(device, dtype)[:, None, :].expand(1, length, -1).contiguous()
    return positive, negative


@dataclasses.dataclass
class GenerateConfig:
    """Settings of one audio -> image generation."""

    steps: int = 30
    """Denoising steps."""
    guidance_scale: float = 7.5
    """Classifier-free guidance scale (1 turns guidance off)."""
    seed: int = 0
    """Seed of the initial noise."""
    height: int | None = None
    """Image height in pixels (default: the pipeline's)."""
    width: int | None = None
    """Image width in pixels (default: the pipeline's)."""


def aligned_embedding(checkpoint: str | os.PathLike[str], audio: str | os.PathLike[str], device: Any) -> torch.Tensor:
    """Encode one clip with the checkpoint's audio encoder and map it through its adapter: ``(D,)`` at the stored
    target length.

    Raises:
        UserError: not an aligned-to-text checkpoint, an unreadable clip, latent sizes that differ.
    """
    from fusemix.checkpoint import checkpoint_encoders, load_fusion_checkpoint
    from fusemix.data.items import UnreadableItemError, load_item
    from fusemix.encoders import load_encoder

    model, state = load_fusion_checkpoint(checkpoint, device=device)
    item_spec, text_spec = checkpoint_encoders(state)
    if not model.text_adapter.config.identity or text_spec.backend != "diffusers" or "text_norm" not in state:
        raise UserError(
            f"{str(checkpoint)!r} was not trained into a pipeline's text space; train it with --align-to-text on "
            "latents cached with --text-encoder diffusers:<pipeline>"
        )
    if item_spec.modality != "audio":
        raise UserError(f"{str(checkpoint)!r} aligns {item_spec.modality}, not audio")
    try:
        clip = load_item(Path(audio), "audio")
    except UnreadableItemError as err:
        raise UserError(f"--audio {str(audio)!r} cannot be read as audio ({err})") from err
    encoder = load_encoder(item_spec, device)
    try:
        latent = encoder.encode([clip])
    finally:
        encoder.close()
    if latent.shape[1] != model.item_adapter.config.in_dim:
        raise UserError(
            f"the audio encoder gives {latent.shape[1]}-d latents but the checkpoint's adapter takes "
            f"{model.item_adapter.config.in_dim}-d"
        )
    with torch.no_grad():
        direction = model.encode_items(latent.to(device))[0]  # unit length
    return direction * float(state["text_norm"])


def generate_from_audio(
    checkpoint: str | os.PathLike[str],
    audio: str | os.PathLike[str],
    pipeline: str,
    config: GenerateConfig | None = None,
    *,
    device: torch.device | str = "cpu",
    pipe: Any = None,
) -> Any:
    """Generate an image from a clip with a frozen pipeline: the ``generate`` job.

    Args:
        checkpoint: trained with ``align_to_text`` on ``diffusers:<pipeline>`` text latents.
        audio: the clip.
        pipeline: the pipeline folder or hub id (the same pipeline as the cached text latents).
        config: generation settings.
        device: where everything runs.
        pipe: an already loaded pipeline (tests, repeated calls).

    Returns:
        The pipeline's first image (PIL).

    Raises:
        UserError: any error of :func:`aligned_embedding`, a pipeline that cannot be loaded, or whose text space
            has another size than the checkpoint's.
    """
    config = config or GenerateConfig()
    if config.steps < 1:
        raise UserError(f"--steps must be >= 1, got {config.steps}")
    if not 0 <= config.seed < 2**32:
        raise UserError(f"--seed must be in [0, 2**32), got {config.seed}")
    if not Path(audio).is_file():
        raise UserError(f"--audio {str(audio)!r} does not exist or is not a file")
    aligned = aligned_embedding(checkpoint, audio, device)
    pipe = pipe if pipe is not None else load_pipeline(pipeline, device)
    positive, negative = conditioning(pipe, aligned)
    if positive.shape[-1] != aligned.shape[0]:
        raise UserError(f"the pipeline's text space is {positive.shape[-1]}-d, the checkpoint's {aligned.shape[0]}-d")
    generator = torch.Generator(device="cpu").manual_seed(config.seed)
    result = pipe(
        prompt_embeds=positive, negative_prompt_embeds=negative, num_inference_steps=config.steps,
        guidance_scale=config.guidance_scale, generator=generator, height=config.height, width=config.width,
    )  # fmt: skip
    return result.images[0]
