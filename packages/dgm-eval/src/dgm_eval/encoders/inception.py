"""The TF-FID Inception-V3 (``inception``: 2048-d pool3 + 1008 logits for IS; ``sinception``: 2023-d for sFID).

The network is the Inception-V3 of TensorFlow's 2015-12-05 graph that the original FID code used, as ported to
PyTorch by pytorch-fid; it differs from torchvision's Inception-V3 in three places, which is why it is written out
here (torchvision's blocks cannot express them):

- the average pools inside the A, C and first E blocks exclude the zero padding (``count_include_pad=False``),
- the second E block (``Mixed_7c``) pools with a max pool instead of an average pool,
- the classifier has 1008 outputs; IS uses ``pool3 @ W.T`` without the bias, as the original TF IS code did.

Parameter names and shapes follow torchvision's layout, which is the layout of the published FID weights file
(``pt_inception-2015-12-05-6726825d.pth``), so that file loads with ``strict=True``.

Preprocessing (default): the RGB image as [0, 1] float, bilinear ``F.interpolate`` to 299x299 with
``align_corners=False`` and no antialias (per image; identical to pytorch-fid's batched resize), then ``2x - 1``
inside the network. ``--clean-resize``: clean-fid's float32 PIL bicubic resize to 299x299 instead.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from dgm_eval.encoders.base import Encoder, EncoderInfo, reject_depth
from dgm_eval.encoders.preprocessing import ImagePreprocessing
from dgm_eval.encoders.weights import load_state_dict_strictly, load_url_state_dict

#: the published FID weights (pytorch-fid's GitHub release).
FID_WEIGHTS_URL = (
    "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/pt_inception-2015-12-05-6726825d.pth"
)
INCEPTION_SIZE = 299
POOL3_DIM = 2048
NUM_LOGITS = 1008
#: sFID: the first 7 channels of Mixed_6e (768 x 17 x 17), flattened.
SFID_CHANNELS = 7
SFID_DIM = SFID_CHANNELS * 17 * 17

_DEFAULT_PREPROCESSING = ImagePreprocessing(
    size=(INCEPTION_SIZE, INCEPTION_SIZE), mode="tensor", filter="bilinear", antialias=False
)
_CLEAN_PREPROCESSING = ImagePreprocessing(size=(INCEPTION_SIZE, INCEPTION_SIZE), mode="clean", filter="bicubic")

INFO = EncoderInfo(
    name="inception",
    dim=POOL3_DIM,
    weight_source=FID_WEIGHTS_URL,
    preprocessing=_DEFAULT_PREPROCESSING.describe() + "; 2x-1 in the network",
    notes="TF-FID Inception-V3 (pytorch-fid layout); pool3 features; logits(): 1008-way fc without bias for IS",
)
SINCEPTION_INFO = EncoderInfo(
    name="sinception",
    dim=SFID_DIM,
    weight_source=FID_WEIGHTS_URL,
    preprocessing=_DEFAULT_PREPROCESSING.describe() + "; 2x-1 in the network",
    notes="sFID: Mixed_6e output (768x17x17), first 7 channels flattened channel-major",
)


class BasicConv2d(nn.Module):
    """Conv (no bias) + BatchNorm (eps 1e-3) + ReLU, as in TF's Inception graph."""

    def __init__(self, in_channels: int, out_channels: int, **kwargs: int | tuple[int, int]) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, bias=False, **kwargs)
        self.bn = nn.BatchNorm2d(out_channels, eps=0.001)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)), inplace=True)


def _avg_pool_tf(x: torch.Tensor) -> torch.Tensor:
    # TF's average pool ignores the zero padding in the average (count_include_pad=False)
    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)


