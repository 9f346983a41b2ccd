"""The ``pixel`` encoder: raw pixels at a fixed small size, flattened (3 * 32 * 32 = 3072-d in [0, 1]).

The public dgm-eval code global-average-pools this representation down to 3 numbers (the mean colour); here the
flattened pixels are the features, as the encoder's name promises.
"""

from __future__ import annotations

import torch

from dgm_eval.encoders.base import Encoder, EncoderInfo, reject_depth, reject_weights
from dgm_eval.encoders.preprocessing import ImagePreprocessing

#: side of the square the images are resized to.
PIXEL_SIZE = 32

INFO = EncoderInfo(
    name="pixel",
    dim=3 * PIXEL_SIZE * PIXEL_SIZE,
    weight_source="none (identity)",
    preprocessing=ImagePreprocessing(size=(PIXEL_SIZE, PIXEL_SIZE), mode="pil", filter="bicubic").describe(),
    notes="flattened RGB pixels in [0,1], channel-major (C, H, W); --clean-resize uses clean-fid's resizer",
)


class PixelEncoder(Encoder):
    """Flattened pixels of the image resized to ``size`` x ``size``.

    Example:
        >>> from PIL import Image
        >>> enc = PixelEncoder()
        >>> enc(enc.transform(Image.new("RGB", (50, 40), (255, 0, 0)))[None]).shape
        torch.Size([1, 3072])
    """

    name = "pixel"

    def __init__(self, size: int = PIXEL_SIZE, *, clean_resize: bool = False) -> None:
        super().__init__()
        self.input_size = (size, size)
        self.dim = 3 * size * size
        self.preprocessing = ImagePreprocessing(size=(size, size), mode="clean" if clean_resize else "pil")
        self.freeze()

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1)  # N x 3*size*size


def build(arch: str | None, *, weights: str | None, depth: int, clean_resize: bool, seed: int) -> PixelEncoder:
    """Registry builder (no weights, no depth)."""
    reject_weights("pixel", weights)
    reject_depth("pixel", depth)
    return PixelEncoder(clean_resize=clean_resize)
