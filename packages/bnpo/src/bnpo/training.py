"""Pieces every fit loop of the package shares (BNPO's ``bnpo.fit`` and CompILE's ``bnpo.compile.fit``): rebuilding
a grown model from a checkpoint, loading its weights with one-line errors, comparing a resumed run's options, and
one guarded optimiser step. The callers raise their own error classes (passed in), so this module imports neither.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch


def rebuild_growable(
    model_cls: type, config_cls: type, model_config: Any, n_options: Any, source: str, error: type[Exception]
):
    """The model a checkpoint describes: ``model_cls(config_cls(**model_config))`` grown with ``add_option()`` to
    ``n_options``.

    Raises:
        error: ``model_config`` is not a dict, has unknown or invalid keys, or ``n_options`` is not an integer at
            least the config's own K (one line, naming ``source``).
    """
    if not isinstance(model_config, dict):
        raise error(f"{source}: model_config must be a JSON object, got {type(model_config).__name__}")
    known = {f.name for f in dataclasses.fields(config_cls)}
    unknown = sorted(set(model_config) - known)
    if unknown:
        raise error(
            f"{source}: unknown model_config key(s) {', '.join(unknown)}; not a checkpoint of a {model_cls.__name__}"
        )
    if isinstance(n_options, bool) or not isinstance(n_options, int) or n_options < 1:
        raise error(f"{source}: n_options must be an integer >= 1, got {n_options!r}")
    try:
        model = model_cls(config_cls(**model_config))
    except (TypeError, ValueError) as err:
        raise error(f"{source}: invalid model_config ({' '.join(str(err).split())})") from err
    if model.n_options > n_options:
        raise error(f"{source}: n_options={n_options} is below model_config's n_options")
    while model.n_options < n_options:
        model.add_option()
    return model


def load_weights(model: torch.nn.Module, state: Any, source: str, error: type[Exception]) -> None:
    """``model.load_state_dict(state)`` after checking keys and shapes.

    Raises:
        error: ``state`` is not a dict of tensors with exactly the model's keys and shapes (one line).
    """
    if not isinstance(state, dict):
        raise error(f"checkpoint {source}: 'model' must hold the weights, got {type(state).__name__}")
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        raise error(f"checkpoint {source} does not fit the model: missing {missing[:5]}, unexpected {unexpected[:5]}")
    for key, value in state.items():
        if value.shape != own[key].shape:
            raise error(
                f"checkpoint {source}: {key} has shape {tuple(value.shape)}, the model expects {tuple(own[key].shape)}"
            )
    model.load_state_dict(state)


def changed_options(stored: Any, config: Any, *, free: tuple[str, ...] = ("epochs",)) -> list[str]:
    """``"name old -> new"`` for every dataclass field that differs between two configs, except the ``free`` ones.

    Example:
        >>> from bnpo.fit_config import FitConfig
        >>> changed_options(FitConfig(seed=0, epochs=5), FitConfig(seed=1, epochs=9))
        ['seed 0 -> 1']
    """
    return [
        f"{f.name} {getattr(stored, f.name)!r} -> {getattr(config, f.name)!r}"
        for f in dataclasses.fields(config)
        if f.name not in free and getattr(stored, f.name) != getattr(config, f.name)
    ]


def divergence_message(
    what: str, epoch: int, iteration: int, lr: float, checkpoints: Path | None, saved_epoch: int | None
) -> str:
    """The one-line message of a fit stopped by a NaN or infinite ``what`` (loss or gradient), saying which
    checkpoint is kept (``checkpoints`` None: no run directory; ``saved_epoch`` None: none saved yet)."""
    kept = (
        "nothing was saved (no run directory)"
        if checkpoints is None
        else "no checkpoint was saved yet"
        if saved_epoch is None
        else f"the last good checkpoint (after epoch {saved_epoch}) is kept in {checkpoints}"
    )
    return (
        f"fit stopped: the {what} became NaN or infinite at epoch {epoch}, minibatch {iteration} "
        f"(lr={lr:g}); lower --lr or --grad-clip; {kept}"
    )


def guarded_step(
    loss: torch.Tensor, model: torch.nn.Module, optimizer: torch.optim.Optimizer, grad_clip: float
) -> str | None:
    """One optimiser step on ``loss`` with gradient-norm clipping, skipped when something is not finite.

    Returns:
        None after a step, else ``"loss"`` or ``"gradient"`` (what was NaN or infinite; the parameters are untouched).
    """
    if not torch.isfinite(loss):
        return "loss"
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    norm = torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    if not torch.isfinite(norm):
        return "gradient"
    optimizer.step()
    return None


def training_state(
    model: Any,
    config: Any,
    optimizer: torch.optim.Optimizer,
    generator: torch.Generator,
    stream: Any,
    history: list[dict[str, Any]],
    next_epoch: int,
    run_seed: int,
    **extra: Any,
) -> dict[str, Any]:
    """The checkpoint of a fit in progress: model config, K and weights, the fit config, optimiser, generator and
    minibatch-stream states, the history so far, the next epoch and the run's seed (plus ``extra`` keys)."""
    return {
        **extra,
        "model_config": model.config_dict(),
        "fit_config": dataclasses.asdict(config),
        "n_options": model.n_options,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "generator": generator.get_state(),
        "batches": stream.state_dict(),
        "history": history,
        "epoch": next_epoch,
        "run_seed": run_seed,
    }


def restore_training(
    state: dict[str, Any], optimizer: torch.optim.Optimizer, generator: torch.Generator, stream: Any
) -> tuple[list[dict[str, Any]], int]:
    """Load a :func:`training_state` into the optimiser, generator and stream; returns (history, next epoch)."""
    optimizer.load_state_dict(state["optimizer"])
    generator.set_state(state["generator"])
    stream.load_state_dict(state["batches"])
    return list(state["history"]), int(state["epoch"])


__all__ = [
    "changed_options",
    "divergence_message",
    "guarded_step",
    "load_weights",
    "rebuild_growable",
    "restore_training",
    "training_state",
]
