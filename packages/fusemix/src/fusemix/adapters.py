"""Fusion adapters (reference §1.4): pre-LN residual MLP blocks, a final LayerNorm and a linear projection.

Each modality gets one adapter ``h: Z -> S``; the frozen encoder ``g`` never appears here (its latents are cached).
Written by hand: this small block stack *is* the paper's trainable model.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import nn

from fusemix.loss import Temperature


@dataclasses.dataclass(frozen=True)
class AdapterConfig:
    """Hyperparameters of one adapter, stored with every checkpoint so loading rebuilds the same shapes."""

    in_dim: int
    """Dimension ``d`` of the cached latent."""
    out_dim: int = 512
    """Dimension ``D`` of the shared space."""
    depth: int = 4
    """Number ``L`` of residual blocks (0 gives LayerNorm + projection only)."""
    expansion: int = 4
    """Hidden width of each block is ``expansion * in_dim`` (inverted bottleneck)."""
    dropout: float = 0.6
    """Dropout after the GELU in each block."""
    identity: bool = False
    """No parameters: the latent is used as it is (``out_dim == in_dim``). Used for the text side when the items
    are aligned into a frozen text space (audio->image generation, :mod:`fusemix.generate`)."""

    def __post_init__(self) -> None:
        if self.identity and self.out_dim != self.in_dim:
            raise ValueError(f"an identity adapter needs out_dim == in_dim, got {self.out_dim} and {self.in_dim}")
        if self.in_dim < 1 or self.out_dim < 1 or self.expansion < 1:
            raise ValueError(f"in_dim, out_dim and expansion must be >= 1, got {self}")
        if self.depth < 0:
            raise ValueError(f"depth must be >= 0, got {self.depth}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")


#: Named adapter settings (everything but ``in_dim``). ``paper``: the released configuration (L=4, expansion 4,
#: dropout 0.6, D=512); ``base``: the code's defaults (L=1, D=128, no dropout); ``cpu``: the scaled CPU setting of
#: reference §5.
ADAPTER_PRESETS: dict[str, dict[str, Any]] = {
    "paper": {"depth": 4, "expansion": 4, "dropout": 0.6, "out_dim": 512},
    "base": {"depth": 1, "expansion": 4, "dropout": 0.0, "out_dim": 128},
    "cpu": {"depth": 2, "expansion": 4, "dropout": 0.1, "out_dim": 64},
}


class ResidualMLPBlock(nn.Module):
    """``x + Lin2(Dropout(GELU(Lin1(LN(x)))))`` with ``Lin1: d -> e*d`` and ``Lin2: e*d -> d``."""

    def __init__(self, dim: int, expansion: int, dropout: float) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, expansion * dim)
        self.act = nn.GELU()
        self.drop = nn.Dropout(dropout)
        self.fc2 = nn.Linear(expansion * dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.fc2(self.drop(self.act(self.fc1(self.norm(x)))))


class FusionAdapter(nn.Module):
    """One modality's adapter: ``depth`` residual blocks, LayerNorm, Linear(d -> D).

    Args:
        config: the adapter hyperparameters.

    Example:
        >>> adapter = FusionAdapter(AdapterConfig(in_dim=8, out_dim=4, depth=1, dropout=0.0))
        >>> adapter(torch.zeros(3, 8)).shape
        torch.Size([3, 4])
    """

    def __init__(self, config: AdapterConfig) -> None:
        super().__init__()
        self.config = config
        if config.identity:
            return
        self.blocks = nn.Sequential(
            *[ResidualMLPBlock(config.in_dim, config.expansion, config.dropout) for _ in range(config.depth)]
        )
        self.norm = nn.LayerNorm(config.in_dim)
        self.proj = nn.Linear(config.in_dim, config.out_dim)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Map ``(B, in_dim)`` latents to ``(B, out_dim)`` (not normalised).

        Raises:
            ValueError: ``z`` is not ``(B, in_dim)``.
        """
        if z.ndim != 2 or z.shape[1] != self.config.in_dim:
            raise ValueError(f"expected latents of shape (B, {self.config.in_dim}), got {tuple(z.shape)}")
        if self.config.identity:
            return z
        return self.proj(self.norm(self.blocks(z)))


class FusionModel(nn.Module):
    """The two adapters and the learnable temperature: everything FuseMix trains.

    Args:
        item_config: adapter of the item modality (image, audio, ...).
        text_config: adapter of the text modality (any second modality works the same way).
        init_temperature: initial ``tau`` (0.07 in the paper).

    Raises:
        ValueError: the two adapters do not share ``out_dim``.
    """

    def __init__(self, item_config: AdapterConfig, text_config: AdapterConfig, init_temperature: float = 0.07) -> None:
        super().__init__()
        if item_config.out_dim != text_config.out_dim:
            raise ValueError(
                f"both adapters must map to the same shared dimension, got {item_config.out_dim} and "
                f"{text_config.out_dim}"
            )
        self.item_adapter = FusionAdapter(item_config)
        self.text_adapter = FusionAdapter(text_config)
        self.temperature = Temperature(init_temperature)

    def config(self) -> dict[str, Any]:
        """The constructor arguments as a JSON-able dict (stored in checkpoints)."""
        return {
            "item": dataclasses.asdict(self.item_adapter.config),
            "text": dataclasses.asdict(self.text_adapter.config),
            "init_temperature": self.temperature.init_value,
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> FusionModel:
        """Rebuild a model from :meth:`config`'s output."""
        return cls(AdapterConfig(**config["item"]), AdapterConfig(**config["text"]), config["init_temperature"])

    def encode_items(self, z: torch.Tensor) -> torch.Tensor:
        """``(B, d_item)`` latents -> ``(B, D)`` L2-normalised embeddings."""
        return nn.functional.normalize(self.item_adapter(z), dim=-1)

    def encode_texts(self, z: torch.Tensor) -> torch.Tensor:
        """``(B, d_text)`` latents -> ``(B, D)`` L2-normalised embeddings."""
        return nn.functional.normalize(self.text_adapter(z), dim=-1)

    def forward(self, z_item: torch.Tensor, z_text: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Both adapters on paired latents: the unnormalised ``(B, D)`` outputs and the clamped temperature.

        The temperature is returned from ``forward`` so that a DistributedDataParallel wrapper sees it used.
        """
        return self.item_adapter(z_item), self.text_adapter(z_text), self.temperature()


def count_parameters(module: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
