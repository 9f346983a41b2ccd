"""Inputs: image folders, ADM ``.npz`` files, in-memory batches, saved features and saved statistics.

An :class:`ImageSource` is an indexable of RGB PIL images (what :func:`dgm_eval.extraction.extract_features`
takes) that also knows its class labels and a hash of its content (for the feature cache). :func:`open_input`
turns a path into an image source, saved features or saved statistics, by looking at it.

Image folders: the usual extensions in any case (``.PNG`` too); images at the top level, or class subfolders
when the top level has none (labels in sorted order, numeric names numerically), or every image below the
folder with ``recursive=True``. ADM ``.npz`` files (``arr_0``: uint8 ``(N, H, W, 3)``, optional ``arr_1``
labels) are memory-mapped when stored uncompressed, so images are read as needed, never all at once.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import logging
import os
import struct
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from sixlab_shared import UserError

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = frozenset({".bmp", ".jpg", ".jpeg", ".pgm", ".png", ".ppm", ".tif", ".tiff", ".webp"})


class InputError(UserError):
    """An input the user gave cannot be used (missing, empty, unreadable, wrong layout)."""


def _is_image(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS


def _class_sort_key(name: str) -> tuple[int, Any]:
    return (0, int(name)) if name.isdigit() else (1, name)


def _to_uint8_nhwc(batch: Any) -> np.ndarray:
    """A numpy/torch image batch as uint8 ``(N, H, W, 3)``: uint8 NHWC/NCHW, or float NCHW/NHWC in [0, 1]."""
    arr = batch.detach().cpu().numpy() if isinstance(batch, torch.Tensor) else np.asarray(batch)
    if arr.ndim != 4:
        raise InputError(f"an image batch must be 4-D (N, H, W, 3) or (N, 3, H, W), got shape {arr.shape}")
    if arr.shape[-1] not in (1, 3) and arr.shape[1] in (1, 3):
        arr = arr.transpose(0, 2, 3, 1)
    if arr.shape[-1] not in (1, 3):
        raise InputError(f"an image batch needs 1 or 3 channels, got shape {arr.shape}")
    if arr.dtype != np.uint8:
        if not np.issubdtype(arr.dtype, np.floating):
            raise InputError(f"an image batch must be uint8 in [0, 255] or float in [0, 1], got {arr.dtype}")
        if not np.isfinite(arr).all() or arr.min() < 0 or arr.max() > 1:
            raise InputError("a float image batch must hold finite values in [0, 1]")
        arr = np.rint(arr * 255.0).astype(np.uint8)
    if arr.shape[-1] == 1:
        arr = np.repeat(arr, 3, axis=-1)
    return np.ascontiguousarray(arr)


def _npz_memmap(path: Path, member: str) -> np.ndarray | None:
    """Memory-map ``member`` of an uncompressed ``.npz`` (np.savez); None when it is compressed or absent."""
    with zipfile.ZipFile(path) as zf:
        try:
            info = zf.getinfo(member + ".npy")
        except KeyError:
            return None
        if info.compress_type != zipfile.ZIP_STORED:
            return None
    with open(path, "rb") as handle:
        handle.seek(info.header_offset)
        local = handle.read(30)
        name_len, extra_len = struct.unpack("<HH", local[26:30])
        handle.seek(info.header_offset + 30 + name_len + extra_len)
        version = np.lib.format.read_magic(handle)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(handle)
        else:
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(handle)
        offset = handle.tell()
    if fortran or dtype.hasobject:
        return None
    return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape)


@dataclass
class ImageSource:
    """Images from a folder, an ADM ``.npz`` or an in-memory batch; ``source[i]`` is an RGB PIL image.

    Build with :meth:`from_folder`, :meth:`from_npz` or :meth:`from_array`. ``labels`` holds one class label per
    image (``None`` for flat sets). ``skipped`` lists files found unreadable by :meth:`validate`.
    """

    description: str
    kind: str
    files: list[Path] = field(default_factory=list)
    npz_path: Path | None = None
    array: np.ndarray | None = None
    labels: np.ndarray | None = None
    indices: np.ndarray | None = None  # selection (nsample cap), None = all
    skipped: list[str] = field(default_factory=list)
    _mapped: Any = field(default=None, repr=False)

    # -- construction -------------------------------------------------------------------------------------------
    @classmethod
    def from_folder(cls, path: str | os.PathLike[str], *, recursive: bool = False) -> ImageSource:
        """Images of a folder (see the module docstring for the layouts).

        Raises:
            InputError: the folder does not exist or holds no image with a known extension.
        """
        root = Path(path)
        if not root.is_dir():
            raise InputError(f"input folder {str(root)!r} does not exist")
        labels: list[str] | None = None
        if recursive:
            files = sorted((p for p in root.rglob("*") if _is_image(p)), key=lambda p: p.relative_to(root).as_posix())
            rel_parents = [p.relative_to(root).parts[:-1] for p in files]
            labels = [parts[0] if parts else "" for parts in rel_parents]
            if len(set(labels)) <= 1:
                labels = None
        else:
            files = sorted((p for p in root.iterdir() if _is_image(p)), key=lambda p: p.name)
            if not files:
                classes = sorted((d.name for d in root.iterdir() if d.is_dir()), key=_class_sort_key)
                labels = []
                for name in classes:
                    inner = sorted((p for p in (root / name).iterdir() if _is_image(p)), key=lambda p: p.name)
                    files.extend(inner)
                    labels.extend([name] * len(inner))
        if not files:
            raise InputError(
                f"input folder {str(root)!r} holds no images ({'/'.join(sorted(IMAGE_EXTENSIONS))}, any case); "
                "check the path, or pass --recursive for nested folders"
            )
        return cls(
            description=str(root),
            kind="folder",
            files=files,
            labels=None if labels is None else np.asarray(labels),
        )

    @classmethod
    def from_npz(cls, path: str | os.PathLike[str]) -> ImageSource:
        """Images of an ADM-style ``.npz`` (``arr_0`` uint8 ``(N, H, W, 3)``, optional ``arr_1`` labels).

        Raises:
            InputError: the file is missing, not an npz, or ``arr_0`` is not a uint8 image array.
        """
        path = Path(path)
        if not path.is_file():
            raise InputError(f"input file {str(path)!r} does not exist")
        _require_zip(path)
        try:
            mapped = _npz_memmap(path, "arr_0")
            with np.load(path, allow_pickle=False) as data:
                if "arr_0" not in data.files:
                    raise InputError(f"{str(path)!r} has no 'arr_0' image array (keys: {', '.join(data.files)})")
                labels = np.asarray(data["arr_1"]) if "arr_1" in data.files else None
                if mapped is None:
                    logger.warning("%s is compressed: its images are loaded into memory at once", path)
                    array = np.asarray(data["arr_0"])
                else:
                    array = mapped
        except (zipfile.BadZipFile, ValueError, OSError, EOFError) as err:
            raise _npz_error(path, err) from err
        if array.dtype != np.uint8 or array.ndim != 4 or array.shape[-1] not in (1, 3):
            raise InputError(
                f"{str(path)!r}: 'arr_0' must be uint8 images of shape (N, H, W, 3), got {array.dtype} {array.shape}"
            )
        if array.shape[0] == 0:
            raise InputError(f"{str(path)!r} holds no images")
        if labels is not None and labels.shape != (array.shape[0],):
            labels = None
        source = cls(description=str(path), kind="npz", npz_path=path, labels=labels)
        if mapped is None:
            source.array = array
        return source

    @classmethod
    def from_array(cls, batch: Any, *, labels: Any = None, description: str = "array") -> ImageSource:
        """Images of a numpy/torch batch: uint8 ``(N, H, W, 3)`` / ``(N, 3, H, W)`` or float in [0, 1].

        Raises:
            InputError: wrong rank, channels, dtype or range, or an empty batch.
        """
        array = _to_uint8_nhwc(batch)
        if array.shape[0] == 0:
            raise InputError("the image batch is empty")
        return cls(
            description=description, kind="array", array=array, labels=None if labels is None else np.asarray(labels)
        )

    # -- the indexable interface ----------------------------------------------------------------------------------
    def _images(self) -> np.ndarray:
        if self.array is not None:
            return self.array
        if self._mapped is None:
            self._mapped = _npz_memmap(self.npz_path, "arr_0")
        return self._mapped

    def _all_len(self) -> int:
        return len(self.files) if self.kind == "folder" else int(self._images().shape[0])

    def _position(self, i: int) -> int:
        return int(self.indices[i]) if self.indices is not None else i

    def __len__(self) -> int:
        return len(self.indices) if self.indices is not None else self._all_len()

    def __getitem__(self, i: int) -> Image.Image:
        j = self._position(i)
        if self.kind == "folder":
            with Image.open(self.files[j]) as img:
                return img.convert("RGB")
        arr = np.asarray(self._images()[j])
        if arr.shape[-1] == 1:
            arr = np.repeat(arr, 3, axis=-1)
        return Image.fromarray(arr, mode="RGB")

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_mapped"] = None  # DataLoader workers re-open the memory map
        return state

    def selected_labels(self) -> np.ndarray | None:
        """Labels of the selected images (``None`` for a flat set)."""
        if self.labels is None:
            return None
        return self.labels if self.indices is None else self.labels[self.indices]

    # -- selection, validation, hashing ---------------------------------------------------------------------------
    def cap(self, nsample: int | None, seed: int, *, replace: bool = False) -> ImageSource:
        """Keep at most ``nsample`` images, chosen with ``seed`` without replacement (kept in input order).

        With ``replace`` (a ``GEN:train`` path): draw ``min(nsample, N)`` images with replacement (N when
        ``nsample`` is ``None``), a bootstrap sample of a training set to stand in a generated set's place, sorted.
        """
        n = self._all_len() if self.indices is None else len(self.indices)
        if replace:
            draws = n if nsample is None else min(nsample, n)
            chosen = np.sort(np.random.default_rng(seed).choice(n, draws, replace=True))
            self.indices = chosen if self.indices is None else self.indices[chosen]
            return self
        if nsample is not None and nsample < n:
            chosen = np.sort(np.random.default_rng(seed).choice(n, nsample, replace=False))
            self.indices = chosen if self.indices is None else self.indices[chosen]
        return self

    def subset(self, start: int, stop: int) -> ImageSource:
        """A view of the selected images ``start:stop`` (for streaming over a large set)."""
        positions = np.arange(start, min(stop, len(self)))
        chosen = positions if self.indices is None else self.indices[positions]
        return dataclasses.replace(self, indices=chosen, skipped=[], _mapped=None)

    def validate(self, *, strict: bool = False) -> None:
        """Open every selected image file fully; unreadable ones are dropped and counted (an error if ``strict``).

        Raises:
            InputError: with ``strict``, the first unreadable file; without, when no image is left.
        """
        if self.kind != "folder":
            return
        keep = []
        for i in range(len(self)):
            path = self.files[self._position(i)]
            try:
                with Image.open(path) as img:
                    img.load()
            except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as err:
                if strict:
                    raise InputError(
                        f"cannot read image {str(path)!r} ({err}); fix or remove it, or drop --strict"
                    ) from err
                self.skipped.append(str(path))
                continue
            keep.append(self._position(i))
        if self.skipped:
            logger.warning(
                "%s: skipped %d unreadable image(s), e.g. %s", self.description, len(self.skipped), self.skipped[0]
            )
            self.indices = np.asarray(keep, dtype=np.int64)
        if len(self) == 0:
            raise InputError(f"{self.description!r}: none of its images could be read")

    def content_hash(self, file_digest: Callable[[Path], str] | None = None) -> str:
        """SHA-256 over the content of the selected images, in order.

        Args:
            file_digest: ``path -> hex digest`` of a file's bytes (e.g. a
                :class:`~dgm_eval.cache.FileHashIndex`'s ``digest``, which skips unchanged files); default reads
                and hashes every file. Folders: one digest per selected file. ADM ``.npz``: the file's digest and
                the selected indices. Arrays: pixel bytes and shapes.
        """
        from dgm_eval.cache import sha256_file

        file_digest = file_digest or sha256_file
        digest = hashlib.sha256()
        digest.update(self.kind.encode())
        if self.kind == "npz" and self.npz_path is not None:
            digest.update(file_digest(self.npz_path).encode())
            selected = np.arange(self._all_len()) if self.indices is None else self.indices
            digest.update(np.asarray(selected, np.int64).tobytes())
            return digest.hexdigest()
        for i in range(len(self)):
            j = self._position(i)
            if self.kind == "folder":
                digest.update(file_digest(self.files[j]).encode())
            else:
                img = np.asarray(self._images()[j])
                digest.update(str(img.shape).encode())
                digest.update(img.tobytes())
            digest.update(b"\0")
        return digest.hexdigest()


@dataclass
class SavedFeatures:
    """Features written by ``dgm-eval features`` (or any ``.npz`` with a ``features`` array)."""

    description: str
    features: np.ndarray
    labels: np.ndarray | None = None
    logits: np.ndarray | None = None
    encoder: str | None = None


@dataclass
class SavedStats:
    """Mean and covariance written by ``dgm-eval stats`` or pytorch-fid (usable for FD-type metrics only)."""

    description: str
    path: Path


def read_features_npz(path: Path) -> SavedFeatures:
    """Read ``features`` (+ optional ``labels``, ``logits``, ``encoder``) from an ``.npz``.

    Raises:
        InputError: not a 2-D numeric ``features`` array, or NaN/inf in it.
    """
    _require_zip(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            feats = np.asarray(data["features"])
            labels = np.asarray(data["labels"]) if "labels" in data.files else None
            logits = np.asarray(data["logits"]) if "logits" in data.files else None
            encoder = str(data["encoder"]) if "encoder" in data.files else None
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as err:
        raise _npz_error(path, err) from err
    if feats.ndim != 2 or not np.issubdtype(feats.dtype, np.number) or feats.shape[0] == 0:
        raise InputError(f"{str(path)!r}: 'features' must be a non-empty (N, D) numeric array, got {feats.shape}")
    if not np.isfinite(feats).all():
        raise InputError(f"{str(path)!r}: features hold NaN or inf; re-extract them")
    return SavedFeatures(str(path), feats.astype(np.float64, copy=False), labels, logits, encoder)


def _npz_error(path: Path, err: BaseException) -> InputError:
    """One line for an ``.npz`` numpy cannot read: pickled objects, or not an archive at all."""
    if "pickle" in str(err).lower():
        return InputError(f"{str(path)!r} holds Python objects (pickled), which are never loaded; save numeric arrays")
    return InputError(f"{str(path)!r} is not a valid .npz archive ({str(err).splitlines()[0] if str(err) else err})")


def _require_zip(path: Path) -> None:
    if not zipfile.is_zipfile(path):  # np.load would try to unpickle it and talk about pickles
        raise InputError(f"{str(path)!r} is not a valid .npz archive (not a zip file)")


def open_input(path: str | os.PathLike[str], *, recursive: bool = False) -> ImageSource | SavedFeatures | SavedStats:
    """Turn a path into images, saved features or saved statistics, by its content.

    A folder is images; an ``.npz`` with ``features`` is saved features, with ``mu``/``sigma`` saved statistics,
    with ``arr_0`` ADM images.

    Raises:
        InputError: the path does not exist, is neither a folder nor an ``.npz``, or the npz holds none of these.
    """
    p = Path(path)
    if p.is_dir():
        return ImageSource.from_folder(p, recursive=recursive)
    if not p.exists():
        raise InputError(f"input {str(p)!r} does not exist; pass an image folder or an .npz file")
    if p.suffix.lower() != ".npz":
        raise InputError(f"input {str(p)!r} is neither a folder nor an .npz file")
    _require_zip(p)
    try:
        with np.load(p, allow_pickle=False) as data:
            keys = set(data.files)
    except (zipfile.BadZipFile, ValueError, OSError) as err:
        raise _npz_error(p, err) from err
    if "features" in keys:
        return read_features_npz(p)
    if {"mu", "sigma"} <= keys:
        return SavedStats(str(p), p)
    if "arr_0" in keys:
        return ImageSource.from_npz(p)
    raise InputError(f"{str(p)!r} holds none of 'features', 'mu'/'sigma' or 'arr_0' (keys: {', '.join(sorted(keys))})")


def write_image_folder(images: np.ndarray, folder: str | os.PathLike[str], *, prefix: str = "img") -> None:
    """Write uint8 ``(N, H, W, 3)`` images as PNG files (used by the demo and tests)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for i, img in enumerate(_to_uint8_nhwc(images)):
        buffer = io.BytesIO()
        Image.fromarray(img).save(buffer, format="PNG")
        (folder / f"{prefix}{i:06d}.png").write_bytes(buffer.getvalue())
