"""The command line shared by the rate studies over seeds (``room6_rate.py``, ``landmarks_rate.py``): run one recipe
on consecutive seeds, print one JSON line per seed and append the full row to ``--out`` as soon as it is done."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1 (argparse turns the ValueError into one line and exit 2)."""
    value = int(text)
    if value < 1:
        raise ValueError(text)
    return value


def main(run: Callable[[int, str], dict], recipes: dict, default: str, description: str, quiet: tuple[str, ...]):
    """Parse ``--recipe``, ``--seeds``, ``--first-seed`` and ``--out``, then call ``run(seed, recipe)`` per seed
    (printing each row without the keys in ``quiet``)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--recipe", choices=sorted(recipes), default=default)
    parser.add_argument("--seeds", type=positive_int, default=10)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--out", required=True, help="JSON-lines file, appended to (rerun with --first-seed to resume)")
    args = parser.parse_args()
    out = Path(args.out)
    if out.is_dir() or not out.parent.is_dir():
        parser.error(f"--out {out} must be a file in an existing folder")
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        row = run(seed, args.recipe)
        print(json.dumps({k: v for k, v in row.items() if k not in quiet}), flush=True)
        with open(args.out, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(row) + "\n")
