"""Loading one item file per modality (images now; audio adds a loader here, not a new training path)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


class UnreadableItemError(OSError):
    """An item file exists but cannot be decoded."""


def load_item(path: Path, modality: str) -> Any:
    """Read one item as its encoder expects it.

    Args:
        path: the file.
        modality: ``image`` (returns an RGB PIL image).

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
    raise ValueError(f"no item loader for modality {modality!r}")
