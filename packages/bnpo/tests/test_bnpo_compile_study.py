"""Slow study: the CompILE vs BNPO table of the README (benchmarks/compare_compile.py), re-run and checked on
TaxiHidden, the row whose every cell was measured under the current budget rule (CompILE trained until its held-out
log-likelihood stops improving, at most 500 epochs; BNPO its recipe).

About 1,400 CPU seconds (12 fits, two processes of one thread; about 15 min on the shared 2-core machine). The
figures asserted are the README's with margins: they are what the comparison found on seeds 0-2, not thresholds
from the paper.
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
def test_compile_vs_bnpo_table_on_taxi(capsys) -> None:
    bench = _benchmark()
    cells = [("TaxiHidden", method, seed) for seed in (0, 1, 2) for method in bench.METHODS[:4]]
    with ProcessPoolExecutor(max_workers=2) as pool:
        rows = list(pool.map(bench.run_cell, *zip(*cells, strict=True), [False] * len(cells)))
    with capsys.disabled():
        print("\n" + bench.table(rows) + "\n\n" + bench.curve_table(rows))

    def values(method: str, key: str) -> np.ndarray:
        return np.array([r[key] for r in sorted(rows, key=lambda r: r["seed"]) if r["method"] == method], float)

    # README, seeds 0-2: held-out BNPO -0.274 / -0.214 / -0.201, fixed K -0.233 / -0.275 / -0.278,
    # CompILE -1.091 / -1.296 / -0.967, NP-CompILE -0.416 / -0.395 / -0.808 (smallest margins 0.77 and 0.14)
    compile_ll = values("CompILE", "heldout_loglik_per_step")
    for method in ("BNPO", "BNPO fixed K"):
        assert np.all(values(method, "heldout_loglik_per_step") > compile_ll + 0.4)
    assert np.all(values("BNPO", "heldout_loglik_per_step") > values("NP-CompILE", "heldout_loglik_per_step") + 0.05)
    # accuracy BNPO 0.537 / 0.607 / 0.515 against CompILE 0.418 / 0.399 / 0.399 (smallest margin 0.12)
    assert np.all(values("BNPO", "accuracy") > values("CompILE", "accuracy") + 0.05)
    # the budget rule: every CompILE fit stopped by the plateau or the cap, with its curve recorded
    for row in rows:
        assert np.isfinite(row["heldout_loglik_per_step"]) and row["heldout_loglik_per_step"] < 0
        if row["method"] in ("CompILE", "NP-CompILE"):
            assert row["epochs_trained"] <= bench.COMPILE_MAX_EPOCHS and len(row["heldout_curve"]) >= 10
