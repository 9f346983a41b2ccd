"""Loading one item file per modality: images (PIL) and audio (:class:`fusemix.audio.Waveform`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


class UnreadableItemError(OSError):
    """An item file exists but cannot be decoded."""


def load_item(path: Path, modality: str) -> Any:
    """Read one item as its encoder expects it.

    Args:
        path: the file.
        modality: ``image`` (returns an RGB PIL image) or ``audio`` (returns a :class:`fusemix.audio.Waveform`,
            channels and sample rate as stored; each encoder mixes down, resamples and pads or trims).

    Raises:
        UnreadableItemError: the file cannot be read or decoded.
        ValueError: no loader for ``modality``.
    """
    if modality == "image":
        from PIL import Image

        try:
            with Image.open(path) as image:
                image.load()
                return image.convert("RGB")
        except (OSError, ValueError, SyntaxError) as err:  # PIL raises all three for corrupt files
            raise UnreadableItemError(f"{path}: {err}") from err
    if modality == "audio":
        from fusemix.audio import load_waveform

        return load_waveform(path)
    raise ValueError(f"no item loader for modality {modality!r}")
