"""The TF-FID Inception port against pytorch-fid's module (built without weights) carrying the same random weights."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from dgm_eval.encoders import load_encoder
from dgm_eval.encoders.inception import _CLEAN_PREPROCESSING, _DEFAULT_PREPROCESSING, FID_WEIGHTS_URL, FIDInceptionV3
from dgm_eval.extraction import extract_features
from sixlab_shared import UserError

pfi = pytest.importorskip("pytorch_fid.inception")


def _pytorch_fid_architecture() -> torch.nn.Module:
    """pytorch-fid's ``fid_inception_v3()`` without its download: torchvision's net with the FID blocks swapped."""
    net = pfi._inception_v3(num_classes=1008, aux_logits=False, weights=None)
    net.Mixed_5b = pfi.FIDInceptionA(192, pool_features=32)
    net.Mixed_5c = pfi.FIDInceptionA(256, pool_features=64)
    net.Mixed_5d = pfi.FIDInceptionA(288, pool_features=64)
    net.Mixed_6b = pfi.FIDInceptionC(768, channels_7x7=128)
    net.Mixed_6c = pfi.FIDInceptionC(768, channels_7x7=160)
    net.Mixed_6d = pfi.FIDInceptionC(768, channels_7x7=160)
    net.Mixed_6e = pfi.FIDInceptionC(768, channels_7x7=192)
    net.Mixed_7b = pfi.FIDInceptionE_1(1280)
    net.Mixed_7c = pfi.FIDInceptionE_2(2048)
    return net


@torch.no_grad()
def _randomize(net: torch.nn.Module, seed: int) -> None:
    """Seeded random weights and batch-norm statistics, scaled so activations stay O(1) through the net."""
    generator = torch.Generator().manual_seed(seed)
    for name, tensor in net.state_dict().items():
        if name.endswith("num_batches_tracked"):
            continue
        shape = tensor.shape
        if name.endswith("conv.weight") or name == "fc.weight":
            fan_in = math.prod(shape[1:])
            tensor.copy_(torch.randn(shape, generator=generator) * math.sqrt(2.0 / fan_in))
        elif name.endswith("running_var"):
            tensor.copy_(0.5 + torch.rand(shape, generator=generator))
        elif name.endswith("bn.weight"):
            tensor.copy_(1.0 + 0.1 * torch.randn(shape, generator=generator))
        else:  # bn.bias, running_mean, fc.bias
            tensor.copy_(0.1 * torch.randn(shape, generator=generator))


@pytest.fixture(scope="module")
def fid_weights(tmp_path_factory) -> tuple[Path, torch.nn.Module]:
    """A random state dict saved from pytorch-fid's architecture, and pytorch-fid's InceptionV3 wrapper."""
    net = _pytorch_fid_architecture()
    _randomize(net, seed=0)
    path = tmp_path_factory.mktemp("fid") / "pt_inception-random.pth"
    torch.save(net.state_dict(), path)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(pfi, "fid_inception_v3", lambda: net)
        reference = pfi.InceptionV3([2, 3]).eval()  # Mixed_6e output and pool3, with pytorch-fid's own forward
    return path, reference


def test_parameter_names_and_shapes_match_the_fid_weights_layout():
    ours = {k: tuple(v.shape) for k, v in FIDInceptionV3().state_dict().items()}
    theirs = {k: tuple(v.shape) for k, v in _pytorch_fid_architecture().state_dict().items()}
    assert ours == theirs
    assert ours["fc.weight"] == (1008, 2048) and "fc.bias" in ours


def test_features_logits_and_sfid_match_pytorch_fid(fid_weights, make_test_images):
    path, reference = fid_weights
    images = make_test_images(2, seed=11, sizes=((64, 48), (32, 32)))
    inception = load_encoder("inception", weights=str(path), device="cpu")
    sinception = load_encoder("sinception", weights=str(path), device="cpu")
    assert inception.weights_id == str(path.resolve())
    features, logits = extract_features(images, inception, batch_size=2, with_logits=True)
    sfid = extract_features(images, sinception, batch_size=2)
    assert features.shape == (2, 2048) and logits.shape == (2, 1008) and sfid.shape == (2, 2023)
    fc = torch.load(path, weights_only=True)
    with torch.no_grad():
        for i, image in enumerate(images):
            x = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0).permute(2, 0, 1)[None]
            mixed_6e, pool3 = reference(x)  # pytorch-fid resizes (bilinear, 299) and scales to [-1, 1] itself
            pool3 = pool3.flatten(1)
            assert pool3.abs().mean() > 1e-2  # the random weights give non-trivial features
            np.testing.assert_allclose(features[i], pool3[0].numpy(), rtol=0, atol=1e-5)
            np.testing.assert_allclose(sfid[i], mixed_6e[0, :7].flatten().numpy(), rtol=0, atol=1e-5)
            expected_logits = pool3 @ fc["fc.weight"].T  # no bias, as the original TF IS code
            np.testing.assert_allclose(logits[i], expected_logits[0].numpy(), rtol=0, atol=1e-4)
            with_bias = F.linear(pool3, fc["fc.weight"], fc["fc.bias"])
            assert not np.allclose(logits[i], with_bias[0].numpy(), atol=1e-3)


def test_default_and_clean_preprocessing(make_test_images):
    image = make_test_images(1, seed=2, sizes=((40, 52),))[0]
    x = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0).permute(2, 0, 1)[None]
    expected = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)[0]
    assert torch.equal(_DEFAULT_PREPROCESSING(image), expected)
    arr = np.asarray(image, dtype=np.float32)
    channels = [
        np.asarray(Image.fromarray(arr[:, :, c], mode="F").resize((299, 299), Image.Resampling.BICUBIC))
        for c in range(3)
    ]
    clean = np.clip(np.stack(channels, 0), 0, 255) / 255.0
    np.testing.assert_allclose(_CLEAN_PREPROCESSING(image).numpy(), clean, rtol=0, atol=1e-6)


def test_offline_without_cached_weights_is_one_clear_line(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty-torch-home"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(UserError) as err:
        load_encoder("inception", device="cpu")
    message = str(err.value)
    assert "\n" not in message
    assert "'inception'" in message and FID_WEIGHTS_URL in message and "--weights" in message
    assert "HF_HUB_OFFLINE" in message


def test_cached_file_is_used_offline(fid_weights, tmp_path, monkeypatch):
    path, _ = fid_weights
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cache = tmp_path / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    (cache / FID_WEIGHTS_URL.rsplit("/", 1)[1]).write_bytes(path.read_bytes())
    encoder = load_encoder("sinception", device="cpu")
    assert encoder.weights_id == FID_WEIGHTS_URL and encoder.dim == 2023


def test_bad_weight_files_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        load_encoder("inception", weights=str(tmp_path / "missing.pth"))
    wrong = tmp_path / "wrong.pth"
    torch.save({"conv.weight": torch.zeros(1)}, wrong)
    with pytest.raises(UserError, match=r"do not fit encoder 'inception'.*Missing key"):
        load_encoder("inception", weights=str(wrong))
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="cannot read weights file"):
        load_encoder("inception", weights=str(garbage))


def test_inception_score_through_the_cli_uses_the_generated_sets_logits(fid_weights, make_test_images, tmp_path):
    import json

    from typer.testing import CliRunner

    from dgm_eval.cli import app
    from dgm_eval.metrics import inception_score

    path, _ = fid_weights
    folders = {}
    for name, seed in (("ref", 1), ("gen", 2)):
        folders[name] = tmp_path / name
        folders[name].mkdir()
        for i, image in enumerate(make_test_images(6, seed=seed)):
            image.save(folders[name] / f"{i}.png")
    out = tmp_path / "out"
    args = ["compute", folders["ref"], folders["gen"], "--encoder", "inception", "--weights", path, "--metrics",
            "is,fd", "--splits", "2", "--device", "cpu", "--out", out, "--cache-dir", tmp_path / "c"]  # fmt: skip
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    row = json.loads((out / "results.json").read_text())["results"][str(folders["gen"])]
    # independent: the 1008 logits of the generated images (pool3 @ W.T, no bias), softmax, IS with the same seed
    encoder = load_encoder("inception", weights=str(path), device="cpu")
    _, logits = extract_features(make_test_images(6, seed=2), encoder, with_logits=True)
    probs = torch.softmax(torch.from_numpy(logits).double(), dim=1).numpy()
    mean, std = inception_score(probs, splits=2, seed=2020)
    assert row["is_mean"] == pytest.approx(mean, rel=1e-5) and row["is_std"] == pytest.approx(std, rel=1e-4, abs=1e-9)
    ref_logits = extract_features(make_test_images(6, seed=1), encoder, with_logits=True)[1]
    ref_probs = torch.softmax(torch.from_numpy(ref_logits).double(), dim=1).numpy()
    assert row["is_mean"] != pytest.approx(inception_score(ref_probs, splits=2, seed=2020)[0], rel=1e-6)  # not REF's
