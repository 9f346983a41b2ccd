"""Captioned image data for text-to-image teachers: reading, the paper's transform, VAE/text encoding, cache.

A data folder is either a ``datasets`` *imagefolder* (``metadata.jsonl`` lines ``{"file_name": ..., "text": ...}``;
the caption column may also be ``caption`` or ``prompt``) or images with a caption sidecar each (``cat.png`` +
``cat.txt``). The transform is the paper's: resize the shorter side to the resolution, random crop, no flip; SDXL
gets the micro-conditioning ``(original h, w, crop top, left, resolution, resolution)``. Latents are
``vae.encode(pixels).latent_dist.sample() × scaling_factor``.

:class:`TextBatchSource` draws batch ``(step, micro, process)`` as a pure function of the seed (rows, crops, VAE
noise, ε and grid indices from one generator), so both objectives see the same stream and a resumed run continues
exactly. With a cache (:func:`build_cache`, safetensors keyed by teacher, VAE, resolution and the data), the crop of
each image is drawn once, the VAE posterior (mean, std) and the prompt embeddings are stored, and the VAE and text
encoders are not needed during training.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from direct_cms.conditioning import TextCond, sdxl_time_ids
from direct_cms.data import Batch
from sixlab_shared import UserError, derive_seed, make_generator

logger = logging.getLogger(__name__)

__all__ = ["CaptionedImages", "TextBatchSource", "build_cache", "load_captioned_folder", "prepare_image"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
CAPTION_COLUMNS = ("text", "caption", "prompt")


@dataclass
class CaptionedImages:
    """Image files and their captions (same order)."""

    files: list[Path]
    captions: list[str]

    def __len__(self) -> int:
        return len(self.files)

    def fingerprint(self) -> str:
        """Hash of the file names, sizes and captions (part of the cache key)."""
        digest = hashlib.sha256()
        for file, caption in zip(self.files, self.captions, strict=True):
            digest.update(f"{file.name}\0{file.stat().st_size}\0{caption}\n".encode())
        return digest.hexdigest()[:16]


def load_captioned_folder(folder: str | Path) -> CaptionedImages:
    """Read an imagefolder with ``metadata.jsonl`` (in the folder or its ``train/`` split) or images with ``.txt``
    caption sidecars.

    Raises:
        UserError: not a folder, no images, a metadata line without file name or caption, a missing image file,
            or an image without caption.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"--data {str(folder)!r} is not a folder of captioned images")
    if not (folder / "metadata.jsonl").is_file() and (folder / "train" / "metadata.jsonl").is_file():
        folder = folder / "train"  # a datasets imagefolder with a train split
    meta = folder / "metadata.jsonl"
    files: list[Path] = []
    captions: list[str] = []
    if meta.is_file():
        for number, line in enumerate(meta.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise UserError(f"{meta}:{number} is not a JSON line ({err.msg})") from err
            column = next((c for c in CAPTION_COLUMNS if c in row), None)
            if "file_name" not in row or column is None:
                raise UserError(
                    f"{meta}:{number} needs a file_name and a caption ({', '.join(CAPTION_COLUMNS)}), got {sorted(row)}"
                )
            file = folder / row["file_name"]
            if not file.is_file():
                raise UserError(f"{meta}:{number} names {row['file_name']!r}, which does not exist in {folder}")
            files.append(file)
            captions.append(str(row[column]))
    else:
        for file in sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES):
            sidecar = file.with_suffix(".txt")
            if not sidecar.is_file():
                raise UserError(f"image {file.name} in {folder} has no caption: add {sidecar.name} or metadata.jsonl")
            files.append(file)
            captions.append(sidecar.read_text(encoding="utf-8").strip())
    if not files:
        raise UserError(f"{str(folder)!r} holds no images ({', '.join(IMAGE_SUFFIXES)}) with captions")
    return CaptionedImages(files, captions)


