"""Two CPU processes under torchrun (gloo) give exactly the single-process features, in input order."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dgm_eval.encoders import load_encoder
from dgm_eval.extraction import extract_features


@pytest.mark.slow  # 20-30 s on the shared 2-core machine (three interpreter start-ups); the in-process gather test
# in test_encoders_extraction.py covers the sharding and ordering logic in the default run
def test_torchrun_two_processes_match_one(tmp_path, make_test_images, folder_source):
    image_dir = tmp_path / "images"
    image_dir.mkdir()
    for i, image in enumerate(make_test_images(13, seed=5)):  # 13 = uneven shards of 7 and 6
        image.save(image_dir / f"{i:03d}.png")
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    script = Path(__file__).with_name("distributed_extract.py")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    result = subprocess.run(
        [*command, str(script), str(image_dir), str(out_dir)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    source = folder_source(image_dir)
    for name in ("pixel", "random"):
        single = extract_features(source, load_encoder(name, seed=3, device="cpu"), batch_size=4, device="cpu")
        main = np.load(out_dir / f"{name}_main.npy")
        assert main.shape == single.shape == (13, load_encoder(name).dim)
        assert np.array_equal(main, single), np.abs(main - single).max()
        for rank in (0, 1):  # every process returns the full array in input order
            assert np.array_equal(np.load(out_dir / f"{name}_rank{rank}.npy"), single)
    assert sorted(p.name for p in out_dir.iterdir() if "main" in p.name) == ["pixel_main.npy", "random_main.npy"]
