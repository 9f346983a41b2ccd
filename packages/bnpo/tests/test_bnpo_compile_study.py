"""Slow study: the CompILE vs BNPO table of the README (benchmarks/compare_compile.py), re-run and checked.

About 35 min on the shared 2-core machine (24 fits, two processes). The figures asserted are the README's with
margins: they are what the comparison found, not thresholds from the paper.
"""

from __future__ import annotations

import importlib.util
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pytest

BENCHMARK = Path(__file__).resolve().parents[1] / "benchmarks" / "compare_compile.py"


def _benchmark():
    spec = importlib.util.spec_from_file_location("compare_compile", BENCHMARK)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # so the worker processes can unpickle run_cell
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_compile_vs_bnpo_table(capsys) -> None:
    bench = _benchmark()
    cells = [(env, method, seed) for seed in (0, 1, 2) for env in bench.DEFAULT_ENVS for method in bench.METHODS[:4]]
    with ProcessPoolExecutor(max_workers=2) as pool:
        rows = list(pool.map(bench.run_cell, *zip(*cells, strict=True), [False] * len(cells)))
    with capsys.disabled():
        print("\n" + bench.table(rows))

    def values(env: str, method: str, key: str) -> np.ndarray:
        return np.array([r[key] for r in rows if r["env"] == env and r["method"] == method], dtype=float)

    # Landmarks (README: held-out -0.616 vs -1.115 / -0.994, margins >= 0.34 on every seed; accuracy 0.78 vs 0.27)
    bnpo_ll = values("Landmarks", "BNPO", "heldout_loglik_per_step")
    for method in ("CompILE", "NP-CompILE"):
        assert np.all(bnpo_ll > values("Landmarks", method, "heldout_loglik_per_step") + 0.2)
        assert values("Landmarks", "BNPO", "accuracy").mean() > values("Landmarks", method, "accuracy").mean() + 0.3
    # Room(6): NP-CompILE recovers the rooms on at least 2 of 3 seeds (README: 1.0, 0.896, 1.0)
    assert (values("Room(6)", "NP-CompILE", "accuracy") >= 0.85).sum() >= 2
    for row in rows:
        assert np.isfinite(row["heldout_loglik_per_step"]) and row["heldout_loglik_per_step"] < 0
