"""Checkpoints as safetensors files: tensors in the file body, everything else as JSON in its metadata.

A checkpoint holds a nested state (model ``state_dict``, optimizer ``state_dict``, step counters, config). Tensors
are flattened to dotted keys and stored by safetensors (no pickle, so loading never runs code); the remaining
structure, with each tensor replaced by a reference to its key, is stored as JSON in the safetensors header under
``"sixlab"``. Files are written atomically.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from sixlab_shared.atomic import _json_default, atomic_write_with
from sixlab_shared.errors import UserError

_META_KEY = "sixlab"
_TENSOR_REF = "__tensor__"


def _flatten(obj: Any, prefix: str, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, torch.Tensor):
        key = prefix or "tensor"
        while key in tensors:  # two paths spelled alike ("a.b" vs a -> b): keep both
            key += "#"
        # safetensors refuses tensors that share storage; a contiguous CPU copy of each is always safe.
        tensors[key] = obj.detach().to("cpu").contiguous().clone()
        return {_TENSOR_REF: key}
    if isinstance(obj, dict):
        # Readable tensor names ("model.layer.weight"); keys keep their type (optimizer state uses ints).
        return {"__dict__": [[k, _flatten(v, f"{prefix}.{k}" if prefix else str(k), tensors)] for k, v in obj.items()]}
    if isinstance(obj, list | tuple):
        items = [_flatten(v, f"{prefix}.{i}" if prefix else str(i), tensors) for i, v in enumerate(obj)]
        return {"__tuple__": items} if isinstance(obj, tuple) else items
    return obj


def _unflatten(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, dict):
        if _TENSOR_REF in obj:
            return tensors[obj[_TENSOR_REF]]
        if "__dict__" in obj:
            return {k: _unflatten(v, tensors) for k, v in obj["__dict__"]}
        if "__tuple__" in obj:
            return tuple(_unflatten(v, tensors) for v in obj["__tuple__"])
        return {k: _unflatten(v, tensors) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_unflatten(v, tensors) for v in obj]
    return obj


def save_checkpoint(path: str | os.PathLike[str], state: dict[str, Any]) -> None:
    """Atomically save a nested ``state`` (tensors anywhere inside dicts/lists/tuples, JSON scalars elsewhere).

    Dict keys may be strings or integers (optimizer state is keyed by parameter index) and keep their type.

    Args:
        path: target file, conventionally ``*.safetensors``.
        state: e.g. ``{"model": model.state_dict(), "optimizer": opt.state_dict(), "step": 100, "config": {...}}``.

    Raises:
        TypeError: a leaf is neither a tensor nor JSON-serialisable.
    """
    tensors: dict[str, torch.Tensor] = {}
    skeleton = _flatten(state, "", tensors)
    metadata = {_META_KEY: json.dumps(skeleton, default=_json_default)}
    atomic_write_with(path, lambda tmp: save_file(tensors, str(tmp), metadata=metadata))


def load_checkpoint(path: str | os.PathLike[str], *, device: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint`, tensors placed on ``device``.

    Raises:
        UserError: the file does not exist, or is not a sixlab checkpoint (no ``"sixlab"`` metadata).
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint {str(path)!r} does not exist; pass the path of a saved .safetensors file")
    try:
        with safe_open(str(path), framework="pt", device=str(device)) as handle:
            metadata = handle.metadata() or {}
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118 (not a dict)
    except (OSError, ValueError, RuntimeError, SafetensorError) as err:
        raise UserError(f"checkpoint {str(path)!r} could not be read as safetensors ({err})") from err
    if _META_KEY not in metadata:
        raise UserError(f"checkpoint {str(path)!r} has no sixlab metadata; it was not written by save_checkpoint")
    return _unflatten(json.loads(metadata[_META_KEY]), tensors)
