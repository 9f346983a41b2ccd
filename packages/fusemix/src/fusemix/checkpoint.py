"""Fusion checkpoints: adapter hyperparameters stored beside the weights, loaded strictly.

The paper's retrieval config silently built 1-block adapters and left the final LayerNorm and projection random
(``strict=False``, reference §6.1). Here the model is rebuilt from the stored hyperparameters and every key must
match; a mismatch names the keys.
"""

from __future__ import annotations

import os
from typing import Any

import torch

from fusemix.adapters import FusionModel
from fusemix.encoders import EncoderSpec
from sixlab_shared import UserError, load_checkpoint, save_checkpoint


def save_fusion_checkpoint(path: str | os.PathLike[str], model: FusionModel, **extra: Any) -> None:
    """Atomically save ``model`` with its hyperparameters (``model_config``) and any JSON-able ``extra`` fields
    (optimizer state, step, encoder specs, dataset, training configuration, metrics)."""
    save_checkpoint(path, {"model": model.state_dict(), "model_config": model.config(), **extra})


def load_state_strict(model: torch.nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """``load_state_dict(strict=True)`` with a one-line error naming missing/unexpected keys or shape mismatches.

    Raises:
        UserError: any key or shape differs.
    """
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [
        f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}"
        for k in own
        if k in state and state[k].shape != own[k].shape
    ]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"missing keys {', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}")
        if unexpected:
            parts.append(f"unexpected keys {', '.join(unexpected[:5])}{' ...' if len(unexpected) > 5 else ''}")
        if shapes:
            parts.append(f"shape mismatches {'; '.join(shapes[:3])}")
        raise UserError(f"checkpoint {source!r} does not fit the adapters: {'; '.join(parts)}")
    model.load_state_dict(state, strict=True)


def load_fusion_checkpoint(
    path: str | os.PathLike[str], *, device: str | torch.device = "cpu"
) -> tuple[FusionModel, dict[str, Any]]:
    """Rebuild the model from the stored hyperparameters and load its weights strictly.

    Returns:
        The model (in eval mode, on ``device``) and the whole checkpoint dict (``encoders``, ``dataset``, ...).

    Raises:
        UserError: the file is missing or unreadable, not a fusemix checkpoint, or its weights do not fit.
    """
    state = load_checkpoint(path, device="cpu")
    if "model_config" not in state or "model" not in state:
        raise UserError(f"checkpoint {str(path)!r} is not a fusemix checkpoint (no model_config/model)")
    try:
        model = FusionModel.from_config(state["model_config"])
    except (TypeError, ValueError, KeyError) as err:
        raise UserError(f"checkpoint {str(path)!r} has invalid adapter hyperparameters ({err})") from err
    load_state_strict(model, state["model"], str(path))
    return model.to(device).eval(), state


def checkpoint_encoders(state: dict[str, Any]) -> tuple[EncoderSpec, EncoderSpec]:
    """The item and text encoder specs a checkpoint was trained on."""
    return EncoderSpec.from_dict(state["encoders"]["item"]), EncoderSpec.from_dict(state["encoders"]["text"])
