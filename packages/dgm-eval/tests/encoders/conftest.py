"""Fixtures of the encoder tests: offline hub settings, seeded test images, an image folder and its source."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image


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
    for i, image in enumerate(make_images(2, seed=3)):
        image.save(folder / f"img_{i:02d}.png")
    return folder


@pytest.fixture
def folder_source():
    return FolderSource


@pytest.fixture(scope="session")
def tiny_hf_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Tiny random models of each transformers family, saved with save_pretrained like the hub checkpoints."""
    import torch
    from transformers import (
        CLIPConfig,
        CLIPModel,
        ConvNextConfig,
        ConvNextModel,
        Data2VecVisionConfig,
        Data2VecVisionModel,
        Dinov2Config,
        Dinov2Model,
        ViTMAEConfig,
        ViTMAEForPreTraining,
    )

    root = tmp_path_factory.mktemp("tiny-hf")
    vit = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64}
    builders = {
        # image_size 518 as the real DINOv2 checkpoints: the 224 px input interpolates the position embeddings
        "dinov2": lambda: Dinov2Model(Dinov2Config(**vit, mlp_ratio=2, patch_size=14, image_size=518)),
        "clip": lambda: CLIPModel(
            CLIPConfig(
                text_config={**vit, "vocab_size": 99, "max_position_embeddings": 16},
                vision_config={**vit, "num_hidden_layers": 3, "image_size": 224, "patch_size": 32},
                projection_dim=16,
            )
        ),
        "convnext": lambda: ConvNextModel(ConvNextConfig(hidden_sizes=[8, 16, 24, 40], depths=[1, 1, 1, 1])),
        "mae": lambda: ViTMAEForPreTraining(
            ViTMAEConfig(
                **vit,
                image_size=224,
                patch_size=16,
                decoder_hidden_size=16,
                decoder_num_hidden_layers=1,
                decoder_num_attention_heads=2,
                decoder_intermediate_size=32,
            )
        ),
        "data2vec": lambda: Data2VecVisionModel(
            Data2VecVisionConfig(**vit, image_size=224, patch_size=16, use_mean_pooling=True), add_pooling_layer=True
        ),
    }
    paths = {}
    for i, (name, build) in enumerate(builders.items()):
        torch.manual_seed(i)  # test fixture: the library itself never reads the global RNG
        model = build().eval()
        with torch.no_grad():  # move LayerNorm/pooler parameters off their 1/0 init so they are exercised
            for pname, param in model.named_parameters():
                if "norm" in pname.lower() and param.ndim == 1:
                    param.add_(0.1 * torch.randn(param.shape))
        paths[name] = root / name
        model.save_pretrained(paths[name])
    return paths


@pytest.fixture(scope="session")
def tiny_swav_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SwAV-style checkpoint: random torchvision ResNet-50 trunk, ``module.`` prefixes, a projection head."""
    import torch
    from torchvision.models import resnet50

    torch.manual_seed(7)
    net = resnet50(weights=None)
    with torch.no_grad():
        for name, buffer in net.named_buffers():
            if name.endswith("running_mean"):
                buffer.normal_(0, 0.1)
            elif name.endswith("running_var"):
                buffer.uniform_(0.5, 1.5)
    state = {f"module.{k}": v for k, v in net.state_dict().items() if not k.startswith("fc.")}
    state["module.projection_head.0.weight"] = torch.randn(16, 2048)
    state["module.prototypes.weight"] = torch.randn(8, 16)
    path = tmp_path_factory.mktemp("swav") / "swav_random.pth.tar"
    torch.save(state, path)
    return path
