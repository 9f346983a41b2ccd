"""Model checkpoints: save a fitted option model and load it back, rebuilding the grown heads first; the name of a
run's checkpoint and the error for files that are not (matching) bnpo checkpoints."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from bnpo.model import OptionModel, OptionModelConfig
from bnpo.training import load_weights, rebuild_growable
from sixlab_shared import UserError, load_checkpoint, save_checkpoint

CHECKPOINT_NAME = "last"


class CheckpointError(UserError):
    """A checkpoint does not match the configuration or is not a bnpo checkpoint."""


def rebuild_model(model_config: Any, n_options: Any, source: str = "checkpoint") -> OptionModel:
    """The model a checkpoint describes, grown to ``n_options``; invalid or unknown config keys are one-line errors."""
    return rebuild_growable(OptionModel, OptionModelConfig, model_config, n_options, source, CheckpointError)


def load_model_weights(model: OptionModel, state: dict[str, torch.Tensor], source: str) -> None:
    load_weights(model, state, source, CheckpointError)


def save_model(path: str | os.PathLike[str], model: OptionModel, **extra: Any) -> None:
    """Save a model (its config, K and weights) plus any extra JSON/tensor state as a checkpoint, atomically."""
    save_checkpoint(
        path, {"model_config": model.config_dict(), "n_options": model.n_options, "model": model.state_dict(), **extra}
    )


def load_model(path: str | os.PathLike[str], *, device: str | torch.device = "cpu") -> OptionModel:
    """Load a model saved by ``fit`` / :func:`save_model`, rebuilding the grown heads first.

    Raises:
        CheckpointError: not a bnpo checkpoint, or its tensors do not match its recorded config and K.
    """
    state = load_checkpoint(path)
    if "model_config" not in state or "n_options" not in state or "model" not in state:
        raise CheckpointError(f"{str(path)!r} is not a bnpo model checkpoint (no model_config / n_options / model)")
    if not isinstance(state["model"], dict):
        raise CheckpointError(f"{str(path)!r}: 'model' must hold the weights, got {type(state['model']).__name__}")
    model = rebuild_model(state["model_config"], state["n_options"], f"checkpoint {str(path)!r}")
    load_model_weights(model, state["model"], repr(str(path)))
    return model.to(device)


def checkpoint_file(run_or_path: str | os.PathLike[str]) -> Path:
    """A model path from either a checkpoint file or a run directory (``checkpoints/last.safetensors``)."""
    path = Path(run_or_path)
    if path.is_dir():
        return path / "checkpoints" / f"{CHECKPOINT_NAME}.safetensors"
    return path
