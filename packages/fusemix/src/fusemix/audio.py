"""Waveforms: decoding, mono mix-down, resampling and pad/trim, the steps every audio encoder's input goes through.

Decoding uses ``soundfile`` (libsndfile, bundled in its wheels: WAV, FLAC, OGG/Vorbis, Opus, MP3 and more, offline
on any CPU). torchaudio 2.9+ delegates ``torchaudio.load`` to torchcodec, which needs FFmpeg's shared libraries on
the system; when those are present, files libsndfile cannot read (AAC, M4A, ...) are tried through
``torchaudio.load``. Resampling is torchaudio's own ``functional.resample`` (windowed sinc, its defaults).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import torch

from fusemix.data.items import UnreadableItemError


@dataclasses.dataclass(frozen=True)
class Waveform:
    """Decoded audio.

    Attributes:
        samples: ``(channels, T)`` float32 in [-1, 1].
        sample_rate: samples per second (Hz).
    """

    samples: torch.Tensor
    sample_rate: int

    @property
    def seconds(self) -> float:
        """Duration in seconds."""
        return self.samples.shape[-1] / self.sample_rate


def load_waveform(path: str | os.PathLike[str]) -> Waveform:
    """Decode an audio file into float32 samples, channels first.

    Raises:
        UnreadableItemError: the file cannot be decoded, or holds no samples.
    """
    import soundfile

    path = Path(path)
    try:
        data, rate = soundfile.read(str(path), dtype="float32", always_2d=True)  # T x C
        samples = torch.from_numpy(data.T.copy())
    except (RuntimeError, TypeError, ValueError, OSError) as err:  # soundfile.LibsndfileError is a RuntimeError
        samples, rate = _torchaudio_fallback(path, err)
    if samples.ndim != 2 or samples.shape[-1] == 0:
        raise UnreadableItemError(f"{path}: no audio samples")
    return Waveform(samples.float(), int(rate))


def _torchaudio_fallback(path: Path, first: BaseException) -> tuple[torch.Tensor, int]:
    import importlib.util

    if importlib.util.find_spec("torchcodec") is None:
        raise UnreadableItemError(f"{path}: {first}") from first
    import torchaudio

    try:
        samples, rate = torchaudio.load(str(path))
    except Exception as err:  # torchcodec raises RuntimeError/ImportError/ValueError with FFmpeg's own messages
        raise UnreadableItemError(f"{path}: {first}") from err
    return samples, rate


def to_mono(samples: torch.Tensor) -> torch.Tensor:
    """Mix ``(channels, T)`` down to ``(T,)`` by averaging the channels (a ``(T,)`` input is returned as is).

    Example:
        >>> to_mono(torch.tensor([[1.0, 0.0], [0.0, 1.0]])).tolist()
        [0.5, 0.5]
    """
    return samples if samples.ndim == 1 else samples.mean(dim=0)


def resample(samples: torch.Tensor, rate: int, target_rate: int) -> torch.Tensor:
    """Resample along the last axis with ``torchaudio.functional.resample`` (unchanged when the rates agree)."""
    if rate == target_rate:
        return samples
    import torchaudio.functional

    return torchaudio.functional.resample(samples, rate, target_rate)


def pad_or_trim(samples: torch.Tensor, n_samples: int) -> tuple[torch.Tensor, int]:
    """Keep the first ``n_samples`` samples of a ``(T,)`` signal, zero-padding a shorter one at the end.

    Returns:
        ``(n_samples,)`` samples and the number of them that are real audio (``min(T, n_samples)``).

    Example:
        >>> x, valid = pad_or_trim(torch.ones(3), 5)
        >>> x.tolist(), valid
        ([1.0, 1.0, 1.0, 0.0, 0.0], 3)
    """
    valid = min(samples.shape[-1], n_samples)
    out = torch.zeros(n_samples, dtype=samples.dtype)
    out[:valid] = samples[:valid]
    return out, valid


def prepare_waveform(wave: Waveform, target_rate: int, max_seconds: float | None) -> torch.Tensor:
    """Mono mix-down, resampling to ``target_rate`` and trimming to the first ``max_seconds`` (no padding: each
    encoder pads to its own window its own way).

    Returns:
        ``(T',)`` float32 samples at ``target_rate``.
    """
    mono = resample(to_mono(wave.samples), wave.sample_rate, target_rate)
    if max_seconds is not None:
        mono = mono[: int(round(max_seconds * target_rate))]
    return mono.contiguous()


def write_wav(path: str | os.PathLike[str], samples: torch.Tensor, sample_rate: int) -> None:
    """Write ``(T,)`` or ``(channels, T)`` float samples as a 16-bit PCM WAV file."""
    import soundfile

    data = samples if samples.ndim == 2 else samples[None]
    soundfile.write(str(path), data.T.clamp(-1, 1).numpy(), sample_rate, subtype="PCM_16")
