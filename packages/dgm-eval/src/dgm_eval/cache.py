"""Feature cache: features keyed by what determines them, so a changed input or setting never hits a stale entry.

The key is a SHA-256 over the input's content hash (file bytes or pixels of the selected images, in order),
the encoder's ``preprocess_id()`` (name, arch, weights, depth, preprocessing), the sample selection (seed and
cap), whether logits are stored, and the package version. Entries are ``.npz`` files written atomically. The
default folder is ``$DGM_EVAL_CACHE``, else ``$XDG_CACHE_HOME/dgm-eval``, else ``~/.cache/dgm-eval``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from sixlab_shared import atomic_open

logger = logging.getLogger(__name__)

CACHE_ENV_VAR = "DGM_EVAL_CACHE"


def default_cache_dir() -> Path:
    """``$DGM_EVAL_CACHE``, else ``$XDG_CACHE_HOME/dgm-eval``, else ``~/.cache/dgm-eval``."""
    if os.environ.get(CACHE_ENV_VAR):
        return Path(os.environ[CACHE_ENV_VAR])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "dgm-eval"


def cache_key(**parts: Any) -> str:
    """SHA-256 of the JSON of ``parts`` (sorted keys): every part changes the key."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


class FeatureCache:
    """Features on disk under ``folder/<key>.npz``.

    Args:
        folder: where entries live (created on first write).
        enabled: when False, :meth:`load` always misses and :meth:`save` writes nothing (``--no-cache``).
    """

    def __init__(self, folder: str | os.PathLike[str] | None = None, *, enabled: bool = True) -> None:
        self.folder = Path(folder) if folder is not None else default_cache_dir()
        self.enabled = enabled

    def path(self, key: str) -> Path:
        return self.folder / f"{key}.npz"

    def load(self, key: str) -> dict[str, np.ndarray] | None:
        """The arrays stored under ``key``, or None on a miss (an unreadable entry is a miss and is logged)."""
        if not self.enabled or not self.path(key).is_file():
            return None
        try:
            with np.load(self.path(key), allow_pickle=False) as data:
                return {name: np.asarray(data[name]) for name in data.files}
        except (zipfile.BadZipFile, ValueError, OSError) as err:
            logger.warning("ignoring unreadable cache entry %s (%s)", self.path(key), err)
            return None

    def save(self, key: str, **arrays: Any) -> None:
        """Store ``arrays`` under ``key`` atomically (old entry or new, never half)."""
        if not self.enabled:
            return
        with atomic_open(self.path(key)) as handle:
            np.savez(handle, **{name: np.asarray(value) for name, value in arrays.items() if value is not None})
        logger.info("cached features in %s", self.path(key))
