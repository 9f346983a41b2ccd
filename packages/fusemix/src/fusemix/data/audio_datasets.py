"""Manifests from the caption files of AudioCaps and Clotho as distributed, for clips a user already has on disk.

- **Clotho** (``clotho_captions_<split>.csv``): columns ``file_name, caption_1 .. caption_5``; one row per clip,
  five captions each. Item id: the file name; path: ``<audio_dir>/<file_name>``.
- **AudioCaps** (``train.csv``, ``val.csv``, ``test.csv``): columns ``audiocap_id, youtube_id, start_time,
  caption``; one row per caption (val/test: five rows per clip). Item id: ``<youtube_id>_<start_time>``; path:
  ``<audio_dir>/<pattern>`` with ``{youtube_id}``, ``{start_time}`` and ``{audiocap_id}`` filled in (downloads
  name their files differently; the default is ``{youtube_id}.wav``).

AudioCaps clips come from YouTube and some are always missing from a download: ``skip_missing`` drops their rows
and counts them instead of failing. The evaluation convention for both is CLAP's (reference §2.3): every caption a
query for text->audio, the best of a clip's captions for audio->text.
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

from sixlab_shared import UserError

CLOTHO_COLUMNS = ("file_name", "caption_1", "caption_2", "caption_3", "caption_4", "caption_5")
AUDIOCAPS_COLUMNS = ("audiocap_id", "youtube_id", "start_time", "caption")


def _read_csv(path: Path, required: tuple[str, ...]) -> list[dict[str, str]]:
    if not path.is_file():
        raise UserError(f"caption file {str(path)!r} does not exist or is not a file")
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise UserError(f"caption file {str(path)!r} is not UTF-8 (offset {err.start}); re-save it as UTF-8") from err
    reader = csv.DictReader(io.StringIO(text, newline=""))
    missing = [c for c in required if c not in (reader.fieldnames or [])]
    if missing:
        raise UserError(
            f"caption file {str(path)!r} lacks column(s) {', '.join(missing)}; expected {', '.join(required)}"
        )
    return list(reader)


def clotho_rows(captions_csv: str | os.PathLike[str], audio_dir: str | os.PathLike[str], split: str,
                *, skip_missing: bool = False) -> tuple[list[dict[str, str]], list[str]]:  # fmt: skip
    """Manifest rows (five per clip) from a Clotho captions file.

    Returns:
        ``(rows, missing)``: manifest rows with absolute item paths, and the clips skipped for a missing file.

    Raises:
        UserError: a missing or malformed captions file; a missing clip without ``skip_missing``.
    """
    audio_dir = Path(audio_dir).resolve()
    rows, missing = [], []
    for number, record in enumerate(_read_csv(Path(captions_csv), CLOTHO_COLUMNS), start=2):
        name = record["file_name"].strip()
        path = audio_dir / name
        if not path.is_file():
            if not skip_missing:
                raise UserError(f"{captions_csv} line {number}: clip {str(path)!r} does not exist (or --skip-missing)")
            missing.append(name)
            continue
        for column in CLOTHO_COLUMNS[1:]:
            rows.append({"item_id": name, "item_path": str(path), "caption": record[column], "split": split})
    return rows, missing


def audiocaps_rows(captions_csv: str | os.PathLike[str], audio_dir: str | os.PathLike[str], split: str,
                   *, pattern: str = "{youtube_id}.wav",
                   skip_missing: bool = False) -> tuple[list[dict[str, str]], list[str]]:  # fmt: skip
    """Manifest rows (one per caption) from an AudioCaps captions file.

    Returns:
        ``(rows, missing)``: manifest rows with absolute item paths, and the item ids skipped for a missing file.

    Raises:
        UserError: a missing or malformed captions file, a bad ``pattern``, a missing clip without
            ``skip_missing``.
    """
    audio_dir = Path(audio_dir).resolve()
    rows, missing = [], []
    for number, record in enumerate(_read_csv(Path(captions_csv), AUDIOCAPS_COLUMNS), start=2):
        fields = {k: record[k].strip() for k in ("audiocap_id", "youtube_id", "start_time")}
        try:
            path = audio_dir / pattern.format(**fields)
        except (KeyError, IndexError, ValueError) as err:
            raise UserError(
                f"--pattern {pattern!r} may use {{youtube_id}}, {{start_time}} and {{audiocap_id}} ({err})"
            ) from err
        item_id = f"{fields['youtube_id']}_{fields['start_time']}"
        if not path.is_file():
            if not skip_missing:
                raise UserError(f"{captions_csv} line {number}: clip {str(path)!r} does not exist (or --skip-missing)")
            if item_id not in missing:
                missing.append(item_id)
            continue
        rows.append({"item_id": item_id, "item_path": str(path), "caption": record["caption"], "split": split})
    return rows, missing
