"""Every supported encoder extracts features from an image folder end to end, with tiny local weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dgm_eval.encoders import REGISTRY, get_encoder_info, load_encoder
from dgm_eval.encoders.inception import FIDInceptionV3
from dgm_eval.extraction import extract_features

HF_NAMES = ("dinov2", "clip", "convnext", "mae", "data2vec")
FILE_NAMES = ("inception", "sinception", "swav")
NO_WEIGHTS = ("pixel", "random")


def test_every_supported_encoder_is_covered():
    assert set(REGISTRY.supported_names()) == set(HF_NAMES + FILE_NAMES + NO_WEIGHTS)


@pytest.fixture(scope="module")
def inception_file(tmp_path_factory):
    torch.manual_seed(0)  # test fixture only
    path = tmp_path_factory.mktemp("inception") / "pt_inception.pth"
    torch.save(FIDInceptionV3().state_dict(), path)
    return path


@pytest.mark.parametrize("name", HF_NAMES + FILE_NAMES + NO_WEIGHTS)
def test_folder_to_features(name, image_folder, folder_source, tiny_hf_models, tiny_swav_file, inception_file):
    weights = {"swav": tiny_swav_file, "inception": inception_file, "sinception": inception_file}.get(name)
    weights = tiny_hf_models.get(name, weights)
    encoder = load_encoder(name, weights=None if weights is None else str(weights), device="cpu")
    source = folder_source(image_folder)
    features = extract_features(source, encoder, batch_size=2, num_workers=0, device="cpu")
    assert features.shape == (len(source), encoder.dim) and features.dtype == np.float32
    assert np.isfinite(features).all()
    scale = np.abs(features).max()
    assert scale > 0 and np.abs(features[0] - features[1]).max() > 1e-3 * scale  # different images, features
    if weights is None or name in FILE_NAMES:  # real archs: the registry's declared dimension is the real one
        assert encoder.dim == get_encoder_info(name).dim
    else:
        assert str(weights) in encoder.preprocess_id()
    assert encoder.preprocessing.describe() in encoder.preprocess_id()
