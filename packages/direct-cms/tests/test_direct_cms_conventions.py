"""Reference §7 items 1, 2, 8, 10: boundary, grid, CFG, loss forms (against closed forms / numpy float64)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from direct_cms.grid import TimeGrid
from direct_cms.guidance import GuidedTeacher, cfg_combine
from direct_cms.objectives import l2_loss, pseudo_huber_loss
from direct_cms.parameterization import boundary_scalings, consistency_function, predict_x0
from sixlab_shared import UserError


def test_boundary_is_identity_bit_exact(ddpm_scheduler, gen):
    grid = TimeGrid.from_scheduler(ddpm_scheduler, 100)
    x = torch.randn(4, 1, 8, 8, generator=gen)
    eps = torch.randn(4, 1, 8, 8, generator=gen) * 100
    out = consistency_function(grid, eps, x, torch.zeros(4, dtype=torch.int64))
    assert torch.equal(out, x)


def test_c_skip_closed_form():
    c_skip, c_out = boundary_scalings(torch.tensor([10, 500, 1000]))
    t = np.array([10.0, 500.0, 1000.0]) * 10.0
    np.testing.assert_allclose(c_skip.numpy(), 0.25 / (t**2 + 0.25), rtol=1e-15)
    np.testing.assert_allclose(c_out.numpy(), t / np.sqrt(t**2 + 0.25), rtol=1e-15)
    assert c_skip[0].item() == pytest.approx(2.49994e-5, rel=1e-5)


def test_grid_n100(ddpm_scheduler):
    grid = TimeGrid.from_scheduler(ddpm_scheduler, 100)
    assert grid.start_times.tolist() == list(range(1000, 0, -10))
    assert grid.end_times.tolist() == list(range(990, -1, -10))
    acp = ddpm_scheduler.alphas_cumprod.double().numpy()
    assert grid.alpha(torch.tensor(0)).item() == 1.0 and grid.sigma(torch.tensor(0)).item() == 0.0
    assert grid.alpha(torch.tensor(0)).item() != np.sqrt(acp[0])
    np.testing.assert_allclose(grid.alpha(torch.tensor([1, 10, 1000])).numpy(), np.sqrt(acp[[0, 9, 999]]), rtol=1e-15)
    np.testing.assert_allclose(grid.sigma(torch.tensor([10])).numpy(), np.sqrt(1 - acp[[9]]), rtol=1e-15)
    assert grid.time_of_index(torch.tensor([0, 99])).tolist() == [1000, 10]


def test_grid_rejects_non_divisor(ddpm_scheduler):
    with pytest.raises(UserError, match="must divide"):
        TimeGrid.from_scheduler(ddpm_scheduler, 30)


def test_grid_rejects_non_ddpm_and_v_prediction():
    from diffusers import DDPMScheduler

    with pytest.raises(UserError, match="not DDPM-like"):
        TimeGrid.from_scheduler(object(), 10)
    with pytest.raises(UserError, match="epsilon"):
        TimeGrid.from_scheduler(DDPMScheduler(prediction_type="v_prediction"), 10)


def test_predict_x0_matches_numpy(ddpm_scheduler, gen):
    grid = TimeGrid.from_scheduler(ddpm_scheduler, 100)
    x, eps = (
        torch.randn(3, 2, generator=gen, dtype=torch.float64),
        torch.randn(3, 2, generator=gen, dtype=torch.float64),
    )
    t = torch.tensor([1000, 500, 10])
    acp = ddpm_scheduler.alphas_cumprod.double().numpy()[t.numpy() - 1][:, None]
    expected = (x.numpy() - np.sqrt(1 - acp) * eps.numpy()) / np.sqrt(acp)
    np.testing.assert_allclose(predict_x0(grid, eps, x, t).numpy(), expected, rtol=1e-12)


def test_cfg_imagen_form(gen):
    cond, uncond = torch.randn(5, generator=gen), torch.randn(5, generator=gen)
    assert torch.allclose(cfg_combine(cond, uncond, 1.0), cond, atol=1e-7)
    assert torch.equal(cfg_combine(cond, uncond, 0.0), uncond)
    np.testing.assert_allclose(
        cfg_combine(cond, uncond, 9.0).numpy(), (uncond + 9 * (cond - uncond)).numpy(), rtol=1e-6
    )

    def model(x, t, c):
        return x * (c.float() + 1)[:, None]

    x, t = torch.ones(2, 3), torch.tensor([5, 5])
    labels, null = torch.tensor([1, 2]), torch.tensor(0)
    assert torch.equal(GuidedTeacher(model, 1.0, null)(x, t, labels), model(x, t, labels))
    assert torch.equal(GuidedTeacher(model, 0.0, null)(x, t, labels), x)
    guided = GuidedTeacher(model, 3.0, null)
    torch.testing.assert_close(guided(x, t, labels), x + 3 * (model(x, t, labels) - x))
    assert guided.network_calls == 2
    with pytest.raises(UserError, match=">= 0"):
        GuidedTeacher(model, -1.0, null)


def test_losses(gen):
    a, b = torch.randn(4, 6, generator=gen), torch.randn(4, 6, generator=gen)
    d = (a.double() - b.double()).numpy()
    assert l2_loss(a, b).item() == pytest.approx(float(np.mean(d**2)), rel=1e-6)
    assert torch.equal(l2_loss(a, b), F.mse_loss(a, b))
    huber = pseudo_huber_loss(a, b, 1e-3).item()
    assert huber >= 0 and huber == pytest.approx(float(np.mean(np.sqrt(d**2 + 1e-6) - 1e-3)), rel=1e-5)
    assert pseudo_huber_loss(a, a).item() == 0.0


def test_config_names_match_the_registries():
    from direct_cms.config import LOSS_NAMES, SOLVER_NAMES
    from direct_cms.objectives import LOSSES
    from direct_cms.solvers import SOLVERS

    assert tuple(SOLVERS) == SOLVER_NAMES and tuple(LOSSES) == LOSS_NAMES


def test_cli_import_does_not_load_diffusers():
    import subprocess
    import sys

    code = "import sys, direct_cms.cli; print(any(m.split('.')[0] in ('diffusers', 'peft') for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
