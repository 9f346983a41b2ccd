"""FD heatmaps: the leave-one-out FD in torch equals the metric, its gradient is right, Grad-CAM is grad²-weighted."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from dgm_eval.cli import app
from dgm_eval.encoders import load_encoder
from dgm_eval.heatmaps import LeaveOneOutFD, fd_heatmaps
from dgm_eval.metrics import feature_statistics, frechet_distance


def test_leave_one_out_fd_equals_the_metric_and_its_gradient_finite_differences(rng):
    r, g = rng.normal(size=(80, 6)), rng.normal(size=(60, 6)) * 1.2 + 0.3
    loo = LeaveOneOutFD(feature_statistics(r), g)
    f = torch.from_numpy(rng.normal(size=6))
    replaced = g.copy()
    replaced[7] = f.numpy()
    assert float(loo(7, f)) == pytest.approx(frechet_distance(r, replaced), rel=1e-9)
    assert torch.autograd.gradcheck(lambda v: loo(7, v), (f.clone().requires_grad_(True),), eps=1e-6, atol=1e-6)


def test_grad_cam_is_the_grad_squared_weighted_map(image_sets):
    from PIL import Image

    encoder = load_encoder("random", device="cpu", seed=0)
    images = [Image.fromarray(a) for a in image_sets["gen"][:3]]
    gen = np.stack([encoder(encoder.transform(im)[None]).numpy()[0] for im in images] + [
        encoder(encoder.transform(Image.fromarray(a))[None]).numpy()[0] for a in image_sets["gen"][3:20]
    ]).astype(np.float64)  # fmt: skip
    ref = feature_statistics(np.stack([
        encoder(encoder.transform(Image.fromarray(a))[None]).numpy()[0] for a in image_sets["ref"]
    ]).astype(np.float64))  # fmt: skip
    maps = fd_heatmaps(encoder, images, [0, 1, 2], ref, gen, size=8)
    # independent: autograd of FD w.r.t. the last conv's output, by hand, for image 1
    x = encoder.transform(images[1])[None]
    act = encoder.net[:-1](x)
    act = encoder.net[-1](act).detach().requires_grad_(True)
    fd = LeaveOneOutFD(ref, gen)(1, act.mean(dim=(2, 3))[0])
    (grad,) = torch.autograd.grad(fd, act)
    cam = torch.relu((grad[0].square().mean(dim=(1, 2))[:, None, None] * act[0].detach()).sum(0)).double()
    cam = torch.nn.functional.interpolate(cam[None, None].float(), size=(8, 8), mode="bilinear")[0, 0]
    cam = (cam - cam.min()) / (cam - cam.min()).max()
    np.testing.assert_allclose(maps[1], cam.numpy(), atol=1e-5)
    # scaled to [0, 1]; a map that ReLU zeroes everywhere stays 0 (no region raises FD for that image)
    assert all(m.shape == (8, 8) and m.min() == 0.0 and m.max() in (0.0, pytest.approx(1.0)) for m in maps)
    assert sum(m.max() > 0 for m in maps) >= 2


def test_cli_heatmaps_write_a_grid_and_refuse_encoders_without_a_layer(image_sets):
    d = image_sets["dir"]
    args = ["compute", d / "ref", d / "gen", "--metrics", "fd", "--device", "cpu", "--heatmaps"]
    result = CliRunner().invoke(app, [str(a) for a in [*args, "--encoder", "random", "--out", d / "out"]])
    assert result.exit_code == 0, result.output
    assert (d / "out" / "heatmaps_run00.png").stat().st_size > 5000
    bad = CliRunner().invoke(app, [str(a) for a in [*args, "--encoder", "pixel", "--out", d / "bad"]])
    assert bad.exit_code == 2 and "has no heatmap layer" in bad.stderr and not (d / "bad").exists()