class InceptionA(nn.Module):
    """35x35 block (Mixed_5b/5c/5d)."""

    def __init__(self, in_channels: int, pool_features: int) -> None:
        super().__init__()
        self.branch1x1 = BasicConv2d(in_channels, 64, kernel_size=1)
        self.branch5x5_1 = BasicConv2d(in_channels, 48, kernel_size=1)
        self.branch5x5_2 = BasicConv2d(48, 64, kernel_size=5, padding=2)
        self.branch3x3dbl_1 = BasicConv2d(in_channels, 64, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, kernel_size=3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, kernel_size=3, padding=1)
        self.branch_pool = BasicConv2d(in_channels, pool_features, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branch1x1 = self.branch1x1(x)
        branch5x5 = self.branch5x5_2(self.branch5x5_1(x))
        branch3x3dbl = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        branch_pool = self.branch_pool(_avg_pool_tf(x))
        return torch.cat([branch1x1, branch5x5, branch3x3dbl, branch_pool], 1)


class InceptionB(nn.Module):
    """35x35 -> 17x17 reduction (Mixed_6a)."""

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.branch3x3 = BasicConv2d(in_channels, 384, kernel_size=3, stride=2)
        self.branch3x3dbl_1 = BasicConv2d(in_channels, 64, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, kernel_size=3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, kernel_size=3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branch3x3 = self.branch3x3(x)
        branch3x3dbl = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        branch_pool = F.max_pool2d(x, kernel_size=3, stride=2)
        return torch.cat([branch3x3, branch3x3dbl, branch_pool], 1)


class InceptionC(nn.Module):
    """17x17 block with factorised 7x7 convolutions (Mixed_6b..6e)."""

    def __init__(self, in_channels: int, channels_7x7: int) -> None:
        super().__init__()
        c7 = channels_7x7
        self.branch1x1 = BasicConv2d(in_channels, 192, kernel_size=1)
        self.branch7x7_1 = BasicConv2d(in_channels, c7, kernel_size=1)
        self.branch7x7_2 = BasicConv2d(c7, c7, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7_3 = BasicConv2d(c7, 192, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = BasicConv2d(in_channels, c7, kernel_size=1)
        self.branch7x7dbl_2 = BasicConv2d(c7, c7, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = BasicConv2d(c7, c7, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = BasicConv2d(c7, c7, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = BasicConv2d(c7, 192, kernel_size=(1, 7), padding=(0, 3))
        self.branch_pool = BasicConv2d(in_channels, 192, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branch1x1 = self.branch1x1(x)
        branch7x7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        branch7x7dbl = self.branch7x7dbl_1(x)
        branch7x7dbl = self.branch7x7dbl_3(self.branch7x7dbl_2(branch7x7dbl))
        branch7x7dbl = self.branch7x7dbl_5(self.branch7x7dbl_4(branch7x7dbl))
        branch_pool = self.branch_pool(_avg_pool_tf(x))
        return torch.cat([branch1x1, branch7x7, branch7x7dbl, branch_pool], 1)


class InceptionD(nn.Module):
    """17x17 -> 8x8 reduction (Mixed_7a)."""

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.branch3x3_1 = BasicConv2d(in_channels, 192, kernel_size=1)
        self.branch3x3_2 = BasicConv2d(192, 320, kernel_size=3, stride=2)
        self.branch7x7x3_1 = BasicConv2d(in_channels, 192, kernel_size=1)
        self.branch7x7x3_2 = BasicConv2d(192, 192, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7x3_3 = BasicConv2d(192, 192, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7x3_4 = BasicConv2d(192, 192, kernel_size=3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branch3x3 = self.branch3x3_2(self.branch3x3_1(x))
        branch7x7x3 = self.branch7x7x3_2(self.branch7x7x3_1(x))
        branch7x7x3 = self.branch7x7x3_4(self.branch7x7x3_3(branch7x7x3))
        branch_pool = F.max_pool2d(x, kernel_size=3, stride=2)
        return torch.cat([branch3x3, branch7x7x3, branch_pool], 1)


class InceptionE(nn.Module):
    """8x8 block with expanded filter banks (Mixed_7b: average pool; Mixed_7c: max pool, as in the TF graph)."""

    def __init__(self, in_channels: int, pool: str) -> None:
        super().__init__()
        if pool not in ("avg", "max"):
            raise ValueError(f"pool must be 'avg' or 'max', got {pool!r}")
        self.pool = pool
        self.branch1x1 = BasicConv2d(in_channels, 320, kernel_size=1)
        self.branch3x3_1 = BasicConv2d(in_channels, 384, kernel_size=1)
        self.branch3x3_2a = BasicConv2d(384, 384, kernel_size=(1, 3), padding=(0, 1))
        self.branch3x3_2b = BasicConv2d(384, 384, kernel_size=(3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = BasicConv2d(in_channels, 448, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(448, 384, kernel_size=3, padding=1)
        self.branch3x3dbl_3a = BasicConv2d(384, 384, kernel_size=(1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = BasicConv2d(384, 384, kernel_size=(3, 1), padding=(1, 0))
        self.branch_pool = BasicConv2d(in_channels, 192, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branch1x1 = self.branch1x1(x)
        branch3x3 = self.branch3x3_1(x)
        branch3x3 = torch.cat([self.branch3x3_2a(branch3x3), self.branch3x3_2b(branch3x3)], 1)
        branch3x3dbl = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        branch3x3dbl = torch.cat([self.branch3x3dbl_3a(branch3x3dbl), self.branch3x3dbl_3b(branch3x3dbl)], 1)
        if self.pool == "avg":
            pooled = _avg_pool_tf(x)
        else:
            pooled = F.max_pool2d(x, kernel_size=3, stride=1, padding=1)
        branch_pool = self.branch_pool(pooled)
        return torch.cat([branch1x1, branch3x3, branch3x3dbl, branch_pool], 1)


class FIDInceptionV3(nn.Module):
    """The TF-FID Inception-V3 network (no auxiliary classifier), in the published weights' layout.

    Input: ``(N, 3, 299, 299)`` in [-1, 1]. :meth:`forward` returns Mixed_6e ``(N, 768, 17, 17)`` when
    ``stop_at_6e`` and pool3 ``(N, 2048)`` otherwise.
    """

    def __init__(self) -> None:
        super().__init__()
        self.Conv2d_1a_3x3 = BasicConv2d(3, 32, kernel_size=3, stride=2)
        self.Conv2d_2a_3x3 = BasicConv2d(32, 32, kernel_size=3)
        self.Conv2d_2b_3x3 = BasicConv2d(32, 64, kernel_size=3, padding=1)
        self.Conv2d_3b_1x1 = BasicConv2d(64, 80, kernel_size=1)
        self.Conv2d_4a_3x3 = BasicConv2d(80, 192, kernel_size=3)
        self.Mixed_5b = InceptionA(192, pool_features=32)
        self.Mixed_5c = InceptionA(256, pool_features=64)
        self.Mixed_5d = InceptionA(288, pool_features=64)
        self.Mixed_6a = InceptionB(288)
        self.Mixed_6b = InceptionC(768, channels_7x7=128)
        self.Mixed_6c = InceptionC(768, channels_7x7=160)
        self.Mixed_6d = InceptionC(768, channels_7x7=160)
        self.Mixed_6e = InceptionC(768, channels_7x7=192)
        self.Mixed_7a = InceptionD(768)
        self.Mixed_7b = InceptionE(1280, pool="avg")
        self.Mixed_7c = InceptionE(2048, pool="max")
        self.fc = nn.Linear(POOL3_DIM, NUM_LOGITS)

    def mixed_6e(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, 3, 299, 299)`` in [-1, 1] -> Mixed_6e output ``(N, 768, 17, 17)``."""
        x = self.Conv2d_1a_3x3(x)  # N x 32 x 149 x 149
        x = self.Conv2d_2a_3x3(x)  # N x 32 x 147 x 147
        x = self.Conv2d_2b_3x3(x)  # N x 64 x 147 x 147
        x = F.max_pool2d(x, kernel_size=3, stride=2)  # N x 64 x 73 x 73
        x = self.Conv2d_3b_1x1(x)  # N x 80 x 73 x 73
        x = self.Conv2d_4a_3x3(x)  # N x 192 x 71 x 71
        x = F.max_pool2d(x, kernel_size=3, stride=2)  # N x 192 x 35 x 35
        x = self.Mixed_5d(self.Mixed_5c(self.Mixed_5b(x)))  # N x 288 x 35 x 35
        x = self.Mixed_6a(x)  # N x 768 x 17 x 17
        return self.Mixed_6e(self.Mixed_6d(self.Mixed_6c(self.Mixed_6b(x))))  # N x 768 x 17 x 17

    def pool3(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, 3, 299, 299)`` in [-1, 1] -> pool3 features ``(N, 2048)``."""
        x = self.mixed_6e(x)
        x = self.Mixed_7c(self.Mixed_7b(self.Mixed_7a(x)))  # N x 2048 x 8 x 8
        return x.mean(dim=(2, 3))  # N x 2048 (adaptive average pool to 1x1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool3(x)


class InceptionEncoder(Encoder):
    """``inception`` (pool3, 2048-d; logits 1008) or ``sinception`` (Mixed_6e[:7] flattened, 2023-d)."""

    input_size = (INCEPTION_SIZE, INCEPTION_SIZE)
    channels_last = True

    def __init__(self, *, spatial: bool = False, clean_resize: bool = False) -> None:
        super().__init__()
        self.name = "sinception" if spatial else "inception"
        self.spatial = spatial
        self.dim = SFID_DIM if spatial else POOL3_DIM
        self.preprocessing = _CLEAN_PREPROCESSING if clean_resize else _DEFAULT_PREPROCESSING
        self.net = FIDInceptionV3()
        self.freeze()

    def load_weights(self, state: dict[str, torch.Tensor], source: str) -> InceptionEncoder:
        """Load a state dict in the FID weights' layout, strictly; returns ``self``."""
        load_state_dict_strictly(self.name, self.net, state, source)
        self.weights_id = source
        return self.freeze()

    def heatmap_layer(self) -> tuple[torch.nn.Module, int]:
        """Mixed_7c (the last 8x8 block before pool3); Mixed_6e for sinception."""
        return (self.net.Mixed_6e if self.spatial else self.net.Mixed_7c), -1

    def _scaled(self, x: torch.Tensor) -> torch.Tensor:
        return 2.0 * x - 1.0  # [0, 1] -> [-1, 1]

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = self._scaled(x)
        if self.spatial:
            return self.net.mixed_6e(x)[:, :SFID_CHANNELS].flatten(1)  # N x 2023
        return self.net.pool3(x)  # N x 2048

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """1008-way logits ``pool3 @ W.T`` without the bias (the original TF IS code); ``(N, 1008)`` float32.

        Softmax of these gives the class probabilities IS uses.
        """
        self.check_input(x)
        pool3 = self.net.pool3(self._scaled(x))
        return F.linear(pool3, self.net.fc.weight).float()  # N x 1008

    def forward_with_logits(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Features and logits from one pass through the trunk."""
        if self.spatial:
            return super().forward_with_logits(x)
        self.check_input(x)
        pool3 = self.net.pool3(self._scaled(x))  # N x 2048
        return pool3.float(), F.linear(pool3, self.net.fc.weight).float()


def build(arch: str | None, *, weights: str | None, depth: int, clean_resize: bool, seed: int) -> InceptionEncoder:
    """Registry builder for ``inception``."""
    reject_depth("inception", depth)
    state, source = load_url_state_dict("inception", FID_WEIGHTS_URL, weights)
    return InceptionEncoder(clean_resize=clean_resize).load_weights(state, source)


def build_sinception(
    arch: str | None, *, weights: str | None, depth: int, clean_resize: bool, seed: int
) -> InceptionEncoder:
    """Registry builder for ``sinception``."""
    reject_depth("sinception", depth)
    state, source = load_url_state_dict("sinception", FID_WEIGHTS_URL, weights)
    return InceptionEncoder(spatial=True, clean_resize=clean_resize).load_weights(state, source)
