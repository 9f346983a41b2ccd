"""extract_features: input order, batch-size and worker independence, options and errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dgm_eval.encoders import load_encoder
from dgm_eval.extraction import extract_features, shard_range
from sixlab_shared import UserError


def test_features_follow_input_order_and_match_per_image_forward(images):
    encoder = load_encoder("random", seed=1, device="cpu")
    features = extract_features(images, encoder, batch_size=3, device="cpu", progress=False)
    assert features.shape == (len(images), 256) and features.dtype == np.float32
    for i, image in enumerate(images):
        alone = encoder(encoder.transform(image)[None])[0].numpy()
        np.testing.assert_allclose(features[i], alone, rtol=0, atol=1e-6)


@pytest.mark.parametrize("name", ["pixel", "random"])
def test_batch_size_and_workers_do_not_change_features(images, name):
    encoder = load_encoder(name, device="cpu")
    reference = extract_features(images, encoder, batch_size=1, device="cpu")
    for batch_size, workers in ((2, 0), (7, 0), (64, 0), (3, 2)):
        other = extract_features(images, encoder, batch_size=batch_size, num_workers=workers, device="cpu")
        np.testing.assert_allclose(other, reference, rtol=0, atol=1e-6)
    if name == "pixel":  # no batched arithmetic at all: bit-identical
        assert np.array_equal(extract_features(images, encoder, batch_size=5, device="cpu"), reference)


def test_folder_end_to_end(image_folder, folder_source):
    source = folder_source(image_folder)
    features = extract_features(source, load_encoder("pixel", device="cpu"), batch_size=2, device="cpu")
    assert features.shape == (2, 3072)
    assert np.all((features >= 0) & (features <= 1)) and features.std() > 0.05


def test_bf16_autocast_runs_and_stays_close(images):
    encoder = load_encoder("random", device="cpu")
    full = extract_features(images, encoder, batch_size=4, device="cpu")
    half = extract_features(images, encoder, batch_size=4, device="cpu", precision="bf16")
    assert half.dtype == np.float32
    scale = np.abs(full).max()
    assert np.abs(half - full).max() < 0.05 * scale
    assert not np.array_equal(half, full)  # autocast did change the arithmetic


def test_user_errors(images):
    encoder = load_encoder("pixel", device="cpu")
    with pytest.raises(UserError, match="--precision must be one of fp32, bf16, fp16, got 'fp8'"):
        extract_features(images, encoder, precision="fp8")
    with pytest.raises(UserError, match="--batch-size must be at least 1"):
        extract_features(images, encoder, batch_size=0)
    with pytest.raises(UserError, match="--workers must be 0 or more"):
        extract_features(images, encoder, num_workers=-1)
    with pytest.raises(UserError, match="no classifier head"):
        extract_features(images, encoder, with_logits=True)
    with pytest.raises(UserError, match="input is empty"):
        extract_features([], encoder)


def test_numpy_arrays_are_accepted_as_items(images):
    encoder = load_encoder("pixel", device="cpu")
    arrays = [np.asarray(im) for im in images]
    assert np.array_equal(extract_features(arrays, encoder), extract_features(images, encoder))


@pytest.mark.parametrize(("n", "world"), [(0, 2), (1, 2), (5, 2), (7, 3), (8, 4), (3, 5)])
def test_shards_cover_inputs_in_order(n, world):
    shards = [list(shard_range(n, world, r)) for r in range(world)]
    assert sum(shards, []) == list(range(n))
    assert max(len(s) for s in shards) == (-(-n // world) if n else 0)


def test_encoder_is_moved_and_left_frozen(images):
    encoder = load_encoder("random", device="cpu")
    extract_features(images[:2], encoder, device="cpu")
    assert not encoder.training and all(not p.requires_grad for p in encoder.parameters())
    assert next(encoder.parameters()).device == torch.device("cpu")


def test_sharded_gather_restores_input_order(images, monkeypatch):
    """Two ranks simulated in one process: rank 1 runs first and its padded shard is what rank 0 gathers."""
    import accelerate.utils

    from dgm_eval import extraction

    encoder = load_encoder("random", seed=2, device="cpu")
    single = extract_features(images, encoder, batch_size=3)  # 7 images: shards of 4 and 3 (padded to 4)
    sent: list[torch.Tensor] = []

    def gather_as_rank1(tensor):
        sent.append(tensor.clone())
        return torch.cat([torch.zeros_like(tensor), tensor])

    monkeypatch.setattr(extraction, "_distributed_world", lambda: (1, 2, torch.device("cpu")))
    monkeypatch.setattr(accelerate.utils, "gather", gather_as_rank1)
    extract_features(images, encoder, batch_size=3)
    rank1_padded = sent[-1]
    assert rank1_padded.shape == (4, 256) and torch.all(rank1_padded[3] == 0)  # 3 rows + 1 padding row

    def gather_as_rank0(tensor):
        other = torch.tensor([256]) if tensor.numel() == 1 else rank1_padded
        return torch.cat([tensor, other])

    monkeypatch.setattr(extraction, "_distributed_world", lambda: (0, 2, torch.device("cpu")))
    monkeypatch.setattr(accelerate.utils, "gather", gather_as_rank0)
    gathered = extract_features(images, encoder, batch_size=3)
    assert gathered.shape == single.shape
    np.testing.assert_allclose(gathered, single, rtol=0, atol=1e-6)
