"""The ``random`` encoder: a small convolutional network whose weights depend only on ``seed``.

For tests and the demo: no download, deterministic across runs and platforms (weights are drawn on the CPU from a
seeded ``torch.Generator``), 64x64 input, 256-d output (global average pool of the last feature map).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from dgm_eval.encoders.base import Encoder, EncoderInfo, reject_depth, reject_weights
from dgm_eval.encoders.preprocessing import ImagePreprocessing

RANDOM_INPUT = 64
RANDOM_CHANNELS = (32, 64, 128, 256)
_PREPROCESSING = ImagePreprocessing(
    size=(RANDOM_INPUT, RANDOM_INPUT), mode="pil", filter="bicubic", mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)
)

INFO = EncoderInfo(
    name="random",
    dim=RANDOM_CHANNELS[-1],
    weight_source="none (random weights drawn from --seed)",
    preprocessing=_PREPROCESSING.describe(),
    notes="4 stride-2 3x3 conv layers (ReLU between), global average pool; He-normal weights from a seeded "
    "torch.Generator; for tests and the demo",
)


class RandomConvEncoder(Encoder):
    """A seeded random-weights conv net: (N, 3, 64, 64) -> (N, 256).

    Example:
        >>> a, b = RandomConvEncoder(seed=1), RandomConvEncoder(seed=1)
        >>> all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
        True
    """

    name = "random"

    def __init__(self, *, seed: int = 0, clean_resize: bool = False) -> None:
        super().__init__()
        self.input_size = (RANDOM_INPUT, RANDOM_INPUT)
        self.dim = RANDOM_CHANNELS[-1]
        self.seed = int(seed)
        self.weights_id = f"random(seed={self.seed})"
        mode = "clean" if clean_resize else "pil"
        self.preprocessing = ImagePreprocessing(
            size=self.input_size, mode=mode, filter="bicubic", mean=_PREPROCESSING.mean, std=_PREPROCESSING.std
        )
        layers: list[nn.Module] = []
        channels_in = 3
        for i, channels_out in enumerate(RANDOM_CHANNELS):
            layers.append(nn.Conv2d(channels_in, channels_out, kernel_size=3, stride=2, padding=1))
            if i < len(RANDOM_CHANNELS) - 1:
                layers.append(nn.ReLU())
            channels_in = channels_out
        self.net = nn.Sequential(*layers)
        self._init_weights(self.seed)
        self.freeze()

    @torch.no_grad()
    def _init_weights(self, seed: int) -> None:
        generator = torch.Generator(device="cpu").manual_seed(seed)
        for module in self.net:
            if isinstance(module, nn.Conv2d):
                fan_in = module.in_channels * module.kernel_size[0] * module.kernel_size[1]
                weight = torch.randn(module.weight.shape, generator=generator) * math.sqrt(2.0 / fan_in)
                module.weight.copy_(weight)
                module.bias.copy_(torch.randn(module.bias.shape, generator=generator) * 0.01)

    def heatmap_layer(self) -> tuple[torch.nn.Module, int]:
        """The last convolution (its 4x4 map is average-pooled into the features)."""
        return self.net[-1], -1

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.net(x)  # N x 256 x 4 x 4
        return x.mean(dim=(2, 3))  # N x 256


def build(arch: str | None, *, weights: str | None, depth: int, clean_resize: bool, seed: int) -> RandomConvEncoder:
    """Registry builder (no weights, no depth; the weights come from ``seed``)."""
    reject_weights("random", weights)
    reject_depth("random", depth)
    return RandomConvEncoder(seed=seed, clean_resize=clean_resize)
