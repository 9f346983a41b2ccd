"""Reference §7 item 7 and the diffusers scheduler checks for the multistep sampler."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from direct_cms.scheduler import DirectCMScheduler, multistep_timesteps
from sixlab_shared import UserError

PAPER = {1: [1000], 2: [1000, 500], 4: [1000, 750, 500, 250], 8: [1000, 880, 750, 620, 500, 380, 250, 120]}


def _scheduler(n=100):
    return DirectCMScheduler(beta_schedule="linear", beta_start=1e-4, beta_end=0.02, num_original_inference_steps=n)


@pytest.mark.parametrize("k", [1, 2, 4, 8])
def test_paper_schedule(k):
    assert multistep_timesteps(100, k).tolist() == PAPER[k]
    sched = _scheduler()
    sched.set_timesteps(k)
    assert sched.timesteps.tolist() == PAPER[k]


def test_k_above_n_is_user_error():
    with pytest.raises(UserError, match="K=30"):
        _scheduler(20).set_timesteps(30)


def test_step_before_set_timesteps_raises():
    with pytest.raises(ValueError, match="set_timesteps"):
        _scheduler().step(torch.zeros(1, 2), 1000, torch.zeros(1, 2))


def _f_numpy(sched, eps, x, t):
    acp = sched.grid.alphas_cumprod.numpy()
    a, s = np.sqrt(acp[t - 1]), np.sqrt(1 - acp[t - 1])
    x0 = (x - s * eps) / a
    st = 10.0 * t
    return 0.25 / (st**2 + 0.25) * x + st / np.sqrt(st**2 + 0.25) * x0


def test_one_step_is_f_at_T_and_adds_no_noise(ddpm_scheduler, gen):
    sched = _scheduler()
    sched.set_timesteps(1)
    x = torch.randn(3, 4, generator=gen, dtype=torch.float64)
    eps = torch.randn(3, 4, generator=gen, dtype=torch.float64)
    out1 = sched.step(eps, 1000, x, generator=torch.Generator().manual_seed(1)).prev_sample
    out2 = sched.step(eps, 1000, x, generator=torch.Generator().manual_seed(2)).prev_sample
    assert torch.equal(out1, out2)
    np.testing.assert_allclose(out1.numpy(), _f_numpy(sched, eps.numpy(), x.numpy(), 1000), rtol=1e-12)
    # the scheduler's ᾱ equals diffusers' DDPMScheduler's
    torch.testing.assert_close(sched.grid.alphas_cumprod.float(), ddpm_scheduler.alphas_cumprod, atol=0, rtol=0)


def test_two_steps_match_float64_reference(gen):
    sched = _scheduler()
    sched.set_timesteps(2)
    x = torch.randn(2, 3, generator=gen, dtype=torch.float64)
    e1, e2, z = (torch.randn(2, 3, generator=gen, dtype=torch.float64) for _ in range(3))
    acp = sched.grid.alphas_cumprod.numpy()
    step1 = sched.step(e1, 1000, x, noise=z)
    d1 = _f_numpy(sched, e1.numpy(), x.numpy(), 1000)
    x_mid = np.sqrt(acp[499]) * d1 + np.sqrt(1 - acp[499]) * z.numpy()
    np.testing.assert_allclose(step1.denoised.numpy(), d1, rtol=1e-12)
    np.testing.assert_allclose(step1.prev_sample.numpy(), x_mid, rtol=1e-12)
    final = sched.step(e2, 500, step1.prev_sample).prev_sample
    np.testing.assert_allclose(final.numpy(), _f_numpy(sched, e2.numpy(), x_mid, 500), rtol=1e-12)


def test_save_load_roundtrip_and_tuple_output(tmp_path, gen):
    sched = _scheduler(50)
    sched.save_config(tmp_path)
    loaded = DirectCMScheduler.from_pretrained(tmp_path)
    strip = {k: v for k, v in loaded.config.items() if not k.startswith("_")}
    assert strip == {k: v for k, v in sched.config.items() if not k.startswith("_")}
    for s in (sched, loaded):
        s.set_timesteps(4)
    x, eps, z = (torch.randn(2, 1, 8, 8, generator=gen) for _ in range(3))
    a = sched.step(eps, 1000, x, noise=z)
    b = loaded.step(eps, 1000, x, noise=z, return_dict=False)
    assert torch.equal(a.prev_sample, b[0]) and torch.equal(a.denoised, b[1])
    # built from a teacher's DDPM config, as the pipeline does
    from diffusers import DDPMScheduler

    other = DirectCMScheduler.from_teacher_config(DDPMScheduler(beta_schedule="linear").config, 20)
    assert other.config.num_original_inference_steps == 20 and other.config.beta_schedule == "linear"
