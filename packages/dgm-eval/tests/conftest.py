"""Shared fixtures of the dgm-eval tests (the encoders' own tests have their own conftest in tests/encoders/)."""

from __future__ import annotations

import os

import numpy as np
import pytest

# No test may touch the network: weights come from tiny local models or not at all.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(autouse=True)
def _cache_in_tmp(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """The default feature cache lives in a temporary folder: tests never write outside tmp_path."""
    monkeypatch.setenv("DGM_EVAL_CACHE", str(tmp_path_factory.mktemp("feature-cache")))


def write_pngs(folder, images) -> list:
    """Write uint8 (N, H, W, 3) images as PNGs named img000000.png ... (returns the paths)."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, img in enumerate(images):
        path = folder / f"img{i:06d}.png"
        Image.fromarray(img).save(path)
        paths.append(path)
    return paths


@pytest.fixture
def image_sets(tmp_path, rng):
    """Three small image folders (ref 40, gen 30, test 30; 16x16 RGB) and the arrays they hold."""
    base = rng.integers(0, 256, size=(1, 16, 16, 3))
    ref = np.clip(base + rng.normal(0, 40, size=(40, 16, 16, 3)), 0, 255).astype(np.uint8)
    gen = np.clip(base + 20 + rng.normal(0, 50, size=(30, 16, 16, 3)), 0, 255).astype(np.uint8)
    test = np.clip(base + rng.normal(0, 40, size=(30, 16, 16, 3)), 0, 255).astype(np.uint8)
    for name, arr in (("ref", ref), ("gen", gen), ("test", test)):
        write_pngs(tmp_path / name, arr)
    return {"dir": tmp_path, "ref": ref, "gen": gen, "test": test}


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
