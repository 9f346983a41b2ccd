"""Text conditioning of Stable Diffusion teachers, carried through solvers, CFG, students and samplers.

A :class:`TextCond` holds per-sample tensors that a ``UNet2DConditionModel`` takes:

=====================  ==========================================================================================
``prompt_embeds``      ``(B, L, D)`` text-encoder hidden states (``encoder_hidden_states``)
``pooled``             ``(B, P)`` pooled text embedding (SDXL ``added_cond_kwargs["text_embeds"]``) or ``None``
``time_ids``           ``(B, 6)`` SDXL micro-conditioning (original h, w; crop top, left; target h, w) or ``None``
=====================  ==========================================================================================

The helpers :func:`index_cond`, :func:`cat_cond` and :func:`null_like` treat a ``TextCond`` and a plain label
tensor alike, so the masked solve (``cond[index]``) and batched CFG (``cat([cond, uncond])``) work for both.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

__all__ = ["TextCond", "cat_cond", "index_cond", "null_like", "sdxl_time_ids"]


@dataclass
class TextCond:
    """Per-sample text conditioning (see the module docstring for shapes).

    Example:
        >>> c = TextCond(torch.zeros(3, 4, 8), torch.zeros(3, 5), torch.zeros(3, 6))
        >>> len(c), c[torch.tensor([0, 2])].prompt_embeds.shape[0]
        (3, 2)
    """

    prompt_embeds: torch.Tensor
    pooled: torch.Tensor | None = None
    time_ids: torch.Tensor | None = None

    def __len__(self) -> int:
        return self.prompt_embeds.shape[0]

    def __getitem__(self, index: Any) -> TextCond:
        return TextCond(
            self.prompt_embeds[index],
            None if self.pooled is None else self.pooled[index],
            None if self.time_ids is None else self.time_ids[index],
        )

    def to(self, *args: Any, **kwargs: Any) -> TextCond:
        """Move/cast every tensor (``time_ids`` keep float dtype of the call)."""
        return TextCond(
            self.prompt_embeds.to(*args, **kwargs),
            None if self.pooled is None else self.pooled.to(*args, **kwargs),
            None if self.time_ids is None else self.time_ids.to(*args, **kwargs),
        )

    def unet_kwargs(self, dtype: torch.dtype | None = None) -> dict[str, Any]:
        """Keyword arguments of ``UNet2DConditionModel.forward``: ``encoder_hidden_states`` and, for SDXL,
        ``added_cond_kwargs={"text_embeds", "time_ids"}``; cast to ``dtype`` when given."""

        def cast(x: torch.Tensor) -> torch.Tensor:
            return x if dtype is None else x.to(dtype)

        kwargs: dict[str, Any] = {"encoder_hidden_states": cast(self.prompt_embeds)}
        if self.pooled is not None or self.time_ids is not None:
            kwargs["added_cond_kwargs"] = {"text_embeds": cast(self.pooled), "time_ids": cast(self.time_ids)}
        return kwargs

    def state(self, prefix: str = "") -> dict[str, torch.Tensor]:
        """Flat tensors for safetensors files (absent parts are omitted)."""
        out = {f"{prefix}prompt_embeds": self.prompt_embeds}
        if self.pooled is not None:
            out[f"{prefix}pooled"] = self.pooled
        if self.time_ids is not None:
            out[f"{prefix}time_ids"] = self.time_ids
        return out

    @classmethod
    def from_state(cls, state: dict[str, torch.Tensor], prefix: str = "") -> TextCond:
        return cls(state[f"{prefix}prompt_embeds"], state.get(f"{prefix}pooled"), state.get(f"{prefix}time_ids"))


def index_cond(cond: Any, index: torch.Tensor) -> Any:
    """``cond[index]`` for a label tensor, a :class:`TextCond` or ``None``."""
    return None if cond is None else cond[index]


def cat_cond(a: Any, b: Any) -> Any:
    """Concatenate two conditions along the batch (label tensors or :class:`TextCond`)."""
    if isinstance(a, TextCond):
        return TextCond(
            torch.cat([a.prompt_embeds, b.prompt_embeds]),
            None if a.pooled is None else torch.cat([a.pooled, b.pooled]),
            None if a.time_ids is None else torch.cat([a.time_ids, b.time_ids]),
        )
    return torch.cat([a, b])


def _expand(x: torch.Tensor, batch: int) -> torch.Tensor:
    if x.shape[0] == batch:
        return x
    if x.shape[0] != 1:
        raise ValueError(f"a null condition must have batch 1 or {batch}, got {x.shape[0]}")
    return x.expand(batch, *x.shape[1:])


def null_like(null: Any, cond: Any, batch: int, device: torch.device | str) -> Any:
    """The unconditional input for a batch of ``batch``.

    A label ``null`` (0-d or ``(1,)``) is broadcast; a :class:`TextCond` ``null`` of batch 1 (``(1, L, D)``)
    is broadcast over the batch and takes the conditional branch's ``time_ids`` (diffusers passes the same
    micro-conditioning to both CFG branches).
    """
    if isinstance(null, TextCond):
        time_ids = cond.time_ids if isinstance(cond, TextCond) and cond.time_ids is not None else null.time_ids
        return TextCond(
            _expand(null.prompt_embeds.to(device), batch),
            None if null.pooled is None else _expand(null.pooled.to(device), batch),
            None if time_ids is None else _expand(time_ids.to(device), batch),
        )
    null = null.to(device)
    return null.expand(batch, *null.shape) if null.ndim == 0 or null.shape[0] != batch else null


def sdxl_time_ids(
    original_size: tuple[int, int], crop_top_left: tuple[int, int], target_size: tuple[int, int]
) -> torch.Tensor:
    """SDXL micro-conditioning ``(original h, w, crop top, left, target h, w)`` as a ``(6,)`` float32 tensor.

    Example:
        >>> sdxl_time_ids((768, 1024), (0, 64), (512, 512)).tolist()
        [768.0, 1024.0, 0.0, 64.0, 512.0, 512.0]
    """
    return torch.tensor([*original_size, *crop_top_left, *target_size], dtype=torch.float32)
