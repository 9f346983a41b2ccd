"""Feature cache on disk, and the index of file hashes that lets a cache hit skip re-reading unchanged files.

What goes into a key is decided by :mod:`dgm_eval.features` (:func:`~dgm_eval.features.feature_key_parts`);
this module stores ``.npz`` entries under the SHA-256 of those parts, written atomically. The default folder is
``$DGM_EVAL_CACHE``, else ``$XDG_CACHE_HOME/dgm-eval``, else ``~/.cache/dgm-eval``.

:class:`FileHashIndex` remembers the SHA-256 of each file (images, local weight files) under its
``(resolved path, size, mtime_ns)``: a file whose three are unchanged is not read again. ``verify=True``
(``--verify-cache``) re-reads and re-hashes every file, which also catches an edit that kept size and mtime.
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


HASH_INDEX_FILE = "file-hashes.json"


def sha256_file(path: str | os.PathLike[str], *, chunk: int = 1 << 20) -> str:
    """SHA-256 (hex) of a file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


class FileHashIndex:
    """File hashes remembered under ``(resolved path, size, mtime_ns)``, persisted as JSON beside the cache.

    Args:
        folder: where ``file-hashes.json`` lives; ``None`` keeps the index in memory only.
        verify: re-hash every file even when its path, size and mtime are unchanged (``--verify-cache``).

    Attributes:
        hashed: how many files were read and hashed by this instance (0 on a pure index hit).

    Example:
        >>> import tempfile, pathlib
        >>> tmp = pathlib.Path(tempfile.mkdtemp())
        >>> _ = (tmp / "a.bin").write_bytes(b"abc")
        >>> index = FileHashIndex(None)
        >>> index.digest(tmp / "a.bin") == index.digest(tmp / "a.bin"), index.hashed
        (True, 1)
    """

    def __init__(self, folder: str | os.PathLike[str] | None, *, verify: bool = False) -> None:
        self.file = None if folder is None else Path(folder) / HASH_INDEX_FILE
        self.verify = verify
        self.hashed = 0
        self._dirty = False
        self._entries: dict[str, list[Any]] = {}
        if self.file is not None and self.file.is_file():
            try:
                loaded = json.loads(self.file.read_text(encoding="utf-8"))
                self._entries = loaded if isinstance(loaded, dict) else {}
            except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
                logger.warning("ignoring unreadable hash index %s (%s)", self.file, err)

    def digest(self, path: str | os.PathLike[str]) -> str:
        """SHA-256 of the file at ``path``; read only when unknown, changed (size/mtime) or ``verify``."""
        resolved = Path(path).resolve()
        stat = resolved.stat()
        key = str(resolved)
        entry = self._entries.get(key)
        if not self.verify and entry is not None and entry[:2] == [stat.st_size, stat.st_mtime_ns]:
            return str(entry[2])
        value = sha256_file(resolved)
        self.hashed += 1
        self._entries[key] = [stat.st_size, stat.st_mtime_ns, value]
        self._dirty = True
        return value

    def save(self) -> None:
        """Write the index (atomically) if it changed; a read-only cache folder only logs a warning."""
        if self.file is None or not self._dirty:
            return
        try:
            self.file.parent.mkdir(parents=True, exist_ok=True)
            with atomic_open(self.file) as handle:
                handle.write(json.dumps(self._entries).encode())
            self._dirty = False
        except OSError as err:
            logger.warning("could not write the hash index %s (%s)", self.file, err)


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

    def save_parts(self, key: str, parts: dict[str, Any]) -> None:
        """Write what the key was computed from as ``<key>.json`` beside the entry (for people, never read back)."""
        if not self.enabled:
            return
        with atomic_open(self.folder / f"{key}.json") as handle:
            handle.write(json.dumps(parts, indent=1, sort_keys=True, default=str).encode())
