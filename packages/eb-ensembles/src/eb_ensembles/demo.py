"""The demo: E1 (exact EB on interpolating linear members) and a small E5 on digits, with a methods table."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from eb_ensembles.experiments.e1 import run_e1
from eb_ensembles.experiments.e5 import run_e5

__all__ = ["run_demo"]


def run_demo(out: Path, *, seed: int = 0, fast: bool = False, device: str | None = None) -> dict[str, Any]:
    """Run E1 and E5 (digits) into ``out/E1`` and ``out/E5``; return both results.

    ``fast`` uses E1 with 10 members and E5's smoke budget (seconds; the numbers are a smoke run and mean
    nothing); otherwise E5 trains M = 10 members and one network per baseline (MAP, MC dropout, VI, Laplace,
    SWAG) for 40 epochs each.
    """
    e1 = run_e1(Path(out) / "E1", seed=seed, fast=fast)
    e5 = run_e5(Path(out) / "E5", seed=seed, dataset="digits", fast=fast, sizes=(1, 2, 5, 10), device=device)
    return {"E1": e1, "E5": e5}
