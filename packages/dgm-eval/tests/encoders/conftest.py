"""Fixtures of the encoder tests: offline hub settings, seeded test images, an image folder and its source."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def pytest_configure(config: pytest.Config) -> None:
    # torch.distributed's gloo backend warns about IPv6 lookups on some hosts when the torchrun test spawns.
    config.addinivalue_line("filterwarnings", "ignore:.*Mismatched type of socket family.*:UserWarning")


@pytest.fixture(scope="session", autouse=True)
def _offline_hubs(tmp_path_factory: pytest.TempPathFactory):
    """No test may touch the network: hubs offline, caches in a temporary folder."""
    cache = tmp_path_factory.mktemp("hub-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.setenv("TRANSFORMERS_OFFLINE", "1")
        mp.setenv("HF_HOME", str(cache / "hf"))
        mp.setenv("TORCH_HOME", str(cache / "torch"))
        yield


def make_images(n: int, seed: int = 0, sizes: tuple[tuple[int, int], ...] = ((40, 52), (33, 33), (64, 48))):
    """``n`` seeded RGB images of varied sizes (smooth gradients plus noise, so resizing matters)."""
    rng = np.random.default_rng(seed)
    images = []
    for i in range(n):
        h, w = sizes[i % len(sizes)]
        yy, xx = np.mgrid[0:h, 0:w]
        base = np.stack([xx * 255 / w, yy * 255 / h, (xx + yy) * 127 / (h + w)], axis=2)
        noisy = base + rng.normal(0, 40, size=(h, w, 3))
        images.append(Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8), mode="RGB"))
    return images


@pytest.fixture
def images() -> list[Image.Image]:
    return make_images(7)


@pytest.fixture(scope="session")
def make_test_images():
    return make_images


class FolderSource:
    """Minimal stand-in for the METRICS side's ImageSource: sorted PNG/JPEG files opened as RGB PIL images."""

    def __init__(self, folder: Path) -> None:
        self.paths = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in {".png", ".jpg", ".jpeg"})

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> Image.Image:
        with Image.open(self.paths[i]) as image:
            return image.convert("RGB")


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "images"
    folder.mkdir()
    for i, image in enumerate(make_images(5, seed=3)):
        image.save(folder / f"img_{i:02d}.png")
    return folder


@pytest.fixture
def folder_source():
    return FolderSource
