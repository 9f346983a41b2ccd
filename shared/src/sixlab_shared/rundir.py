"""The run directory: resolved config, line-by-line metrics, an atomic summary, atomic checkpoints.

Layout of ``RunDir(path)``::

    path/config.json       the resolved configuration + versions, seed, device, git commit (written once per run)
    path/metrics.jsonl     one JSON object per line, appended and flushed line by line (survives a killed process)
    path/summary.json      final results, written atomically (old summary or new, never half)
    path/checkpoints/      *.safetensors written atomically by save_checkpoint

While a process writes a run, it holds an exclusive advisory lock on the folder itself (``flock`` on the
directory, so no lock file appears among the outputs); a second process that opens the same folder for writing
is refused with one line instead of interleaving its metrics and checkpoints with the first one's. The lock goes
with the process (a killed run leaves no stale lock) and with the last ``RunDir`` object of that folder.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import subprocess
import sys
import weakref
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

from sixlab_shared.atomic import _json_default, atomic_write_json, atomic_write_text
from sixlab_shared.checkpoint import load_checkpoint, save_checkpoint
from sixlab_shared.device import is_main_process
from sixlab_shared.errors import UserError

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.jsonl"
SUMMARY_FILE = "summary.json"
CHECKPOINT_DIR = "checkpoints"

try:  # POSIX; elsewhere runs are not locked
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

_FOLDER_LOCKS: dict[str, list[int]] = {}  # resolved folder -> [fd, RunDir objects of this process holding it]


def _lock_folder(path: Path) -> str | None:
    """Take (or share, within this process) the exclusive lock on a run folder; the key to release it."""
    if fcntl is None:
        return None
    key = str(path.resolve())
    if key in _FOLDER_LOCKS:
        _FOLDER_LOCKS[key][1] += 1
        return key
    fd = os.open(key, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as err:
        os.close(fd)
        raise UserError(
            f"{str(path)!r} is being written by another process (its run folder is locked); "
            "wait for that run to finish or choose another --out"
        ) from err
    _FOLDER_LOCKS[key] = [fd, 1]
    return key


def _unlock_folder(key: str) -> None:
    held = _FOLDER_LOCKS.get(key)
    if held is None:
        return
    held[1] -= 1
    if held[1] == 0:
        del _FOLDER_LOCKS[key]
        os.close(held[0])  # closing the descriptor releases the flock


def _git_commit(cwd: Path) -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=5, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def environment_info(packages: tuple[str, ...] = ()) -> dict[str, Any]:
    """Versions and platform facts worth recording with a run (python, torch, numpy, CUDA, given packages)."""
    versions: dict[str, str | None] = {}
    for name in ("sixlab-shared", "torch", "numpy", *packages):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "versions": versions,
        "cuda": torch.version.cuda,
        "git_commit": _git_commit(Path.cwd()),
        "argv": sys.argv,
        "time_utc": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    }


class RunDir:
    """A run's output folder; only the main process writes (the others' writes are no-ops).

    Args:
        path: the folder (created if missing).
        resume: continue an existing run: ``metrics.jsonl`` is appended to, ``config.json`` must already exist.
        overwrite: allow starting a fresh run in a folder that already holds ``config.json``. Without it (and
            without ``resume``), that is an error, so a finished run is never clobbered by accident.
        flags: the command-line flags of the calling command that deal with an existing run, named in the error
            message (a command without ``--resume`` passes ``("--overwrite",)`` so the message never suggests a
            flag it does not have).

    Raises:
        UserError: the folder holds a run and neither ``resume`` nor ``overwrite`` was given; ``resume`` was
            given but there is no run to resume; the path exists and is not a folder; another process is writing
            to the folder (see the module's note on locking).

    Example:
        >>> import tempfile
        >>> run = RunDir(tempfile.mkdtemp() + "/run")
        >>> run.write_config({"lr": 0.1}, seed=0)
        >>> run.log_metrics(step=1, loss=0.5)
        >>> run.read_metrics()[0]["loss"]
        0.5
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        resume: bool = False,
        overwrite: bool = False,
        flags: tuple[str, ...] = ("--resume", "--overwrite"),
    ) -> None:
        self.path = Path(path)
        self.resume = resume
        self.is_writer = is_main_process()
        if self.path.exists() and not self.path.is_dir():
            raise UserError(f"--out {str(self.path)!r} exists and is not a folder; choose another path")
        has_run = (self.path / CONFIG_FILE).is_file()
        if resume and not has_run:
            raise UserError(f"--resume given but {str(self.path)!r} holds no run (no {CONFIG_FILE}); drop --resume")
        if has_run and not resume and not overwrite:
            hints = {"--resume": "--resume to continue it", "--overwrite": "--overwrite to replace it"}
            how = "".join(f"pass {hints.get(flag, flag)}, " for flag in flags)
            raise UserError(f"{str(self.path)!r} already holds a run; {how}or choose another --out")
        if resume:
            self.read_config()  # a corrupt config.json is one line now, not a traceback later
        if self.is_writer:
            self.path.mkdir(parents=True, exist_ok=True)
            key = _lock_folder(self.path)
            if key is not None:
                weakref.finalize(self, _unlock_folder, key)
            if has_run and overwrite and not resume:
                (self.path / METRICS_FILE).unlink(missing_ok=True)

    def file(self, name: str) -> Path:
        """Path of a file inside the run directory (parent folders created)."""
        target = self.path / name
        if self.is_writer:
            target.parent.mkdir(parents=True, exist_ok=True)
        return target

    def write_config(
        self,
        config: dict[str, Any],
        *,
        seed: int | None = None,
        device: str | torch.device | None = None,
        packages: tuple[str, ...] = (),
    ) -> None:
        """Write ``config.json``: the resolved configuration, seed, device and :func:`environment_info`."""
        if not self.is_writer:
            return
        record = {
            "config": config,
            "seed": seed,
            "device": None if device is None else str(device),
            "environment": environment_info(packages),
        }
        atomic_write_json(self.path / CONFIG_FILE, record)

    def read_config(self) -> dict[str, Any]:
        """The ``config`` part of ``config.json``.

        Raises:
            UserError: the file is missing, not UTF-8 JSON, or holds no ``config`` object.
        """
        target = self.path / CONFIG_FILE
        try:
            record = json.loads(target.read_text(encoding="utf-8"))
        except FileNotFoundError as err:
            raise UserError(f"{str(self.path)!r} holds no run ({CONFIG_FILE} is missing)") from err
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise UserError(f"{str(target)!r} is corrupt ({type(err).__name__}); the run cannot be resumed") from err
        if not isinstance(record, dict) or not isinstance(record.get("config"), dict):
            raise UserError(f"{str(target)!r} is corrupt (no 'config' object); the run cannot be resumed")
        return record["config"]

    def rewind_metrics(self, step: int, *, drop_unstepped: bool = False) -> int:
        """Cut ``metrics.jsonl`` back to a checkpoint: drop every row whose ``step`` is above ``step``.

        Call it on ``--resume`` before logging again, so rows written after the last checkpoint (which the resumed
        run writes anew) are not repeated. A torn last line is dropped too. The file is rewritten atomically.

        Args:
            step: the checkpoint's step; rows with ``step <= step`` are kept.
            drop_unstepped: also drop rows that carry no ``step`` (e.g. per-member summaries written after training).

        Returns:
            The number of rows dropped.

        Example:
            >>> import tempfile
            >>> run = RunDir(tempfile.mkdtemp() + "/run")
            >>> for s in (1, 2, 3):
            ...     run.log_metrics(step=s, loss=1.0 / s)
            >>> run.rewind_metrics(2)
            1
            >>> [row["step"] for row in run.read_metrics()]
            [1, 2]
        """
        target = self.path / METRICS_FILE
        if not self.is_writer or not target.is_file():
            return 0
        lines = target.read_text(encoding="utf-8").splitlines()
        kept = []
        for row in _parse_lines(lines):  # a torn last line is dropped with the rest
            row_step = row.get("step")
            if (row_step is not None and row_step <= step) or (row_step is None and not drop_unstepped):
                kept.append(row)
        dropped = len(lines) - len(kept)
        if dropped:
            text = "".join(json.dumps(row, default=_json_default) + "\n" for row in kept)
            atomic_write_text(target, text)
        return dropped

    def log_metrics(self, step: int | None = None, **metrics: Any) -> None:
        """Append one line to ``metrics.jsonl`` and flush it to the OS, so a killed process keeps it.

        Keys are namespaced by convention (``loss/total``, ``eval/fd``).
        """
        if not self.is_writer:
            return
        record = {"step": step, **metrics} if step is not None else dict(metrics)
        line = json.dumps(record, default=_json_default)
        with open(self.path / METRICS_FILE, "a", encoding="utf-8") as handle:
            handle.write(line + "\n")
            handle.flush()

    def read_metrics(self) -> list[dict[str, Any]]:
        """Every complete line of ``metrics.jsonl`` (a torn last line from a crash is ignored)."""
        target = self.path / METRICS_FILE
        if not target.is_file():
            return []
        return _parse_lines(target.read_text(encoding="utf-8").splitlines())

    def write_summary(self, summary: dict[str, Any]) -> None:
        """Atomically write ``summary.json``."""
        if self.is_writer:
            atomic_write_json(self.path / SUMMARY_FILE, summary)

    def checkpoint_path(self, name: str = "last") -> Path:
        """``checkpoints/<name>.safetensors`` inside the run directory."""
        return self.path / CHECKPOINT_DIR / f"{name}.safetensors"

    def save_checkpoint(self, state: dict[str, Any], name: str = "last") -> Path:
        """Atomically save a nested ``state`` (see :func:`sixlab_shared.save_checkpoint`)."""
        target = self.checkpoint_path(name)
        if self.is_writer:
            save_checkpoint(target, state)
        return target

    def load_checkpoint(self, name: str = "last", *, device: str | torch.device = "cpu") -> dict[str, Any]:
        """Load ``checkpoints/<name>.safetensors``."""
        return load_checkpoint(self.checkpoint_path(name), device=device)

    def has_checkpoint(self, name: str = "last") -> bool:
        """Whether ``checkpoints/<name>.safetensors`` exists."""
        return self.checkpoint_path(name).is_file()


def _parse_lines(lines: list[str]) -> list[dict[str, Any]]:
    """The JSON objects of ``metrics.jsonl`` lines; a line that does not parse (torn by a crash) is skipped."""
    records = []
    for line in lines:
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records
