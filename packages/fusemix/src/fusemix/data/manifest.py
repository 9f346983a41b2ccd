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
import io
import json
import os
from pathlib import Path

from fusemix.captions import clean_caption
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

    def item_fingerprint(self) -> str:
        """SHA-256 (16 hex digits) of the item ids, their resolved paths and each file's size and modification
        time: the key of the item-side cache.

        Captions are not part of it, so editing a caption never re-encodes the items; paths are absolute, so the
        key does not depend on the working directory; a file rewritten in place (same name, new content) changes
        its size or modification time, so its latents are not reused. Copying the files elsewhere re-encodes.
        """
        digest = hashlib.sha256()
        for item_id, path in zip(self.item_ids, self.item_paths, strict=True):
            try:
                stat = path.stat()
                state = f"{stat.st_size}:{stat.st_mtime_ns}"
            except OSError:
                state = "missing"
            digest.update(f"i\0{item_id}\0{path}\0{state}\n".encode())
        return digest.hexdigest()[:16]

    def text_fingerprint(self) -> str:
        """SHA-256 (16 hex digits) of every caption with the id of its item: the key of the text-side cache."""
        digest = hashlib.sha256()
        for caption, item in zip(self.captions, self.txt2item, strict=True):
            digest.update(f"t\0{self.item_ids[item]}\0{caption}\n".encode())
        return digest.hexdigest()[:16]

    def ids_fingerprint(self) -> str:
        """SHA-256 (16 hex digits) of the item ids alone: both sides of one split must agree on it."""
        return hashlib.sha256("\0".join(self.item_ids).encode()).hexdigest()[:16]


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


def _decode(path: Path) -> str:
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")  # a leading UTF-8 byte-order mark is accepted and dropped
    except UnicodeDecodeError as err:
        raise UserError(
            f"manifest {str(path)!r} is not UTF-8 (byte 0x{data[err.start]:02x} at offset {err.start}); "
            "re-save it as UTF-8"
        ) from err


def _rows(path: Path) -> list[tuple[int, dict[str, str]]]:
    text = _decode(path)
    if path.suffix.lower() in (".jsonl", ".ndjson"):
        rows = []
        # records are separated by "\n" only: str.splitlines would also split on U+2028, U+0085, ... inside strings
        for number, line in enumerate(text.split("\n"), start=1):
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
    # the csv module reads quoted fields holding newlines; newline="" hands it the line endings untouched
    reader = csv.DictReader(io.StringIO(text, newline=""))
    try:
        fieldnames = [name.strip() for name in reader.fieldnames or []]
        reader.fieldnames = fieldnames
        missing = [c for c in REQUIRED_COLUMNS if c not in fieldnames]
        if missing:
            raise UserError(
                f"manifest {str(path)!r} lacks column(s) {', '.join(missing)}; expected a header with "
                "item_id,item_path,caption,split"
            )
        rows = []
        for row in reader:
            # the line a record starts on (a quoted caption may span several lines)
            number = reader.line_num - sum(str(v).count("\n") for v in row.values() if v)
            rows.append((number, {k: v or "" for k, v in row.items() if isinstance(k, str)}))
        return rows
    except csv.Error as err:
        raise UserError(f"manifest {str(path)!r} line {reader.line_num}: not valid CSV ({err})") from err


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
    root = path.parent.resolve()
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
        if not clean_caption(caption):
            raise UserError(f"{where}: caption {caption!r} of item {item_id!r} is empty after cleaning")
        full = (Path(item_path) if Path(item_path).is_absolute() else root / item_path).resolve()
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
