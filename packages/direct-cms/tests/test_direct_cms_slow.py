"""Slow: the paper's first claim on the 2-D ring over 3 seeds (Direct CM has the lower ODE error)."""

from __future__ import annotations

import pytest

from direct_cms.distill import DistillConfig
from direct_cms.experiment import DemoConfig, EvalConfig, run_demo


@pytest.mark.slow
def test_direct_has_lower_ode_error_on_ring(tmp_path):
    config = DemoConfig(
        dataset="ring",
        teacher_steps=3000,
        distill=DistillConfig(steps=200, num_intervals=20, guidance=3.0, tensorboard=False, checkpoint_every=200),
        eval=EvalConfig(num_samples=500, ks=[1, 2, 4, 8], sanity_samples=0),
        seeds=[0, 1, 2],
    )
    summary = run_demo(config, tmp_path / "demo")
    for k in ("1", "2", "4", "8"):
        direct, cd = summary["students"]["direct"][k]["ode_error"], summary["students"]["cd"][k]["ode_error"]
        assert direct[0] < cd[0], (k, direct, cd)
