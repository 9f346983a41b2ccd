"""Pooling of a transformer's token states into one latent per input (reference §1.2).

``cls``: the first token's final state (BGE, DINOv2: the hub model's output is the CLS token after the final
LayerNorm, which is ``last_hidden_state[:, 0]`` of transformers' ``Dinov2Model``). ``mean``: the attention-mask
weighted mean of the token states (E5, sentence-transformers models such as all-MiniLM-L6-v2). ``pooler``: the
model's own ``pooler_output`` (CLIP vision: the post-LayerNorm CLS token before the projection head).
"""

from __future__ import annotations

from typing import Any

import torch

POOLINGS = ("cls", "mean", "pooler")


def pool_hidden_states(output: Any, pooling: str, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Pool a transformers model output into ``(B, D)`` latents.

    Args:
        output: a transformers ``ModelOutput`` with ``last_hidden_state`` ``(B, T, D)`` (and ``pooler_output``
            ``(B, D)`` for ``pooling="pooler"``).
        pooling: one of :data:`POOLINGS`.
        attention_mask: ``(B, T)`` 0/1 mask for ``mean`` over text tokens; ``None`` averages every token.

    Returns:
        ``(B, D)`` float32 latents (not L2-normalised: the paper feeds raw latents to the adapters).

    Raises:
        ValueError: unknown ``pooling``, or ``pooler`` on a model without ``pooler_output``.
    """
    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {', '.join(POOLINGS)}, got {pooling!r}")
    if pooling == "pooler":
        pooled = getattr(output, "pooler_output", None)
        if pooled is None:
            raise ValueError("pooling 'pooler' needs a model with a pooler_output; use 'cls' or 'mean'")
        return pooled.float()
    hidden = output.last_hidden_state  # B x T x D
    if pooling == "cls":
        return hidden[:, 0].float()
    if attention_mask is None:
        return hidden.float().mean(dim=1)
    mask = attention_mask.to(hidden.dtype).unsqueeze(-1)  # B x T x 1
    summed = (hidden * mask).sum(dim=1).float()
    return summed / mask.sum(dim=1).float().clamp_min(1e-9)
