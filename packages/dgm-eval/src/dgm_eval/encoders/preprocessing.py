"""Per-image preprocessing: PIL image in, ``(3, H, W)`` float32 tensor out, run inside DataLoader workers.

Every encoder owns one :class:`ImagePreprocessing` (a small frozen, picklable dataclass), so the exact resize
filter, antialias behaviour, target size, crop and normalisation are data that can be tested, printed and put into
cache keys. Three resize paths exist, because the encoders' reference code uses three:

- ``"pil"``: ``PIL.Image.resize`` on the uint8 RGB image (PIL filters always antialias when downsampling). This is
  what DINOv2, CLIP, MAE, data2vec, ConvNeXt and SwAV reference pipelines do.
- ``"clean"``: clean-fid's resizer: every channel is cast to float32, resized with PIL mode ``"F"`` (no uint8
  rounding in between), clipped to [0, 255] and divided by 255 (``--clean-resize``).
- ``"tensor"``: ``to_tensor`` to [0, 1] at the native size, then ``torch.nn.functional.interpolate`` with
  ``align_corners=False`` and no antialias: the TF-FID Inception pipeline of pytorch-fid (bilinear to 299x299).
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

#: ImageNet channel statistics (torchvision / timm / DINOv2 / MAE / ConvNeXt / SwAV).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: OpenAI CLIP channel statistics (also used by open_clip's LAION/DataComp models).
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

_PIL_FILTERS = {
    "bicubic": Image.Resampling.BICUBIC,
    "bilinear": Image.Resampling.BILINEAR,
    "nearest": Image.Resampling.NEAREST,
    "lanczos": Image.Resampling.LANCZOS,
    "box": Image.Resampling.BOX,
}

ResizeMode = Literal["pil", "clean", "tensor"]


def _pil_size(size: tuple[int, int]) -> tuple[int, int]:
    """(H, W) -> PIL's (W, H)."""
    return (size[1], size[0])


def clean_resize(image: Image.Image, size: tuple[int, int], filter: str = "bicubic") -> np.ndarray:
    """clean-fid's resize: each channel as float32 through PIL mode ``"F"``, clipped to [0, 255].

    Args:
        image: an RGB PIL image.
        size: target ``(H, W)``.
        filter: PIL filter name (``"bicubic"`` in clean-fid).

    Returns:
        ``(H, W, 3)`` float32 array in [0, 255] (not rounded).
    """
    arr = np.asarray(image.convert("RGB"), dtype=np.float32)
    channels = []
    for c in range(3):
        channel = Image.fromarray(arr[:, :, c], mode="F")
        channel = channel.resize(_pil_size(size), resample=_PIL_FILTERS[filter])
        channels.append(np.asarray(channel, dtype=np.float32))
    return np.clip(np.stack(channels, axis=2), 0.0, 255.0)


