"""``swav``: SwAV ResNet-50 (800 epochs), torchvision's ResNet-50 with the torch.hub release weights.

``torch.hub.load('facebookresearch/swav:main', 'resnet50')`` builds torchvision's ResNet-50 and loads
``swav_800ep_pretrain.pth.tar`` from ``dl.fbaipublicfiles.com``; this module does the same without executing
hub code: the checkpoint's ``module.`` prefixes are stripped, the SwAV projection head and prototypes (not part of
the trunk) are dropped by name, and the rest loads strictly. Preprocessing: shorter side to 224 with PIL bilinear,
centre crop 224 (the public code has no crop, so non-square images would give non-square inputs), ImageNet
mean/std. Features: the 2048-d global average pool.
"""

from __future__ import annotations

import logging

import torch

from dgm_eval.encoders.base import Encoder, EncoderInfo, reject_depth
from dgm_eval.encoders.preprocessing import IMAGENET_MEAN, IMAGENET_STD, ImagePreprocessing
from dgm_eval.encoders.weights import load_state_dict_strictly, load_url_state_dict

logger = logging.getLogger(__name__)

SWAV_URL = "https://dl.fbaipublicfiles.com/deepcluster/swav_800ep_pretrain.pth.tar"
#: checkpoint entries that belong to SwAV's training head, not the ResNet-50 trunk.
_HEAD_PREFIXES = ("projection_head.", "prototypes.")


def swav_preprocessing(clean_resize: bool = False) -> ImagePreprocessing:
    return ImagePreprocessing(
        shorter_side=224,
        crop=(224, 224),
        mode="clean" if clean_resize else "pil",
        filter="bilinear",
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
    )


INFO = EncoderInfo(
    name="swav",
    dim=2048,
    weight_source=SWAV_URL,
    preprocessing=swav_preprocessing().describe(),
    notes="torchvision ResNet-50 trunk with the facebookresearch/swav torch.hub weights; avgpool features",
)


def trunk_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Strip ``module.`` (DataParallel) prefixes and drop SwAV's projection head and prototypes."""
    cleaned = {key.removeprefix("module."): value for key, value in state.items()}
    dropped = sorted(key for key in cleaned if key.startswith(_HEAD_PREFIXES))
    if dropped:
        logger.debug("swav: dropping %d head entries (%s ...)", len(dropped), dropped[0])
    return {key: value for key, value in cleaned.items() if not key.startswith(_HEAD_PREFIXES)}


class SwAVEncoder(Encoder):
    """torchvision ResNet-50 without its classifier; ``(N, 3, 224, 224)`` -> ``(N, 2048)``."""

    name = "swav"
    input_size = (224, 224)
    channels_last = True

    def __init__(self, *, clean_resize: bool = False) -> None:
        super().__init__()
        from torchvision.models import resnet50

        self.model = resnet50(weights=None)
        self.model.fc = torch.nn.Identity()
        self.dim = 2048
        self.preprocessing = swav_preprocessing(clean_resize)
        self.freeze()

    def load_weights(self, state: dict[str, torch.Tensor], source: str) -> SwAVEncoder:
        load_state_dict_strictly("swav", self.model, trunk_state_dict(state), source)
        self.weights_id = source
        return self.freeze()

    def heatmap_layer(self) -> tuple[torch.nn.Module, int]:
        """ResNet-50 ``layer4`` (its 7x7 map is average-pooled into the features)."""
        return self.model.layer4, -1

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)  # N x 2048 (avgpool, flattened; fc is the identity)


def build(arch: str | None, *, weights: str | None, depth: int, clean_resize: bool, seed: int) -> SwAVEncoder:
    """Registry builder: the release checkpoint from the torch.hub cache (or ``weights``), loaded strictly."""
    reject_depth("swav", depth)
    state, source = load_url_state_dict("swav", SWAV_URL, weights)
    return SwAVEncoder(clean_resize=clean_resize).load_weights(state, source)
