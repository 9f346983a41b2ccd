"""FD heatmaps (Kynkäänniemi et al. 2023, as the paper's code uses them): which image regions move FD.

For one generated image x_i among N, the generated statistics are those of the other N − 1 features plus x_i's
own, f(x_i), as a differentiable function of the image (leave-one-out: μ_G = (S + f)/N, Σ_G from Σ_{j≠i} x_j x_jᵀ
+ f fᵀ). FD against the fixed reference statistics is computed in torch, float64, with tr √(Σ_R Σ_G) as
Σ √(|λ| + 1e-12) over the eigenvalues of √Σ_R Σ_G √Σ_R. Its gradient reaches the activations A of a
per-encoder layer (:meth:`~dgm_eval.encoders.base.Encoder.heatmap_layer`); Grad-CAM weights are the spatial mean
of grad², the heatmap is ReLU(Σ_c w_c A_c) upsampled to the image and scaled to [0, 1]. :func:`save_heatmap_grid`
writes a 4x4 PNG grid of images with their heatmaps over them.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from dgm_eval.metrics import GaussianStats
from sixlab_shared import UserError


class LeaveOneOutFD:
    """FD of the reference against the generated set with one row replaced by a differentiable feature vector.

    Args:
        ref: reference statistics. gen: ``(N, D)`` generated features (float64 after conversion).

    Example:
        >>> rng = np.random.default_rng(0)
        >>> r, g = rng.normal(size=(50, 3)), rng.normal(size=(40, 3))
        >>> from dgm_eval.metrics import feature_statistics, frechet_distance
        >>> loo = LeaveOneOutFD(feature_statistics(r), g)
        >>> abs(float(loo(0, torch.from_numpy(g[0]))) - frechet_distance(r, g)) < 1e-9
        True
    """

    def __init__(self, ref: GaussianStats, gen: Any, *, device: str | torch.device | None = None) -> None:
        dev = torch.device(device) if device is not None else ref.mean.device
        x = torch.as_tensor(np.asarray(gen, np.float64) if not isinstance(gen, torch.Tensor) else gen)
        self.x = x.to(dev, torch.float64)
        self.n = int(self.x.shape[0])
        if self.n < 3:
            raise UserError(f"FD heatmaps need at least 3 generated samples, got {self.n}")
        self.sum = self.x.sum(dim=0)
        self.outer = self.x.T @ self.x
        self.mean_r = ref.mean.to(dev, torch.float64)
        cov_r = ref.cov.to(dev, torch.float64)
        evals, evecs = torch.linalg.eigh(cov_r)
        self.sqrt_r = (evecs * evals.clamp(min=0).sqrt()) @ evecs.T
        self.trace_r = torch.trace(cov_r)

    def __call__(self, i: int, f: torch.Tensor) -> torch.Tensor:
        """FD (a 0-d float64 tensor, differentiable in ``f``) with row ``i`` replaced by ``f`` (``(D,)``)."""
        f = f.to(torch.float64).reshape(-1)
        xi = self.x[i]
        mean_g = (self.sum - xi + f) / self.n
        outer = self.outer - torch.outer(xi, xi) + torch.outer(f, f)
        cov_g = (outer - self.n * torch.outer(mean_g, mean_g)) / (self.n - 1)
        m = self.sqrt_r @ cov_g @ self.sqrt_r
        evals = torch.linalg.eigvalsh((m + m.T) / 2)
        trace_sqrt = (evals.abs() + 1e-12).sqrt().sum()
        diff = self.mean_r - mean_g
        return diff.dot(diff) + self.trace_r + torch.trace(cov_g) - 2.0 * trace_sqrt


def _cam(activation: torch.Tensor, grad: torch.Tensor, prefix: int) -> torch.Tensor:
    """Grad-CAM map ``(h, w)`` from one image's activation and gradient (weights: spatial mean of grad²)."""
    if prefix >= 0:  # tokens (1, prefix + h*w, C)
        a, g = activation[0, prefix:], grad[0, prefix:]
        side = math.isqrt(a.shape[0])
        weights = g.square().mean(dim=0)
        return F.relu(a @ weights).reshape(side, side)
    weights = grad[0].square().mean(dim=(1, 2))  # (C,)
    return F.relu((weights[:, None, None] * activation[0]).sum(dim=0))


def fd_heatmaps(
    encoder: Any,
    images: Sequence[Image.Image],
    indices: Sequence[int],
    ref: GaussianStats,
    gen_features: Any,
    *,
    size: int = 224,
    device: str | torch.device | None = None,
) -> list[np.ndarray]:
    """Heatmaps of how much each region of each image moves FD (see the module docstring).

    Args:
        encoder: an encoder with a :meth:`heatmap_layer`.
        images: RGB PIL images of the generated set. indices: their rows in ``gen_features``.
        ref: reference statistics. gen_features: ``(N, D)`` features of the whole generated set.
        size: side of the returned maps (pixels).
        device: where to run (default: where the encoder is).

    Returns:
        One ``(size, size)`` float32 map in [0, 1] per image.

    Raises:
        UserError: the encoder has no heatmap layer, or fewer than 3 generated samples.
    """
    layer = encoder.heatmap_layer()
    if layer is None:
        raise UserError(f"encoder {encoder.name!r} has no heatmap layer; --heatmaps works with every encoder "
                        "but pixel")  # fmt: skip
    module, prefix = layer
    dev = torch.device(device) if device is not None else next(encoder.parameters()).device
    encoder.to(dev)
    loo = LeaveOneOutFD(ref, gen_features, device=dev)
    captured: dict[str, torch.Tensor] = {}

    def hook(_module: Any, _inputs: Any, output: Any) -> None:
        out = output[0] if isinstance(output, tuple) else output
        out.retain_grad()
        captured["a"] = out

    handle = module.register_forward_hook(hook)
    maps = []
    try:
        for image, i in zip(images, indices, strict=True):
            x = encoder.transform(image).unsqueeze(0).to(dev).requires_grad_(True)
            with torch.enable_grad():
                fd = loo(int(i), encoder(x)[0])
                fd.backward()
            act = captured["a"]
            cam = _cam(act.detach().double(), act.grad.double(), prefix)
            cam = F.interpolate(cam[None, None].float(), size=(size, size), mode="bilinear", align_corners=False)[0, 0]
            cam = cam - cam.min()
            maps.append((cam / cam.max().clamp(min=1e-12)).cpu().numpy())
    finally:
        handle.remove()
    return maps


def save_heatmap_grid(
    images: Sequence[Image.Image], maps: Sequence[np.ndarray], path: str | os.PathLike[str], *, cols: int = 4
) -> None:
    """A PNG grid (``cols`` per row, 4x4 for 16) of the images with their heatmaps over them (jet, alpha 0.5)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from sixlab_shared import atomic_open

    rows = max(1, math.ceil(len(images) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(2.2 * cols, 2.2 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, image, cam in zip(axes.ravel(), images, maps, strict=False):
        side = cam.shape[0]
        ax.imshow(np.asarray(image.convert("RGB").resize((side, side), Image.Resampling.BICUBIC)))
        ax.imshow(cam, cmap="jet", alpha=0.5, vmin=0.0, vmax=1.0)
    fig.tight_layout()
    with atomic_open(path) as handle:
        fig.savefig(handle, format="png", dpi=80)
    plt.close(fig)
