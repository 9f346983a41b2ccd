"""Finding pretrained weights: Hugging Face ids, torch.hub / release URLs, or a local path given by ``weights=``.

- Hugging Face ids go through ``from_pretrained`` into the Hugging Face cache (``HF_HOME``), honouring
  ``HF_HUB_OFFLINE``; a local model directory (``config.json`` + weights) goes through the same call.
- URLs go through ``torch.hub.load_state_dict_from_url`` into ``$TORCH_HOME/hub/checkpoints``; a file already in
  that cache is used without any network access, and ``HF_HUB_OFFLINE=1`` also keeps URL downloads off.
- When weights cannot be had, a one-line :class:`~sixlab_shared.UserError` names the encoder, the id/URL and how
  to provide them (pre-download command, or ``--weights PATH``).
"""

from __future__ import annotations

import logging
import os
import urllib.error
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch

from sixlab_shared import UserError

logger = logging.getLogger(__name__)

_TRUE = {"1", "true", "yes", "on"}


def hub_offline() -> bool:
    """Whether downloads are off: ``HF_HUB_OFFLINE`` / ``TRANSFORMERS_OFFLINE`` (or huggingface_hub's own flag)."""
    if any(os.environ.get(var, "").strip().lower() in _TRUE for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")):
        return True
    try:
        from huggingface_hub import constants
    except ImportError:  # pragma: no cover - huggingface_hub ships with transformers
        return False
    return bool(getattr(constants, "HF_HUB_OFFLINE", False))


def _looks_like_path(text: str) -> bool:
    """A string meant as a local path rather than a Hugging Face id (``org/name``) or URL."""
    if "://" in text:
        return False
    return text.startswith(("/", ".", "~")) or text.count("/") > 1 or "\\" in text


def load_hf_model(
    encoder: str,
    arch: str | None,
    model_cls: type,
    default_id: str,
    weights: str | None,
    *,
    allow_missing: tuple[str, ...] = (),
    **kwargs: Any,
) -> tuple[Any, str]:
    """Load a transformers model from a Hugging Face id (default or ``weights``) or a local directory.

    Args:
        encoder: encoder name, for messages.
        arch: architecture, for messages.
        model_cls: the transformers class (``Dinov2Model``, ...).
        default_id: the Hugging Face id used when ``weights`` is ``None``.
        weights: a local model directory or another Hugging Face id, or ``None``.
        allow_missing: prefixes of parameter names the checkpoint may lack (left at transformers' init, logged);
            any other missing or shape-mismatched parameter is an error, never a silent random init.
        **kwargs: passed to ``from_pretrained`` (config overrides).

    Returns:
        The model (on CPU, eval mode) and a string naming the weights (id or resolved local path).

    Raises:
        UserError: the local path does not exist or is not a model directory, or the id is not cached while
            offline (or cannot be downloaded).
    """
    label = f"encoder {encoder!r}" + (f" ({arch})" if arch else "")
    source = weights if weights is not None else default_id
    local = Path(source).expanduser()
    if weights is not None and local.exists():
        if not local.is_dir() or not (local / "config.json").is_file():
            raise UserError(
                f"--weights {weights!r} for {label} must be a Hugging Face model directory holding config.json "
                f"and the weights (as written by save_pretrained or `hf download {default_id} --local-dir DIR`)"
            )
        try:
            model, info = model_cls.from_pretrained(str(local), output_loading_info=True, **kwargs)
        except (OSError, ValueError) as err:
            raise UserError(f"cannot load {label} from {str(local)!r}: {_first_line(err)}") from err
        _check_loading_info(label, str(local), info, allow_missing)
        return model.eval(), str(local.resolve())
    if weights is not None and _looks_like_path(weights):
        raise UserError(f"--weights path {weights!r} for {label} does not exist; pass an existing model directory")
    try:
        model, info = model_cls.from_pretrained(source, output_loading_info=True, **kwargs)
    except OSError as err:
        how = "the hub is offline (HF_HUB_OFFLINE=1)" if hub_offline() else "it could not be downloaded"
        raise UserError(
            f"weights of {label} are not available: Hugging Face model {source!r} is not in the cache "
            f"({_hf_cache()}) and {how}; pre-download it where there is internet with `hf download {source}` "
            f"(same HF_HOME), or pass --weights /path/to/model_dir"
        ) from err
    _check_loading_info(label, source, info, allow_missing)
    return model.eval(), source


def _check_loading_info(label: str, source: str, info: dict[str, Any], allow_missing: tuple[str, ...]) -> None:
    """Refuse checkpoints that leave parameters at random init (missing) or do not fit (shape mismatch)."""
    missing = sorted(str(key) for key in info.get("missing_keys", ()))
    allowed = [key for key in missing if key.startswith(allow_missing)] if allow_missing else []
    missing = [key for key in missing if key not in allowed]
    if allowed:
        logger.warning("%s: %s lacks %s; left at their initial values", label, source, ", ".join(allowed))
    mismatched = sorted(str(item[0] if isinstance(item, tuple) else item) for item in info.get("mismatched_keys", ()))
    if missing or mismatched:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} parameter(s) ({', '.join(missing[:5])})")
        if mismatched:
            parts.append(f"shape mismatch in {len(mismatched)} ({', '.join(mismatched[:5])})")
        raise UserError(f"weights {source!r} do not fit {label}: {'; '.join(parts)}")


