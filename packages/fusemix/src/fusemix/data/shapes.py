"""A procedural paired dataset for the demo: rendered shapes with template captions, five captions per image.

Each image shows one shape; its concept is (colour, shape, position, size), drawn with jitter in position, size
and colour on a noisy background. Five captions per image come from five templates (different wording and
synonyms), so text->image retrieval must generalise across phrasings. Written as PNG files plus a CSV manifest, so
the demo runs through the same manifest -> cache -> train path as user data.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from fusemix.data.manifest import write_manifest

COLOURS = {
    "red": (220, 40, 40),
    "green": (40, 170, 60),
    "blue": (40, 70, 220),
    "yellow": (230, 210, 40),
    "purple": (140, 60, 170),
    "orange": (240, 140, 30),
}
SHAPES = ("circle", "square", "triangle", "diamond")
SHAPE_WORDS = {"circle": "round disc", "square": "box", "triangle": "three-sided shape", "diamond": "rhombus"}
POSITIONS = {
    "top left": (0.27, 0.27),
    "top right": (0.73, 0.27),
    "bottom left": (0.27, 0.73),
    "bottom right": (0.73, 0.73),
    "centre": (0.5, 0.5),
}
POSITION_WORDS = {
    "top left": "upper left corner",
    "top right": "upper right corner",
    "bottom left": "lower left corner",
    "bottom right": "lower right corner",
    "centre": "middle",
}
SIZES = {"small": 0.14, "large": 0.26}
SIZE_WORDS = {"small": "tiny", "large": "big"}


def shape_captions(colour: str, shape: str, position: str, size: str) -> list[str]:
    """The five template captions of one concept (raw: cleaning happens in the text encoder).

    Example:
        >>> shape_captions("red", "circle", "top left", "small")[0]
        'A small red circle at the top left.'
    """
    at = "in the centre" if position == "centre" else f"at the {position}"
    return [
        f"A small {colour} {shape} {at}." if size == "small" else f"A large {colour} {shape} {at}.",
        f"{position.capitalize()}: a {colour} {shape}, {size}.",
        f"There is a {SIZE_WORDS[size]} {colour} {SHAPE_WORDS[shape]} in the {POSITION_WORDS[position]}.",
        f"{colour.capitalize()} {shape} ({size}) located {at}.",
        f"An image showing a {SIZE_WORDS[size]} {shape} coloured {colour} near the {POSITION_WORDS[position]}.",
    ]


def render_shape(colour: str, shape: str, position: str, size: str, rng: np.random.Generator, image_size: int = 64):
    """Draw one jittered shape on a noisy light background; returns a PIL RGB image."""
    from PIL import Image, ImageDraw

    background = rng.integers(200, 256, size=3)
    noise = rng.normal(0.0, 8.0, size=(image_size, image_size, 3))
    pixels = np.clip(background[None, None, :] + noise, 0, 255).astype(np.uint8)
    image = Image.fromarray(pixels, "RGB")
    draw = ImageDraw.Draw(image)
    cx, cy = POSITIONS[position]
    cx = (cx + rng.uniform(-0.05, 0.05)) * image_size
    cy = (cy + rng.uniform(-0.05, 0.05)) * image_size
    r = SIZES[size] * image_size * rng.uniform(0.85, 1.15)
    fill = tuple(int(np.clip(c + rng.integers(-25, 26), 0, 255)) for c in COLOURS[colour])
    if shape == "circle":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fill)
    elif shape == "square":
        draw.rectangle([cx - r, cy - r, cx + r, cy + r], fill=fill)
    elif shape == "triangle":
        draw.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=fill)
    else:
        draw.polygon([(cx, cy - r), (cx + r, cy), (cx, cy + r), (cx - r, cy)], fill=fill)
    return image


def make_shapes_dataset(
    out_dir: str | os.PathLike[str], split_sizes: dict[str, int], *, seed: int = 0, image_size: int = 64
) -> Path:
    """Render the dataset and write ``manifest.csv``.

    Args:
        out_dir: destination folder (``images/<split>/<id>.png`` and ``manifest.csv``).
        split_sizes: number of images per split, e.g. ``{"train": 1000, "val": 200, "test": 300}``.
        seed: seed of the concepts and the jitter.
        image_size: image side in pixels.

    Returns:
        The manifest path.
    """
    out_dir = Path(out_dir)
    rng = np.random.default_rng(seed)
    concepts = [(c, s, p, z) for c in COLOURS for s in SHAPES for p in POSITIONS for z in SIZES]
    rows = []
    for split, count in split_sizes.items():
        folder = out_dir / "images" / split
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(count):
            concept = concepts[int(rng.integers(len(concepts)))]
            item_id = f"{split}-{i:05d}"
            relative = f"images/{split}/{item_id}.png"
            render_shape(*concept, rng, image_size).save(out_dir / relative)
            for caption in shape_captions(*concept):
                rows.append({"item_id": item_id, "item_path": relative, "caption": caption, "split": split})
    manifest = out_dir / "manifest.csv"
    write_manifest(manifest, rows)
    return manifest
