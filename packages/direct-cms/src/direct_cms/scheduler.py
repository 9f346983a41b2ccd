"""The student's LCM-style multistep sampler as a diffusers scheduler, with the paper's timestep schedule.

Notation (code → paper): ``num_original_inference_steps`` N (the distillation grid), ``num_inference_steps`` K,
``timesteps`` τ_1 > … > τ_K on the 1-indexed grid [T, T−r, …, r] at indices ``round(linspace(0, N, K,
endpoint=False))`` (numpy's round-half-to-even), e.g. N = 100: K=1 → [1000], K=2 → [1000, 500],
K=4 → [1000, 750, 500, 250], K=8 → [1000, 880, 750, 620, 500, 380, 250, 120].

Each :meth:`DirectCMScheduler.step`: x̂₀ = f(x_τ, τ) (the consistency function around the model's ε̂), then
re-noise to the next τ' with fresh noise (LCM γ = 1): x_{τ'} = α_{τ'}·x̂₀ + σ_{τ'}·z; the last step returns x̂₀
and adds no noise. Sampling starts from x_T ~ N(0, I) (``init_noise_sigma = 1``), as in the paper.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.schedulers.scheduling_utils import SchedulerMixin
from diffusers.utils import BaseOutput
from diffusers.utils.torch_utils import randn_tensor

from direct_cms.grid import TimeGrid, expand_to
from direct_cms.parameterization import boundary_scalings, predict_x0
from sixlab_shared import UserError

logger = logging.getLogger(__name__)

__all__ = ["DirectCMScheduler", "DirectCMSchedulerOutput", "multistep_timesteps"]


def multistep_timesteps(num_intervals: int, num_steps: int, num_train_timesteps: int = 1000) -> np.ndarray:
    """The paper's K-step schedule on the grid [T, T−r, …, r] (int64, descending).

    Raises:
        UserError: K < 1 or K > N.

    Example:
        >>> multistep_timesteps(100, 4).tolist()
        [1000, 750, 500, 250]
    """
    if num_steps < 1 or num_steps > num_intervals:
        raise UserError(f"K={num_steps} sampling steps must lie in 1..N={num_intervals} (the distillation grid)")
    ratio = num_train_timesteps // num_intervals
    grid = num_train_timesteps - np.arange(num_intervals, dtype=np.int64) * ratio
    index = np.round(np.linspace(0, num_intervals, num_steps, endpoint=False)).astype(np.int64)
    return grid[index]


@dataclass
class DirectCMSchedulerOutput(BaseOutput):
    """Output of :meth:`DirectCMScheduler.step`.

    Args:
        prev_sample: x at the next timestep (re-noised), or x̂₀ after the last step; ``(B, ...)``.
        denoised: f(x_τ, τ), the step's clean estimate; ``(B, ...)``.
    """

    prev_sample: torch.Tensor
    denoised: torch.Tensor


class DirectCMScheduler(SchedulerMixin, ConfigMixin):
    """Multistep consistency sampler on the paper's 1-indexed grid (drop-in for a diffusers pipeline).

    Args:
        num_train_timesteps: T of the DDPM schedule.
        beta_start: first β.
        beta_end: last β.
        beta_schedule: any β schedule of diffusers' ``DDPMScheduler`` (``linear``, ``scaled_linear``,
            ``squaredcos_cap_v2``, ``sigmoid``); ᾱ is computed by ``DDPMScheduler`` itself.
        trained_betas: explicit β values (overrides the three above).
        num_original_inference_steps: N, the distillation grid (passed here, never patched on the config).
        sigma_data: σ_d of the boundary scalings.
        timestep_scaling: s of the boundary scalings.
        prediction_type: only ``epsilon``.
        rescale_betas_zero_snr: must be false (recorded so that a zero-SNR config is refused, not ignored).
    """

    order = 1
    _compatibles: list[str] = []

    @register_to_config
    def __init__(
        self,
        num_train_timesteps: int = 1000,
        beta_start: float = 0.00085,
        beta_end: float = 0.012,
        beta_schedule: str = "scaled_linear",
        trained_betas: list[float] | None = None,
        num_original_inference_steps: int = 100,
        sigma_data: float = 0.5,
        timestep_scaling: float = 10.0,
        prediction_type: str = "epsilon",
        rescale_betas_zero_snr: bool = False,
    ) -> None:
        if prediction_type != "epsilon":
            raise ValueError(f"DirectCMScheduler supports prediction_type='epsilon' only, got {prediction_type!r}")
        if rescale_betas_zero_snr:
            raise ValueError("DirectCMScheduler cannot use a zero-terminal-SNR schedule (x̂₀ is undefined at α_T = 0)")
        from diffusers import DDPMScheduler

        # ᾱ from diffusers' own β → ᾱ code for this β config (every beta_schedule diffusers supports)
        ddpm = DDPMScheduler(
            num_train_timesteps=num_train_timesteps,
            beta_start=beta_start,
            beta_end=beta_end,
            beta_schedule=beta_schedule,
            trained_betas=trained_betas,
        )
        betas = ddpm.betas.double()
        alphas_cumprod = ddpm.alphas_cumprod.double()
        self.grid = TimeGrid(alphas_cumprod, num_original_inference_steps, betas=betas)
        self.init_noise_sigma = 1.0
        self.num_inference_steps: int | None = None
        self.timesteps = torch.from_numpy(self.grid.start_times.numpy().copy())
        self._step_index: int | None = None

    @classmethod
    def from_teacher_config(cls, config: Any, num_original_inference_steps: int) -> DirectCMScheduler:
        """The sampler for a teacher scheduler's config (any DDPM-like diffusers scheduler): its β settings are
        kept, keys this sampler does not have (``timestep_spacing``, ``steps_offset``, …) are left out instead of
        being reported as ignored, and N is set here (never patched on the config afterwards).

        Example:
            >>> from diffusers import EulerDiscreteScheduler
            >>> DirectCMScheduler.from_teacher_config(EulerDiscreteScheduler().config, 100).config.beta_schedule
            'linear'
        """
        import inspect

        accepted = set(inspect.signature(cls.__init__).parameters) - {"self"}
        kwargs = {k: v for k, v in dict(config).items() if k in accepted}
        kwargs["num_original_inference_steps"] = num_original_inference_steps
        return cls(**kwargs)

    def scale_model_input(self, sample: torch.Tensor, timestep: int | None = None) -> torch.Tensor:
        """Identity (the model takes x_τ as is)."""
        return sample

    def set_timesteps(self, num_inference_steps: int, device: str | torch.device | None = None) -> None:
        """Set the K-step schedule (see :func:`multistep_timesteps`).

        Raises:
            UserError: K < 1 or K > N.
        """
        cfg = self.config
        steps = multistep_timesteps(cfg.num_original_inference_steps, num_inference_steps, cfg.num_train_timesteps)
        self.num_inference_steps = num_inference_steps
        self.timesteps = torch.from_numpy(steps).to(device)
        self._step_index = None

    def _next_timestep(self, timestep: int) -> int:
        matches = (self.timesteps == timestep).nonzero()
        if len(matches) == 0:
            raise ValueError(f"timestep {timestep} is not in the schedule {self.timesteps.tolist()}")
        position = int(matches[0].item())
        return int(self.timesteps[position + 1].item()) if position + 1 < len(self.timesteps) else 0

    def step(
        self,
        model_output: torch.Tensor,
        timestep: int | torch.Tensor,
        sample: torch.Tensor,
        generator: torch.Generator | None = None,
        return_dict: bool = True,
        noise: torch.Tensor | None = None,
    ) -> DirectCMSchedulerOutput | tuple[torch.Tensor, torch.Tensor]:
        """One multistep consistency step.

        Args:
            model_output: the student's ε̂ at ``(sample, timestep)``, ``(B, ...)``.
            timestep: the current τ (an element of ``timesteps``).
            sample: x_τ, ``(B, ...)``.
            generator: draws the re-noising z (ignored when ``noise`` is given).
            return_dict: return :class:`DirectCMSchedulerOutput` (else a tuple).
            noise: pre-generated z (so evaluation reuses fixed noise); shape of ``sample``.

        Raises:
            ValueError: ``set_timesteps`` was not called, or ``timestep`` is not in the schedule.
        """
        if self.num_inference_steps is None:
            raise ValueError("call set_timesteps(num_inference_steps) before step()")
        tau = int(timestep.item() if isinstance(timestep, torch.Tensor) else timestep)
        # 1. next timestep τ' (0 after the last step)
        tau_next = self._next_timestep(tau)
        t = torch.full((sample.shape[0],), tau, dtype=torch.int64)
        # 2. x̂₀ from ε̂ and the boundary scalings: denoised = c_skip·x + c_out·x̂₀
        x0 = predict_x0(self.grid, model_output, sample, t)
        c_skip, c_out = boundary_scalings(t, self.config.sigma_data, self.config.timestep_scaling)
        denoised = expand_to(c_skip, sample) * sample + expand_to(c_out, sample) * x0
        # 3. re-noise to τ' with fresh noise, except after the last step
        if tau_next > 0:
            if noise is None:
                noise = randn_tensor(sample.shape, generator=generator, device=sample.device, dtype=sample.dtype)
            t_next = torch.full((sample.shape[0],), tau_next, dtype=torch.int64)
            prev = (
                expand_to(self.grid.alpha(t_next), sample) * denoised
                + expand_to(self.grid.sigma(t_next), sample) * noise
            )
        else:
            prev = denoised
        if not return_dict:
            return prev, denoised
        return DirectCMSchedulerOutput(prev_sample=prev, denoised=denoised)

    def __len__(self) -> int:
        return self.config.num_train_timesteps
