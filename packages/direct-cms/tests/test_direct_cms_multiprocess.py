"""DESIGN.md "Scale": `distill` under torchrun with two CPU processes (gloo) gives the numbers of one process that
draws both processes' shards (gradient accumulation over the two shards: DDP's mean of the two gradients)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest
import torch

from direct_cms.distill import STUDENT_FILE, DistillConfig, distill
from sixlab_shared import load_checkpoint

SETTINGS = {"steps": 3, "batch_size": 4, "num_intervals": 10, "lora_rank": 2, "tensorboard": False}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow  # two fresh interpreters under torchrun: ~25 s on the shared 2-core machine
def test_two_processes_equal_one_process(ring_teacher_dir, tmp_path, monkeypatch):
    two = tmp_path / "two"
    args = [f"--{k.replace('_', '-')}={v}" for k, v in SETTINGS.items() if k != "tensorboard"]
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(_free_port()),
        "-m", "direct_cms.cli", "distill", "--teacher", str(ring_teacher_dir), "--out", str(two), *args,
        "--no-tensorboard", "--device", "cpu", "--threads", "1",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("teacher_calls/update") == 1  # one summary line: only the main process prints

    # one process, two accumulated micro-batches: micro-batch m draws process m's shard
    import direct_cms.distill as distill_module

    real_draw = distill_module.draw_batch

    def draw_as_process(data, batch_size, num_index, seed, step, micro=0, process=0):
        assert process == 0
        return real_draw(data, batch_size, num_index, seed, step, 0, micro)

    monkeypatch.setattr(distill_module, "draw_batch", draw_as_process)
    one = tmp_path / "one"
    config = DistillConfig(teacher=str(ring_teacher_dir), grad_accum=2, device="cpu", **SETTINGS)
    distill(config, one)
    got = load_checkpoint(two / STUDENT_FILE)["student"]
    want = load_checkpoint(one / STUDENT_FILE)["student"]
    assert got.keys() == want.keys() and got
    for name in want:
        # float32 sums in another order (all-reduce vs accumulation): equal to rounding
        torch.testing.assert_close(got[name], want[name], atol=1e-6, rtol=1e-5)
    # and the updates did something (the comparison is not between two untouched initialisations)
    assert any(float(want[name].abs().max()) > 0 for name in want if "lora_B" in name)
