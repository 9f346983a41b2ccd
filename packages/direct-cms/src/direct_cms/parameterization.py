"""ε-prediction → x̂₀ and the consistency function's boundary scalings (paper's code, σ_d = 0.5, scale 10).

    x̂₀ = (x_t − σ_t·ε̂) / α_t
    c_skip(t) = σ_d² / ((s·t)² + σ_d²),     c_out(t) = s·t / √((s·t)² + σ_d²)
    f(x_t, t) = c_skip(t)·x_t + c_out(t)·x̂₀

At ``t = 0``: c_skip = 1, c_out = 0, α = 1, σ = 0, so ``f(x, 0) = x`` exactly. ``c_skip(10) ≈ 2.5e-5``: at every
training time f is almost exactly the x₀-prediction.
"""

from __future__ import annotations

import torch

from direct_cms.grid import TimeGrid, expand_to

__all__ = ["SIGMA_DATA", "TIMESTEP_SCALING", "boundary_scalings", "consistency_function", "predict_x0"]

#: σ_d of the boundary scalings in the paper's code.
SIGMA_DATA = 0.5
#: ``--timestep_scaling_factor`` of the paper's code.
TIMESTEP_SCALING = 10.0


def predict_x0(grid: TimeGrid, eps: torch.Tensor, sample: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """x̂₀ = (x_t − σ_t·ε̂)/α_t for per-sample times ``t`` of shape ``(B,)`` (α, σ computed in float64).

    Args:
        grid: the time grid (index shift, α and σ).
        eps: ε̂, shape ``(B, ...)``.
        sample: x_t, same shape.
        t: integer times 0..T, shape ``(B,)``.
    """
    return (sample - expand_to(grid.sigma(t), sample) * eps) / expand_to(grid.alpha(t), sample)


def boundary_scalings(
    t: torch.Tensor, sigma_data: float = SIGMA_DATA, timestep_scaling: float = TIMESTEP_SCALING
) -> tuple[torch.Tensor, torch.Tensor]:
    """c_skip and c_out at integer times ``t`` (float64, shape of ``t``).

    Example:
        >>> c_skip, c_out = boundary_scalings(torch.tensor([0, 10]))
        >>> c_skip[0].item(), c_out[0].item(), round(c_skip[1].item(), 10)
        (1.0, 0.0, 2.49994e-05)
    """
    scaled = torch.as_tensor(t, dtype=torch.float64) * timestep_scaling
    c_skip = sigma_data**2 / (scaled**2 + sigma_data**2)
    c_out = scaled / (scaled**2 + sigma_data**2).sqrt()
    return c_skip, c_out


def consistency_function(
    grid: TimeGrid,
    eps: torch.Tensor,
    sample: torch.Tensor,
    t: torch.Tensor,
    sigma_data: float = SIGMA_DATA,
    timestep_scaling: float = TIMESTEP_SCALING,
) -> torch.Tensor:
    """f(x_t, t) = c_skip·x_t + c_out·x̂₀(ε̂) for per-sample times ``t`` (``(B,)`` int64); f(x, 0) = x exactly."""
    c_skip, c_out = boundary_scalings(t, sigma_data, timestep_scaling)
    x0 = predict_x0(grid, eps, sample, t)
    return expand_to(c_skip, sample) * sample + expand_to(c_out, sample) * x0