def load_url_state_dict(encoder: str, url: str, weights: str | None) -> tuple[dict[str, torch.Tensor], str]:
    """Load a PyTorch state dict from a local file (``weights``), the torch.hub cache, or ``url``.

    Args:
        encoder: encoder name, for messages.
        url: the release URL of the default weights (file name = cache name).
        weights: a local ``.pth``/``.pt`` file or another URL, or ``None`` for ``url``.

    Returns:
        The state dict (CPU tensors) and a string naming the weights (URL or resolved local path).

    Raises:
        UserError: the local file does not exist, cannot be read, or the URL's file is not cached while offline
            (or cannot be downloaded).
    """
    if weights is not None:
        local = Path(weights).expanduser()
        if local.is_file():
            return _torch_load(encoder, local), str(local.resolve())
        if "://" not in weights:
            raise UserError(
                f"--weights file {weights!r} for encoder {encoder!r} does not exist; pass an existing .pth/.pt "
                f"state-dict file or a URL"
            )
        url = weights
    file_name = Path(urlparse(url).path).name
    cached = Path(torch.hub.get_dir()) / "checkpoints" / file_name
    if cached.is_file():
        return _torch_load(encoder, cached), url
    how = (
        f'pre-download it where there is internet with `python -c "import torch; '
        f"torch.hub.load_state_dict_from_url('{url}')\"` (same TORCH_HOME), or `curl -L -o {cached} {url}`, "
        f"or pass --weights /path/to/{file_name}"
    )
    if hub_offline():
        raise UserError(
            f"weights of encoder {encoder!r} are not available: {url} is not in the torch.hub cache ({cached.parent}) "
            f"and downloads are off (HF_HUB_OFFLINE=1); {how}"
        )
    try:
        state = torch.hub.load_state_dict_from_url(url, map_location="cpu", progress=True, weights_only=True)
    except (urllib.error.URLError, OSError) as err:
        raise UserError(
            f"weights of encoder {encoder!r} could not be downloaded from {url} ({_first_line(err)}); {how}"
        ) from err
    return state, url


def _torch_load(encoder: str, path: Path) -> dict[str, torch.Tensor]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - a corrupt pickle raises IndexError, KeyError, UnicodeDecodeError, ...
        raise UserError(
            f"cannot read weights file {str(path)!r} for encoder {encoder!r}: not a PyTorch state-dict file "
            f"({_first_line(err)[:120]})"
        ) from err
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise UserError(f"weights file {str(path)!r} for encoder {encoder!r} does not hold a state dict")
    return state


def load_state_dict_strictly(
    encoder: str, module: torch.nn.Module, state: dict[str, torch.Tensor], source: str
) -> None:
    """``module.load_state_dict(state, strict=True)``, with missing/unexpected keys and shape errors as a UserError."""
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise UserError(
            f"weights {source!r} do not fit encoder {encoder!r}: {' '.join(str(err).split())[:500]}"
        ) from err


def _hf_cache() -> str:
    try:
        from huggingface_hub import constants

        return str(constants.HF_HUB_CACHE)
    except ImportError:  # pragma: no cover
        return "HF_HOME"


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__
