"""The ``pixel`` and ``random`` encoders against hand-built references."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from dgm_eval.encoders import load_encoder


def test_pixel_is_flattened_bicubic_32px_in_unit_range(images):
    encoder = load_encoder("pixel", device="cpu")
    assert encoder.dim == 3072
    for image in images[:3]:
        expected = np.asarray(image.resize((32, 32), Image.Resampling.BICUBIC), dtype=np.float64) / 255.0
        expected = expected.transpose(2, 0, 1).reshape(-1)  # C, H, W order
        features = encoder(encoder.transform(image)[None])[0].numpy()
        assert features.shape == (3072,)
        np.testing.assert_allclose(features, expected, rtol=0, atol=1e-7)
    # not collapsed to the mean colour: distinct images with one mean colour keep distinct features
    checker = np.indices((32, 32)).sum(0) % 2 * 255
    a = Image.fromarray(np.repeat(checker[..., None], 3, 2).astype(np.uint8))
    b = Image.fromarray(np.repeat((255 - checker)[..., None], 3, 2).astype(np.uint8))
    fa, fb = (encoder(encoder.transform(im)[None])[0] for im in (a, b))
    assert torch.allclose(fa.mean(), fb.mean()) and (fa - fb).abs().max() == 1.0


def test_pixel_clean_resize_matches_clean_fid_formula(images):
    encoder = load_encoder("pixel", clean_resize=True, device="cpu")
    image = images[0]
    arr = np.asarray(image, dtype=np.float32)
    # clean-fid's resize_single_channel, written out: float32 channel, PIL mode F, bicubic, clip, then /255
    channels = [
        np.asarray(Image.fromarray(arr[:, :, c], mode="F").resize((32, 32), Image.Resampling.BICUBIC)) for c in range(3)
    ]
    expected = np.clip(np.stack(channels, 0), 0, 255).reshape(-1) / 255.0
    features = encoder(encoder.transform(image)[None])[0].numpy()
    np.testing.assert_allclose(features, expected, rtol=0, atol=1e-7)
    plain = load_encoder("pixel", device="cpu")
    assert not np.allclose(plain(plain.transform(image)[None])[0].numpy(), features, atol=1e-4)
    assert "clean" in encoder.preprocess_id() and "clean" not in plain.preprocess_id()


def test_random_encoder_weights_depend_only_on_seed(images):
    a, b, c = (load_encoder("random", seed=s, device="cpu") for s in (5, 5, 6))
    for p, q in zip(a.state_dict().values(), b.state_dict().values(), strict=True):
        assert torch.equal(p, q)
    assert not torch.equal(a.net[0].weight, c.net[0].weight)
    torch.manual_seed(123)  # the global RNG must not matter
    d = load_encoder("random", seed=5, device="cpu")
    assert torch.equal(a.net[0].weight, d.net[0].weight)
    x = torch.stack([a.transform(im) for im in images])
    assert x.shape == (len(images), 3, 64, 64)
    features = a(x)
    assert features.shape == (len(images), 256) and features.dtype == torch.float32
    assert torch.isfinite(features).all() and features.std(0).mean() > 1e-3  # not degenerate
    assert a.preprocess_id() != c.preprocess_id()


def test_random_encoder_preprocessing_is_bicubic_64_in_minus_one_one(images):
    encoder = load_encoder("random", device="cpu")
    image = images[1]
    expected = np.asarray(image.resize((64, 64), Image.Resampling.BICUBIC), dtype=np.float32) / 255.0
    expected = (expected.transpose(2, 0, 1) - 0.5) / 0.5
    np.testing.assert_allclose(encoder.transform(image).numpy(), expected, rtol=0, atol=1e-6)
