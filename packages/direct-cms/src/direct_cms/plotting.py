"""Sample figures as PNG (matplotlib, Agg backend): digit grids and 2-D scatter plots."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from sixlab_shared import atomic_write_with

__all__ = ["save_sample_figure"]


def save_sample_figure(
    panels: Sequence[tuple[str, torch.Tensor]], path: str | Path, columns: int = 10, max_items: int = 50
) -> Path:
    """Write one PNG with a panel per ``(title, samples)``: digit grids for ``(M, 1, 8, 8)``, scatter for ``(M, 2)``.

    Digits are shown in [−1, 1] (clipped), ``max_items`` per panel in rows of ``columns``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3.4), squeeze=False)
    for ax, (title, samples) in zip(axes[0], panels, strict=True):
        samples = samples.detach().cpu().float()
        if samples.ndim == 4:
            items = samples[:max_items, 0].clamp(-1, 1)
            rows = (items.shape[0] + columns - 1) // columns
            canvas = torch.full((rows * 9, columns * 9), -1.0)
            for i, image in enumerate(items):
                r, c = divmod(i, columns)
                canvas[r * 9 : r * 9 + 8, c * 9 : c * 9 + 8] = image
            ax.imshow(canvas.numpy(), cmap="gray", vmin=-1, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
        else:
            ax.scatter(samples[:, 0].numpy(), samples[:, 1].numpy(), s=2, alpha=0.5)
            ax.set_xlim(-1.6, 1.6)
            ax.set_ylim(-1.6, 1.6)
            ax.set_aspect("equal")
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    path = Path(path)
    atomic_write_with(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    plt.close(fig)
    return path
