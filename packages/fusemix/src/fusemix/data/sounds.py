"""A procedural audio–caption dataset for the audio demo: synthetic clips with template captions, five per clip.

Each clip's concept is (sound, pitch, loudness), 75 in all: a steady tone, a rising or falling chirp, a band of
noise, or a train of short beeps; five pitches from very low (110 Hz) to very high (2.8 kHz); quiet, moderate or
loud. Every clip is jittered in duration (1-3 s),
pitch (±6 %), level, onset and background noise, so no two clips are identical. Five template captions per clip
use different wording and synonyms. Written as 16 kHz mono WAV files plus a CSV manifest, so the audio demo runs
through the same manifest -> cache -> train path as a user's AudioCaps or Clotho files.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from fusemix.audio import write_wav
from fusemix.data.manifest import write_manifest

SAMPLE_RATE = 16000
SOUNDS = ("tone", "rising chirp", "falling chirp", "noise", "beeps")
SOUND_WORDS = {
    "tone": "steady hum",
    "rising chirp": "upward sweep",
    "falling chirp": "downward sweep",
    "noise": "hiss",
    "beeps": "series of pips",
}
PITCHES = {"very low": 110.0, "low": 247.0, "middle": 554.0, "high": 1244.0, "very high": 2794.0}
PITCH_WORDS = {"very low": "rumbling", "low": "deep", "middle": "medium", "high": "bright", "very high": "shrill"}
LEVELS = {"quiet": 0.03, "moderate": 0.15, "loud": 0.6}
LEVEL_WORDS = {"quiet": "soft", "moderate": "gentle", "loud": "strong"}


def sound_captions(sound: str, pitch: str, level: str) -> list[str]:
    """The five template captions of one concept.

    Example:
        >>> sound_captions("tone", "low", "quiet")[0]
        'A quiet low tone.'
    """
    return [
        f"A {level} {pitch} {sound}.",
        f"{level.capitalize()} sound: a {sound} at {pitch} pitch.",
        f"Someone plays a {LEVEL_WORDS[level]} {PITCH_WORDS[pitch]} {SOUND_WORDS[sound]}.",
        f"{pitch.capitalize()}-pitched {sound}, {level}.",
        f"A recording of a {PITCH_WORDS[pitch]} {SOUND_WORDS[sound]} that is {LEVEL_WORDS[level]}.",
    ]


def render_sound(sound: str, pitch: str, level: str, rng: np.random.Generator) -> np.ndarray:
    """Synthesize one jittered clip: ``(T,)`` float32 at :data:`SAMPLE_RATE`, 1-3 s long."""
    seconds = rng.uniform(1.0, 3.0)
    n = int(seconds * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    f0 = PITCHES[pitch] * rng.uniform(0.94, 1.06)
    if sound == "tone":
        signal = np.sin(2 * np.pi * f0 * t)
    elif sound in ("rising chirp", "falling chirp"):
        lo, hi = (f0 / 2, f0 * 2) if sound == "rising chirp" else (f0 * 2, f0 / 2)
        freq = lo * (hi / lo) ** (t / seconds)  # exponential sweep over the clip
        signal = np.sin(2 * np.pi * np.cumsum(freq) / SAMPLE_RATE)
    elif sound == "noise":
        spectrum = np.fft.rfft(rng.standard_normal(n))
        freqs = np.fft.rfftfreq(n, 1 / SAMPLE_RATE)
        spectrum *= np.exp(-0.5 * (np.log2(np.maximum(freqs, 1.0) / f0) / 0.35) ** 2)  # a band around f0
        signal = np.fft.irfft(spectrum, n)
        signal /= np.abs(signal).max() + 1e-9
    else:  # beeps: 80 ms pips every 250 ms
        gate = (t % 0.25) < 0.08
        signal = np.sin(2 * np.pi * f0 * t) * gate
    fade = np.minimum(1.0, np.minimum(t, seconds - t) / 0.01)  # 10 ms fades, no clicks
    signal = signal * fade * LEVELS[level] * rng.uniform(0.8, 1.25)
    onset = np.zeros(int(rng.uniform(0.0, 0.2) * SAMPLE_RATE))
    clip = np.concatenate([onset, signal]) + rng.normal(0.0, 0.003, size=onset.size + n)
    return clip.astype(np.float32)


def make_sounds_dataset(out_dir: str | os.PathLike[str], split_sizes: dict[str, int], *, seed: int = 0) -> Path:
    """Synthesize the dataset and write ``manifest.csv``.

    Args:
        out_dir: destination folder (``audio/<split>/<id>.wav`` and ``manifest.csv``).
        split_sizes: clips per split, e.g. ``{"train": 600, "val": 100, "test": 200}``.
        seed: seed of the concepts and the jitter.

    Returns:
        The manifest path.
    """
    out_dir = Path(out_dir)
    rng = np.random.default_rng(seed)
    concepts = [(s, p, v) for s in SOUNDS for p in PITCHES for v in LEVELS]
    rows = []
    for split, count in split_sizes.items():
        folder = out_dir / "audio" / split
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(count):
            concept = concepts[int(rng.integers(len(concepts)))]
            item_id = f"{split}-{i:05d}"
            relative = f"audio/{split}/{item_id}.wav"
            write_wav(out_dir / relative, torch.from_numpy(render_sound(*concept, rng)), SAMPLE_RATE)
            for caption in sound_captions(*concept):
                rows.append({"item_id": item_id, "item_path": relative, "caption": caption, "split": split})
    manifest = out_dir / "manifest.csv"
    write_manifest(manifest, rows)
    return manifest