def prepare_image(path: Path, resolution: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Resize the shorter side to ``resolution`` (bilinear), random crop (from ``generator``), no flip.

    Returns:
        ``(pixels, time_ids)``: ``(3, R, R)`` float32 in [−1, 1] and the SDXL micro-conditioning ``(6,)``.

    Raises:
        UserError: the file is not a readable image.
    """
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image = image.convert("RGB")
    except (UnidentifiedImageError, OSError) as err:
        raise UserError(f"{path} is not a readable image ({type(err).__name__})") from err
    width, height = image.size
    scale = resolution / min(width, height)
    new_w, new_h = max(resolution, round(width * scale)), max(resolution, round(height * scale))
    image = image.resize((new_w, new_h), Image.Resampling.BILINEAR)
    top = int(torch.randint(0, new_h - resolution + 1, (1,), generator=generator))
    left = int(torch.randint(0, new_w - resolution + 1, (1,), generator=generator))
    image = image.crop((left, top, left + resolution, top + resolution))
    pixels = torch.from_numpy(np.asarray(image, dtype=np.float32)).permute(2, 0, 1) / 127.5 - 1.0
    return pixels, sdxl_time_ids((height, width), (top, left), (resolution, resolution))


def _vae_posterior(teacher: Any, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    vae = teacher.vae
    with torch.no_grad():
        dist = vae.encode(pixels.to(device=vae.device, dtype=vae.dtype)).latent_dist
    return dist.mean.float(), dist.std.float()


def _cache_key(teacher: Any, data: CaptionedImages, resolution: int, seed: int, vae: str | None) -> dict[str, Any]:
    return {
        "teacher": teacher.source,
        "vae": vae or "pipeline",
        "resolution": resolution,
        "data": data.fingerprint(),
        "seed": seed,
        "kind": teacher.kind,
    }


def build_cache(
    teacher: Any,
    data: CaptionedImages,
    resolution: int,
    seed: int,
    path: str | Path,
    vae: str | None = None,
    batch_size: int = 8,
) -> dict[str, torch.Tensor]:
    """Encode every image once (one crop per image, drawn from ``seed``) and every caption; write or reuse the
    safetensors cache at ``path``.

    Returns:
        Tensors ``mean``/``std`` ``(M, C, h, w)`` (VAE posterior, unscaled) and the prompt embeddings
        (``prompt_embeds``, ``pooled``, ``time_ids``).

    Raises:
        UserError: an existing cache was built for another teacher, VAE, resolution, data or seed.
    """
    from safetensors import safe_open
    from safetensors.torch import save_file

    from sixlab_shared import load_safetensors

    path = Path(path)
    key = _cache_key(teacher, data, resolution, seed, vae)
    if path.is_file():
        from safetensors import SafetensorError

        try:
            with safe_open(str(path), "pt") as handle:
                stored = json.loads((handle.metadata() or {}).get("key", "{}"))
        except (SafetensorError, OSError, ValueError) as err:
            raise UserError(f"latent cache {str(path)!r} is not a readable safetensors file; delete it") from err
        if stored != key:
            changed = sorted(k for k in key if stored.get(k) != key[k])
            raise UserError(
                f"latent cache {str(path)!r} was built with a different {', '.join(changed)}; delete it or pass "
                "another --cache"
            )
        return load_safetensors(path, "latent cache")
    means, stds, conds = [], [], []
    for start in range(0, len(data), batch_size):
        rows = range(start, min(start + batch_size, len(data)))
        pixels, time_ids = zip(
            *(
                prepare_image(data.files[i], resolution, make_generator(derive_seed(seed, "cache-crop", i)))
                for i in rows
            ),
            strict=True,
        )
        mean, std = _vae_posterior(teacher, torch.stack(pixels))
        means.append(mean.cpu())
        stds.append(std.cpu())
        conds.append(teacher.encode_prompts([data.captions[i] for i in rows], torch.stack(time_ids)).to("cpu"))
    cond = conds[0]
    for more in conds[1:]:
        from direct_cms.conditioning import cat_cond

        cond = cat_cond(cond, more)
    tensors = {"mean": torch.cat(means), "std": torch.cat(stds), **cond.state()}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp), metadata={"key": json.dumps(key)})
    tmp.replace(path)
    return tensors


class TextBatchSource:
    """Seeded batches of VAE latents and text conditioning for distillation.

    Args:
        teacher: a :class:`~direct_cms.text_teacher.TextTeacher` (its VAE and text encoders, unless cached).
        data: the captioned images.
        resolution: pixel resolution of the square crops (a multiple of the VAE's scale factor).
        cache: tensors from :func:`build_cache`, or ``None`` to encode on the fly.
    """

    def __init__(
        self, teacher: Any, data: CaptionedImages, resolution: int, cache: dict[str, torch.Tensor] | None = None
    ) -> None:
        if resolution < 8 or resolution % teacher.vae_scale_factor != 0:
            raise UserError(f"--resolution must be a multiple of {teacher.vae_scale_factor} (>= 8), got {resolution}")
        self.teacher = teacher
        self.data = data
        self.resolution = resolution
        self.cache = cache
        self.scaling = float(teacher.vae.config.scaling_factor)

    def draw(self, batch_size: int, num_index: int, seed: int, step: int, micro: int = 0, process: int = 0) -> Batch:
        """Batch ``(step, micro, process)``: latents ``x0 (B, C, h, w)`` float32, ``TextCond``, ε, indices n."""
        gen = make_generator(derive_seed(seed, "batch", step, micro, process))
        rows = torch.randint(0, len(self.data), (batch_size,), generator=gen)
        if self.cache is not None:
            mean, std = self.cache["mean"][rows], self.cache["std"][rows]
            cond = TextCond.from_state(self.cache)[rows]
        else:
            crops = [prepare_image(self.data.files[int(i)], self.resolution, gen) for i in rows]
            mean, std = _vae_posterior(self.teacher, torch.stack([c[0] for c in crops]))
            mean, std = mean.cpu(), std.cpu()
            cond = self.teacher.encode_prompts(
                [self.data.captions[int(i)] for i in rows], torch.stack([c[1] for c in crops])
            ).to("cpu")
        x0 = (mean + std * torch.randn(mean.shape, generator=gen)) * self.scaling
        noise = torch.randn(x0.shape, generator=gen)
        index = torch.randint(0, num_index, (batch_size,), generator=gen)
        return Batch(x0, cond, noise, index)  # type: ignore[arg-type]
