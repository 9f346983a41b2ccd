"""The small teachers this package trains: a class-conditional ``UNet2DModel`` for 8×8 digits and an MLP for 2-D.

Both take raw grid times ``t`` in 0..T (see :mod:`direct_cms.grid`) and a class label (the null class included,
for CFG) and predict ε. The MLP is a diffusers ``ModelMixin``/``ConfigMixin``, so it saves and loads with
``save_pretrained``/``from_pretrained`` like the UNet.
"""

from __future__ import annotations

import math

import torch
from diffusers import UNet2DModel
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

__all__ = ["MLPDenoiser", "build_digits_unet", "sinusoidal_embedding"]


def build_digits_unet(num_classes: int = 10, width: int = 32) -> UNet2DModel:
    """Tiny class-conditional UNet for 1×8×8 digits: blocks (w, 2w), one attention block, ``num_classes + 1``
    class embeddings (the last is the null class)."""
    return UNet2DModel(
        sample_size=8,
        in_channels=1,
        out_channels=1,
        block_out_channels=(width, 2 * width),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "UpBlock2D"),
        norm_num_groups=8,
        attention_head_dim=8,
        num_class_embeds=num_classes + 1,
    )


def sinusoidal_embedding(t: torch.Tensor, dim: int, max_period: float = 10_000.0) -> torch.Tensor:
    """Transformer-style sinusoidal embedding of times ``t`` ``(B,)`` → ``(B, dim)`` float32."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.float()[:, None] * freqs[None]
    return torch.cat([args.cos(), args.sin()], dim=1)


class _ResidualBlock(nn.Module):
    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.fc_hidden = nn.Linear(hidden, hidden)
        self.act = nn.SiLU()

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h + self.fc_hidden(self.act(h))


class MLPDenoiser(ModelMixin, ConfigMixin):
    """ε-prediction MLP for 2-D points with a sinusoidal time embedding and a class embedding.

    Args:
        data_dim: dimension of the points.
        hidden: hidden width.
        depth: number of hidden layers.
        num_classes: real classes; the null class index is ``num_classes``.
        time_dim: width of the sinusoidal time embedding.
    """

    @register_to_config
    def __init__(self, data_dim: int = 2, hidden: int = 128, depth: int = 3, num_classes: int = 8, time_dim: int = 32):
        super().__init__()
        self.time_dim = time_dim
        self.class_embedding = nn.Embedding(num_classes + 1, hidden)
        self.time_proj = nn.Linear(time_dim, hidden)
        self.fc_in = nn.Linear(data_dim, hidden)
        self.blocks = nn.ModuleList([_ResidualBlock(hidden) for _ in range(depth)])
        self.fc_out = nn.Linear(hidden, data_dim)
        self.act = nn.SiLU()

    def forward(self, x: torch.Tensor, t: torch.Tensor, class_labels: torch.Tensor | None = None) -> torch.Tensor:
        """ε̂ for ``x`` ``(B, data_dim)``, times ``t`` ``(B,)``, labels ``(B,)`` (``None`` = null class)."""
        if class_labels is None:
            class_labels = torch.full((x.shape[0],), self.config.num_classes, dtype=torch.int64, device=x.device)
        h = self.fc_in(x) + self.time_proj(sinusoidal_embedding(t, self.time_dim)) + self.class_embedding(class_labels)
        for block in self.blocks:
            h = block(h)
        return self.fc_out(self.act(h))
