"""Fixed seeded "frozen" encoders for synthetic data (reference §5): no weights to download, same latents on every
machine for the same seed.

- ``conv`` (images): a random 3-layer conv net (ReLU, strides 2) on a ``image_size`` RGB input, 4x4 average-pooled
  spatial map flattened, then a random linear map to ``dim``. Random conv features keep colour and position.
- ``mel`` (audio): the Whisper-style front end of reference §5 (mono, resampled to ``sample_rate``, the first
  ``max_seconds`` zero-padded to that length; log-mel with 80 bins, 25 ms window, 10 ms hop), the mean and the max
  over the *valid* frames only (the padding never enters), then a random linear map to ``dim``.
- ``bow`` (text): hashed bag of words and word bigrams (CRC32, 4096 buckets) of the cleaned caption, L2-normalised,
  through a random linear map to ``dim``.
"""

from __future__ import annotations

import math
import zlib
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from fusemix.captions import clean_caption
from fusemix.encoders.spec import EncoderSpec
from sixlab_shared import make_generator

_BUCKETS = 4096
_MELS = 80


class _ConvNet(nn.Module):
    def __init__(self, dim: int, generator: torch.Generator) -> None:
        super().__init__()
        self.convs = nn.ModuleList(
            [nn.Conv2d(3, 32, 5, stride=2, padding=2), nn.Conv2d(32, 64, 3, stride=2, padding=1),
             nn.Conv2d(64, 64, 3, stride=2, padding=1)]
        )  # fmt: skip
        self.proj = nn.Linear(64 * 16, dim)
        for module in [*self.convs, self.proj]:
            nn.init.kaiming_normal_(module.weight, nonlinearity="relu", generator=generator)
            nn.init.uniform_(module.bias, -0.1, 0.1, generator=generator)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for conv in self.convs:
            x = F.relu(conv(x))
        x = F.adaptive_avg_pool2d(x, 4).flatten(1)  # B x 1024
        return self.proj(x)


class FrozenEncoder:
    """A ``frozen`` backend encoder: ``encode(inputs) -> (B, dim)`` float32 on CPU.

    Args:
        spec: an :class:`EncoderSpec` with ``backend="frozen"`` and ``model`` ``conv`` (images) or ``bow`` (text).
        device: where the computation runs.

    Raises:
        ValueError: unknown ``model`` for the spec's modality.
    """

    def __init__(self, spec: EncoderSpec, device: torch.device | str = "cpu") -> None:
        self.spec = spec
        self.device = torch.device(device)
        self.dim = spec.dim or 256
        generator = make_generator(spec.seed)
        if spec.modality == "image" and spec.model == "conv":
            self.net = _ConvNet(self.dim, generator).eval().requires_grad_(False).to(self.device)
        elif spec.modality == "text" and spec.model == "bow":
            self.projection = (torch.randn(_BUCKETS, self.dim, generator=generator) / _BUCKETS**0.5).to(self.device)
        elif spec.modality == "audio" and spec.model == "mel":
            import torchaudio

            self.sample_rate = spec.sample_rate or 16000
            self.mel = torchaudio.transforms.MelSpectrogram(
                self.sample_rate, n_fft=int(0.025 * self.sample_rate), hop_length=int(0.010 * self.sample_rate),
                n_mels=_MELS,
            ).to(self.device)  # fmt: skip
            self.projection = (torch.randn(2 * _MELS, self.dim, generator=generator) / (2 * _MELS) ** 0.5).to(
                self.device
            )
        else:
            raise ValueError(f"no frozen {spec.modality} encoder named {spec.model!r}; use 'conv', 'mel' or 'bow'")

    def _bow(self, caption: str) -> torch.Tensor:
        text = clean_caption(caption) if self.spec.clean_captions else caption
        words = text.split()
        tokens = words + [f"{a} {b}" for a, b in zip(words, words[1:], strict=False)]
        counts = torch.zeros(_BUCKETS)
        for token in tokens:
            counts[zlib.crc32(token.encode()) % _BUCKETS] += 1.0
        return counts / counts.norm().clamp_min(1e-12)

    def _mel_pool(self, waves: list[Any]) -> torch.Tensor:
        from fusemix.audio import pad_or_trim, prepare_waveform

        seconds = self.spec.max_seconds or max(w.seconds for w in waves)
        n_samples = int(round(seconds * self.sample_rate))
        batch, valid = [], []
        for wave in waves:
            samples, n_valid = pad_or_trim(prepare_waveform(wave, self.sample_rate, seconds), n_samples)
            batch.append(samples)
            valid.append(n_valid)
        mel = torch.log(self.mel(torch.stack(batch).to(self.device)) + 1e-6)  # B x mels x frames
        hop = self.mel.hop_length
        frames = torch.tensor([max(1, -(-v // hop)) for v in valid], device=self.device)  # ceil(valid / hop)
        mask = torch.arange(mel.shape[-1], device=self.device)[None, :] < frames[:, None]  # B x frames
        mean = (mel * mask[:, None]).sum(-1) / frames[:, None]
        peak = mel.masked_fill(~mask[:, None], -math.inf).amax(-1)
        return torch.cat([mean, peak], dim=1)  # B x 2 mels

    @torch.no_grad()
    def encode(self, inputs: list[Any]) -> torch.Tensor:
        """Encode PIL images (image), :class:`fusemix.audio.Waveform` clips (audio) or caption strings (text) into
        ``(B, dim)`` float32 CPU latents."""
        if self.spec.modality == "audio":
            return (self._mel_pool(inputs) @ self.projection).float().cpu()
        if self.spec.modality == "text":
            bow = torch.stack([self._bow(c) for c in inputs]).to(self.device)  # B x 4096
            return (bow @ self.projection).float().cpu()
        size = self.spec.image_size
        arrays = [np.asarray(img.convert("RGB").resize((size, size)), dtype=np.float32) / 255.0 for img in inputs]
        x = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).to(self.device)  # B x 3 x S x S
        return self.net(x).float().cpu()

    def close(self) -> None:
        """Release the weights."""
        for name in ("net", "projection", "mel"):
            self.__dict__.pop(name, None)
