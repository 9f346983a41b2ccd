"""The files and the table of ``dgm-eval compute``: ``config.json``, ``results.json``, ``results.csv``,
``realism.npz``, and the plain-text table; result keys ordered as the metric registry lists them.
"""

from __future__ import annotations

import csv
import dataclasses
import io
from pathlib import Path
from typing import Any

import numpy as np

from dgm_eval._version import __version__
from dgm_eval.api import scalar_results
from dgm_eval.metric_registry import METRICS
from sixlab_shared import RunDir, atomic_open, atomic_write_json, atomic_write_text, is_main_process


def write_results(
    out: Path,
    cfg: Any,
    results: dict[str, dict[str, Any]],
    *,
    skipped: dict[str, int] | None = None,
    resolved: dict[str, Any] | None = None,
) -> None:
    """Write ``config.json`` (resolved config + environment), ``results.json``, ``results.csv`` and extras.

    Only the main process writes (under accelerate/torchrun every process computes the same results).
    """
    if not is_main_process():
        return
    run = RunDir(out, overwrite=True)
    config = dataclasses.asdict(cfg) if dataclasses.is_dataclass(cfg) else dict(cfg)
    if resolved is not None:
        config["resolved"] = resolved
    run.write_config(config, seed=getattr(cfg, "seed", None), packages=("dgm-eval",))
    table = {gen: scalar_results(values) for gen, values in results.items()}
    extras: dict[str, Any] = {}
    for gen, values in results.items():
        if "vendi_per_class" in values:
            extras.setdefault("vendi_per_class", {})[gen] = values["vendi_per_class"]
    atomic_write_json(
        out / "results.json",
        {"version": __version__, "results": table, **extras, "skipped_unreadable": skipped or {}},
    )
    keys = sorted({key for row in table.values() for key in row}, key=_key_order)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["gen", *keys])
    for gen, row in table.items():
        writer.writerow([gen, *(row.get(key, "") for key in keys)])
    atomic_write_text(out / "results.csv", buffer.getvalue())
    realism_arrays = {
        f"run{i:02d}": values["realism"] for i, values in enumerate(results.values()) if "realism" in values
    }
    if realism_arrays:
        with atomic_open(out / "realism.npz") as handle:
            np.savez(handle, gens=np.asarray(list(results)), **realism_arrays)


_ORDER = [key for spec in METRICS for key in spec.result_keys] + ["n_ref", "n_gen"]


def _key_order(key: str) -> tuple[int, str]:
    return (_ORDER.index(key), key) if key in _ORDER else (len(_ORDER), key)


def format_table(results: dict[str, dict[str, Any]]) -> str:
    """A plain-text table: one row per generated set, one column per scalar result."""
    table = {gen: scalar_results(values) for gen, values in results.items()}
    keys = sorted({key for row in table.values() for key in row}, key=_key_order)
    header = ["gen", *keys]
    rows = [[gen, *(_fmt(row.get(key)) for key in keys)] for gen, row in table.items()]
    widths = [max(len(str(line[i])) for line in [header, *rows]) for i in range(len(header))]
    lines = [
        "  ".join(str(cell).ljust(width) for cell, width in zip(line, widths, strict=True)) for line in [header, *rows]
    ]
    return "\n".join(lines)


def _fmt(value: Any) -> str:
    if value is None:
        return ""
    if float(value).is_integer() and abs(value) >= 1:
        return str(int(value))
    return f"{value:.4g}"
