"""A generic paired-dataset manifest: one row per (item, caption) with the item's id and split.

CSV (with a header) or JSONL, columns ``item_id``, ``item_path``, ``caption``, ``split``. ``item_path`` is relative
to the manifest's folder (or absolute); ``item_id`` defaults to ``item_path``, ``split`` to ``train``. Several rows
with the same ``item_id`` give that item several captions, as in COCO, Flickr30K, AudioCaps or Clotho.

Example (CSV)::

    item_id,item_path,caption,split
    0001,images/0001.jpg,A dog runs on grass.,train
    0001,images/0001.jpg,A brown dog outside.,train
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import os
from pathlib import Path

from sixlab_shared import UserError

REQUIRED_COLUMNS = ("item_path", "caption")


@dataclasses.dataclass(frozen=True)
class PairedSplit:
    """One split: unique items (first-appearance order) and every caption with the index of its item."""

    name: str
    item_ids: list[str]
    item_paths: list[Path]
    captions: list[str]
    txt2item: list[int]

    def fingerprint(self) -> str:
        """SHA-256 (16 hex digits) of ids, paths and captions: a cache built from other content is never reused."""
        digest = hashlib.sha256()
        for item_id, path in zip(self.item_ids, self.item_paths, strict=True):
            digest.update(f"i\0{item_id}\0{path}\n".encode())
        for caption, item in zip(self.captions, self.txt2item, strict=True):
            digest.update(f"t\0{item}\0{caption}\n".encode())
        return digest.hexdigest()[:16]


@dataclasses.dataclass(frozen=True)
class PairedManifest:
    """A parsed manifest: its path and its splits by name."""

    path: Path
    splits: dict[str, PairedSplit]

    def split(self, name: str) -> PairedSplit:
        """The named split.

        Raises:
            UserError: the manifest has no such split (the message lists the splits it has).
        """
        if name not in self.splits:
            raise UserError(
                f"manifest {str(self.path)!r} has no split {name!r}; it has {', '.join(sorted(self.splits))}"
            )
        return self.splits[name]


def _rows(path: Path) -> list[tuple[int, dict[str, str]]]:
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() in (".jsonl", ".ndjson"):
        rows = []
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise UserError(f"manifest {str(path)!r} line {number}: not valid JSON ({err.msg})") from err
            if not isinstance(record, dict):
                raise UserError(f"manifest {str(path)!r} line {number}: expected a JSON object")
            rows.append((number, {k: "" if v is None else str(v) for k, v in record.items()}))
        return rows
    reader = csv.DictReader(text.splitlines())
    missing = [c for c in REQUIRED_COLUMNS if c not in (reader.fieldnames or [])]
    if missing:
        raise UserError(
            f"manifest {str(path)!r} lacks column(s) {', '.join(missing)}; expected a header with "
            "item_id,item_path,caption,split"
        )
    return [(number, {k: v or "" for k, v in row.items()}) for number, row in enumerate(reader, start=2)]


def read_manifest(path: str | os.PathLike[str], *, check_files: bool = True) -> PairedManifest:
    """Parse and validate a manifest.

    Args:
        path: a ``.csv`` or ``.jsonl`` file.
        check_files: fail when an item file does not exist (unreadable-but-present files are handled at
            extraction time, skipped with a count or failed under ``--strict``).

    Raises:
        UserError: missing file or column, empty caption, missing item file, an item id with two paths, a split
            of a single item spread across splits; each names the line and item.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"manifest {str(path)!r} does not exist; pass a CSV or JSONL file to --manifest")
    root = path.parent
    items: dict[str, dict[str, tuple[int, Path]]] = {}
    captions: dict[str, list[tuple[str, str]]] = {}
    split_of: dict[str, str] = {}
    for number, row in _rows(path):
        where = f"manifest {str(path)!r} line {number}"
        item_path = row.get("item_path", "").strip()
        if not item_path:
            raise UserError(f"{where}: empty item_path")
        item_id = row.get("item_id", "").strip() or item_path
        caption = row.get("caption", "").strip()
        split = row.get("split", "").strip() or "train"
        if not caption:
            raise UserError(f"{where}: empty caption for item {item_id!r}")
        full = Path(item_path) if Path(item_path).is_absolute() else root / item_path
        if item_id in split_of and split_of[item_id] != split:
            raise UserError(f"{where}: item {item_id!r} is in split {split_of[item_id]!r} and {split!r}")
        split_of[item_id] = split
        known = items.setdefault(split, {})
        if item_id in known and known[item_id][1] != full:
            raise UserError(f"{where}: item {item_id!r} has two paths, {str(known[item_id][1])!r} and {str(full)!r}")
        if item_id not in known:
            if check_files and not full.is_file():
                raise UserError(f"{where}: file of item {item_id!r} does not exist: {str(full)!r}")
            known[item_id] = (number, full)
        captions.setdefault(split, []).append((item_id, caption))
    if not items:
        raise UserError(f"manifest {str(path)!r} has no rows")
    splits = {}
    for split, known in items.items():
        ids = list(known)
        position = {item_id: i for i, item_id in enumerate(ids)}
        splits[split] = PairedSplit(
            name=split,
            item_ids=ids,
            item_paths=[known[i][1] for i in ids],
            captions=[c for _, c in captions[split]],
            txt2item=[position[i] for i, _ in captions[split]],
        )
    return PairedManifest(path=path, splits=splits)


def write_manifest(path: str | os.PathLike[str], rows: list[dict[str, str]]) -> None:
    """Write rows (``item_id``, ``item_path``, ``caption``, ``split``) as a CSV manifest, atomically."""
    from io import StringIO

    from sixlab_shared import atomic_write_text

    buffer = StringIO()
    writer = csv.DictWriter(buffer, fieldnames=["item_id", "item_path", "caption", "split"], lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, buffer.getvalue())