@dataclasses.dataclass(frozen=True)
class ImagePreprocessing:
    """One encoder's preprocessing, from an RGB PIL image of any size to a ``(3, H, W)`` float32 tensor.

    Steps, in order: resize of the shorter side to ``shorter_side`` (aspect ratio kept) or resize to ``size``
    (aspect ratio not kept), when either is given; centre crop to ``crop`` when given, scale to [0, 1], and
    ``(x - mean) / std`` when ``mean``/``std`` are given.

    Attributes:
        size: target ``(H, W)`` of the direct resize, or ``None``.
        mode: ``"pil"``, ``"clean"`` or ``"tensor"`` (see the module docstring).
        filter: ``"bicubic"``, ``"bilinear"``, ... (PIL filters; ``"tensor"`` mode supports bilinear/bicubic).
        antialias: only for ``"tensor"`` mode: the ``antialias`` flag of ``F.interpolate``.
        shorter_side: resize the shorter side to this many pixels first (torchvision ``Resize(int)``), or ``None``.
        crop: centre crop ``(H, W)`` after resizing, or ``None``.
        mean: per-channel mean subtracted after scaling to [0, 1], or ``None``.
        std: per-channel standard deviation divided by, or ``None``.
    """

    size: tuple[int, int] | None = None
    mode: ResizeMode = "pil"
    filter: str = "bicubic"
    antialias: bool = False
    shorter_side: int | None = None
    crop: tuple[int, int] | None = None
    mean: tuple[float, float, float] | None = None
    std: tuple[float, float, float] | None = None

    def __post_init__(self) -> None:
        if self.mode not in ("pil", "clean", "tensor"):
            raise ValueError(f"mode must be 'pil', 'clean' or 'tensor', got {self.mode!r}")
        if self.filter not in _PIL_FILTERS:
            raise ValueError(f"filter must be one of {sorted(_PIL_FILTERS)}, got {self.filter!r}")
        if self.mode == "tensor" and self.filter not in ("bilinear", "bicubic", "nearest"):
            raise ValueError(f"tensor mode supports bilinear, bicubic and nearest, got {self.filter!r}")
        if self.size is not None and self.shorter_side is not None:
            raise ValueError("give either size or shorter_side, not both")
        if (self.mean is None) != (self.std is None):
            raise ValueError("mean and std must be given together")

    def describe(self) -> str:
        """A stable one-line description (used in ``dgm-eval encoders`` and in cache keys)."""
        parts = []
        if self.shorter_side is not None:
            parts.append(f"shorter side to {self.shorter_side} ({self._resize_words()})")
        if self.size is not None:
            parts.append(f"resize to {self.size[0]}x{self.size[1]} ({self._resize_words()})")
        if self.crop is not None:
            parts.append(f"center crop {self.crop[0]}x{self.crop[1]}")
        parts.append("scale to [0,1]")
        if self.mean is not None:
            mean = ",".join(f"{m:g}" for m in self.mean)
            std = ",".join(f"{s:g}" for s in self.std or ())
            parts.append(f"normalize mean=({mean}) std=({std})")
        return "; ".join(parts)

    def _resize_words(self) -> str:
        if self.mode == "pil":
            return f"PIL {self.filter}"
        if self.mode == "clean":
            return f"clean-fid float32 PIL {self.filter}"
        return f"torch {self.filter}, antialias={self.antialias}, align_corners=False"

    def __call__(self, image: Image.Image) -> torch.Tensor:
        """Preprocess one image.

        Args:
            image: a PIL image (converted to RGB if it is not), or an ``(H, W, 3)`` uint8 array.

        Returns:
            ``(3, H, W)`` float32 tensor.
        """
        if isinstance(image, np.ndarray):
            image = Image.fromarray(image)
        if image.mode != "RGB":
            image = image.convert("RGB")
        if self.mode == "tensor":
            return self._tensor_path(image)
        if self.shorter_side is not None:
            target = self._shorter_side_size(image.height, image.width)
        else:
            target = self.size
        resized = image if target is None else self._resize(image, target)
        if isinstance(resized, Image.Image):
            x = torch.from_numpy(np.array(resized, dtype=np.uint8)).permute(2, 0, 1).float().div_(255.0)  # 3 x H x W
        else:  # clean-fid path: float32 in [0, 255], never rounded to uint8
            x = torch.from_numpy(np.ascontiguousarray(resized)).permute(2, 0, 1).float().div_(255.0)
        if self.crop is not None:
            x = _center_crop(x, self.crop)
        return self._normalize(x)

    def _shorter_side_size(self, height: int, width: int) -> tuple[int, int]:
        # torchvision.transforms.Resize(int) rule: the shorter side becomes `shorter_side`, the longer is truncated.
        short, long = (height, width) if height <= width else (width, height)
        new_short, new_long = self.shorter_side, int(self.shorter_side * long / short)
        return (new_short, new_long) if height <= width else (new_long, new_short)

    def _resize(self, image: Image.Image, size: tuple[int, int]) -> Image.Image | np.ndarray:
        if self.mode == "clean":
            return clean_resize(image, size, self.filter)
        if (image.height, image.width) == tuple(size):
            return image
        return image.resize(_pil_size(size), resample=_PIL_FILTERS[self.filter])

    def _tensor_path(self, image: Image.Image) -> torch.Tensor:
        x = torch.from_numpy(np.array(image, dtype=np.uint8)).permute(2, 0, 1).float().div_(255.0)  # 3 x H x W
        if self.size is not None and tuple(x.shape[1:]) != tuple(self.size):
            kwargs = {"align_corners": False} if self.filter != "nearest" else {}
            antialias = {"antialias": self.antialias} if self.filter != "nearest" else {}
            x = F.interpolate(x[None], size=self.size, mode=self.filter, **kwargs, **antialias)[0]
        if self.crop is not None:
            x = _center_crop(x, self.crop)
        return self._normalize(x)

    def _normalize(self, x: torch.Tensor) -> torch.Tensor:
        if self.mean is None:
            return x.contiguous()
        mean = torch.tensor(self.mean, dtype=x.dtype).view(3, 1, 1)
        std = torch.tensor(self.std, dtype=x.dtype).view(3, 1, 1)
        return ((x - mean) / std).contiguous()


def _center_crop(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """torchvision's ``CenterCrop`` rule (top = round((H - h) / 2)) on a ``(3, H, W)`` tensor."""
    height, width = x.shape[-2:]
    crop_h, crop_w = size
    if crop_h > height or crop_w > width:
        raise ValueError(f"cannot center-crop {crop_h}x{crop_w} from a {height}x{width} image")
    top = int(round((height - crop_h) / 2.0))
    left = int(round((width - crop_w) / 2.0))
    return x[..., top : top + crop_h, left : left + crop_w]
