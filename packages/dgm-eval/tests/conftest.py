"""Shared fixtures of the dgm-eval tests (the encoders' own tests have their own conftest in tests/encoders/)."""

from __future__ import annotations

import os

import numpy as np
import pytest

# No test may touch the network: weights come from tiny local models or not at all.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


@pytest.fixture
def feats(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Two continuous feature sets of different sizes, slightly shifted: (300, 24) and (260, 24) float64."""
    real = rng.normal(size=(300, 24))
    fake = rng.normal(size=(260, 24)) * 1.05 + 0.1
    return real, fake


def pytest_configure(config: pytest.Config) -> None:
    # pytorch-fid (our FD reference in tests) calls scipy.linalg.sqrtm(disp=False), deprecated in SciPy 1.16+.
    config.addinivalue_line("filterwarnings", "ignore:The `disp` argument is deprecated:DeprecationWarning")
    # vendi-score (our Vendi reference in tests) imports scipy.sparse through a namespace SciPy deprecated.
    config.addinivalue_line(
        "filterwarnings", "ignore:Please import `csr_matrix` from the `scipy.sparse` namespace:DeprecationWarning"
    )
