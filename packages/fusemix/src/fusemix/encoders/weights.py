"""What the latent cache knows about an encoder's weights: a fingerprint of the files, or the pinned hub revision.

The cache key holds the spec's fingerprint (settings) *and* this weights fingerprint, so swapping the files of a
local model folder, or a hub model updated upstream, never reuses latents computed with other weights.

- ``frozen`` encoders: the weights are regenerated from the spec's seed, already part of the spec's fingerprint.
- a local folder (or the packaged MiniLM): SHA-256 over every file of the folder (config, weights, tokenizer and
  processor files; names and contents), memoised per process on (path, size, mtime).
- a hub id: the commit of the snapshot in the local Hugging Face cache (``spec.revision`` when it pins a commit).
  When the model is not downloaded here, ``"unresolved:<revision>"``: such a key never matches a cache made from
  resolved weights, so the cache is rebuilt with the weights once they are available.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

from fusemix.encoders.spec import EncoderSpec

_MEMO: dict[tuple[str, int, int], str] = {}
_COMMIT = re.compile(r"^[0-9a-f]{40}$")


def _file_digest(path: Path) -> str:
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    if key not in _MEMO:
        digest = hashlib.sha256()
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        _MEMO[key] = digest.hexdigest()
    return _MEMO[key]


def folder_fingerprint(folder: str | os.PathLike[str]) -> str:
    """SHA-256 (16 hex digits) over the relative names and contents of every file under ``folder``.

    Hidden entries (``.cache``, ``.git``) are skipped.
    """
    folder = Path(folder)
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder)
        if path.is_file() and not any(part.startswith(".") for part in relative.parts):
            digest.update(f"{relative.as_posix()}\0{_file_digest(path)}\n".encode())
    return digest.hexdigest()[:16]


def hub_revision(repo_id: str, revision: str | None = None) -> str | None:
    """The commit of ``repo_id`` in the local Hugging Face cache (no network), or ``None`` when not downloaded."""
    if revision is not None and _COMMIT.match(revision):
        return revision
    from huggingface_hub import try_to_load_from_cache

    try:
        found = try_to_load_from_cache(repo_id, "config.json", revision=revision)
    except ValueError:  # not a valid repo id
        return None
    if not isinstance(found, str):
        return None
    parts = Path(found).parts
    return parts[parts.index("snapshots") + 1] if "snapshots" in parts else None


def weights_fingerprint(spec: EncoderSpec) -> str:
    """A short string that changes whenever the encoder's weights change (see the module docstring).

    Example:
        >>> from fusemix.encoders import resolve_encoder
        >>> weights_fingerprint(resolve_encoder("frozen-conv", "image"))
        'seeded'
    """
    if spec.backend == "frozen":
        return "seeded"
    if spec.backend == "concat":
        from fusemix.encoders.spec import resolve_encoder

        return "+".join(weights_fingerprint(resolve_encoder(name, spec.modality)) for name in spec.parts)
    from fusemix.encoders.huggingface import model_location

    location = model_location(spec)
    if spec.backend == "diffusers" and Path(location).is_dir():  # only the text side makes the latents
        parts = [Path(location) / sub for sub in ("text_encoder", "tokenizer") if (Path(location) / sub).is_dir()]
        if parts:
            return "files:" + "+".join(folder_fingerprint(part) for part in parts)
    if Path(location).is_dir():
        return f"files:{folder_fingerprint(location)}"
    commit = hub_revision(location, spec.revision)
    return f"hub:{commit}" if commit else f"unresolved:{spec.revision or 'main'}"
