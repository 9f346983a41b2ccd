"""Encoders built on transformers and torchvision, through the real loading path with tiny local weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from dgm_eval.encoders import load_encoder
from dgm_eval.encoders.preprocessing import CLIP_MEAN, CLIP_STD, IMAGENET_MEAN, IMAGENET_STD
from dgm_eval.extraction import extract_features
from sixlab_shared import UserError


def _pil_reference(image: Image.Image, size, mean, std, resample=Image.Resampling.BICUBIC) -> np.ndarray:
    """Hand-built reference: PIL resize to (W, H) = size, /255, (x - mean) / std, CHW."""
    arr = np.asarray(image.resize(size, resample), dtype=np.float64) / 255.0
    return ((arr - np.array(mean)) / np.array(std)).transpose(2, 0, 1)


def test_dinov2_resizes_with_pil_bicubic_to_exactly_224(images, tiny_hf_models):
    encoder = load_encoder("dinov2", weights=str(tiny_hf_models["dinov2"]), device="cpu")
    image = images[0]  # 52 x 40, not square: the aspect ratio is not kept
    x = encoder.transform(image)
    assert x.shape == (3, 224, 224) and x.dtype == torch.float32
    expected = _pil_reference(image, (224, 224), IMAGENET_MEAN, IMAGENET_STD)
    np.testing.assert_allclose(x.numpy(), expected, rtol=0, atol=1e-5)
    # torch's antialiased bicubic is close but not the same filter
    raw = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0).permute(2, 0, 1)[None]
    torch_resized = torch.nn.functional.interpolate(raw, size=(224, 224), mode="bicubic", antialias=True)[0]
    torch_resized = (torch_resized - torch.tensor(IMAGENET_MEAN).view(3, 1, 1)) / torch.tensor(IMAGENET_STD).view(
        3, 1, 1
    )
    assert (torch_resized - x).abs().max() > 1e-3


def test_dinov2_features_are_the_final_norm_cls_token(images, tiny_hf_models):
    from transformers import Dinov2Model

    encoder = load_encoder("dinov2", "vitb14", weights=str(tiny_hf_models["dinov2"]), device="cpu")
    assert encoder.arch == "vitb14" and encoder.dim == 32
    features = extract_features(images[:3], encoder, batch_size=2)
    from dgm_eval.encoders.dinov2 import use_hub_interpolation  # its equality with the hub: test_encoders_dinov2_hub

    model = use_hub_interpolation(Dinov2Model.from_pretrained(tiny_hf_models["dinov2"]).eval())
    x = torch.stack(
        [torch.from_numpy(_pil_reference(im, (224, 224), IMAGENET_MEAN, IMAGENET_STD)) for im in images[:3]]
    )
    with torch.no_grad():
        hidden = model(pixel_values=x.float(), output_hidden_states=True).hidden_states[-1]  # before the final norm
        expected = model.layernorm(hidden)[:, 0]
    np.testing.assert_allclose(features, expected.numpy(), rtol=0, atol=1e-4)


def test_clip_depths(images, tiny_hf_models):
    from transformers import CLIPModel

    path = str(tiny_hf_models["clip"])
    model = CLIPModel.from_pretrained(path).eval()
    x = torch.stack([torch.from_numpy(_pil_reference(im, (224, 224), CLIP_MEAN, CLIP_STD)) for im in images[:2]])
    with torch.no_grad():
        out = model.vision_model(pixel_values=x.float(), output_hidden_states=True)
        cls_last = model.vision_model.post_layernorm(out.hidden_states[-1][:, 0])
        cls_minus_one = model.vision_model.post_layernorm(out.hidden_states[-2][:, 0])
        projected = model.visual_projection(cls_last)
    for depth, expected in ((0, cls_last), (1, projected), (-1, cls_minus_one)):
        encoder = load_encoder("clip", weights=path, depth=depth, device="cpu")
        assert encoder.dim == expected.shape[1] and encoder.depth == depth
        features = extract_features(images[:2], encoder, batch_size=2)
        np.testing.assert_allclose(features, expected.numpy(), rtol=0, atol=1e-4)
    assert (
        load_encoder("clip", weights=path, depth=-1).preprocess_id()
        != load_encoder("clip", weights=path).preprocess_id()
    )
    for bad in (2, -3):
        with pytest.raises(UserError, match=f"--depth {bad} is not valid for clip"):
            load_encoder("clip", weights=path, depth=bad)


def test_convnext_preprocessing_matches_torchvision_and_features_are_pooled(images, tiny_hf_models):
    from torchvision import transforms
    from transformers import ConvNextModel

    encoder = load_encoder("convnext", weights=str(tiny_hf_models["convnext"]), device="cpu")
    reference = transforms.Compose(
        [
            transforms.Resize(256, interpolation=transforms.InterpolationMode.BICUBIC),
            transforms.CenterCrop(224),
            transforms.ToTensor(),
            transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ]
    )
    for image in images[:3]:
        torch.testing.assert_close(encoder.transform(image), reference(image), rtol=0, atol=1e-6)
    model = ConvNextModel.from_pretrained(tiny_hf_models["convnext"]).eval()
    x = torch.stack([reference(im) for im in images[:3]])
    with torch.no_grad():
        last = model(pixel_values=x).last_hidden_state  # N x C x 7 x 7
        expected = model.layernorm(last.mean(dim=(2, 3)))
    assert encoder.dim == 40
    np.testing.assert_allclose(extract_features(images[:3], encoder), expected.numpy(), rtol=0, atol=1e-4)


def test_mae_is_unmasked_and_order_free(images, tiny_hf_models):
    from transformers import ViTMAEModel

    encoder = load_encoder("mae", weights=str(tiny_hf_models["mae"]), device="cpu")
    features = extract_features(images[:2], encoder)
    model = ViTMAEModel.from_pretrained(tiny_hf_models["mae"], mask_ratio=0.0).eval()
    x = torch.stack(
        [torch.from_numpy(_pil_reference(im, (224, 224), IMAGENET_MEAN, IMAGENET_STD)) for im in images[:2]]
    )
    noise = torch.rand((2, 196), generator=torch.Generator().manual_seed(0))  # a shuffled patch order
    with torch.no_grad():
        out = model(pixel_values=x.float(), noise=noise)
    assert out.last_hidden_state.shape[1] == 1 + 196  # nothing masked
    np.testing.assert_allclose(features, out.last_hidden_state[:, 0].numpy(), rtol=0, atol=1e-4)


def test_data2vec_matches_its_hugging_face_processor(images, tiny_hf_models):
    from transformers import BeitImageProcessorPil, Data2VecVisionModel

    encoder = load_encoder("data2vec", weights=str(tiny_hf_models["data2vec"]), device="cpu")
    processor = BeitImageProcessorPil(
        do_resize=True,
        size={"height": 224, "width": 224},
        resample=Image.Resampling.BICUBIC,
        do_center_crop=False,
        do_rescale=True,
        rescale_factor=1 / 255,
        do_normalize=True,
        image_mean=[0.5, 0.5, 0.5],
        image_std=[0.5, 0.5, 0.5],
    )
    x = processor(images=images[:3], return_tensors="pt")["pixel_values"]
    ours = torch.stack([encoder.transform(im) for im in images[:3]])
    torch.testing.assert_close(ours, x.float(), rtol=0, atol=1e-5)
    model = Data2VecVisionModel.from_pretrained(tiny_hf_models["data2vec"], add_pooling_layer=True).eval()
    with torch.no_grad():
        tokens = model(pixel_values=x.float()).last_hidden_state  # N x (1 + 196) x D
        expected = model.pooler.layernorm(tokens[:, 1:].mean(1))  # LayerNorm of the mean patch token
    np.testing.assert_allclose(extract_features(images[:3], encoder), expected.numpy(), rtol=0, atol=1e-4)


def test_swav_loads_the_hub_checkpoint_layout(images, tiny_swav_file, tmp_path):
    from torchvision import transforms
    from torchvision.models import resnet50

    encoder = load_encoder("swav", weights=str(tiny_swav_file), device="cpu")
    reference = transforms.Compose(
        [
            transforms.Resize(224, interpolation=transforms.InterpolationMode.BILINEAR),
            transforms.CenterCrop(224),
            transforms.ToTensor(),
            transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ]
    )
    x = torch.stack([reference(im) for im in images[:2]])
    torch.testing.assert_close(torch.stack([encoder.transform(im) for im in images[:2]]), x, rtol=0, atol=1e-6)
    net = resnet50(weights=None)
    net.fc = torch.nn.Identity()
    state = torch.load(tiny_swav_file, weights_only=True)
    net.load_state_dict(
        {k[len("module.") :]: v for k, v in state.items() if ".fc." not in k and "head" not in k and "proto" not in k}
    )
    with torch.no_grad():
        expected = net.eval()(x)
    # channels-last batches (faster conv kernels) change float32 rounding only
    np.testing.assert_allclose(extract_features(images[:2], encoder), expected.numpy(), rtol=1e-5, atol=1e-4)
    truncated = tmp_path / "truncated.pth"
    torch.save({k: v for k, v in state.items() if "layer4" not in k}, truncated)
    with pytest.raises(UserError, match=r"do not fit encoder 'swav'.*layer4"):
        load_encoder("swav", weights=str(truncated))


@pytest.mark.parametrize(
    ("name", "arch", "hf_id"),
    [
        ("dinov2", None, "facebook/dinov2-large"),
        ("dinov2", "vits14", "facebook/dinov2-small"),
        ("clip", None, "laion/CLIP-ViT-L-14-DataComp.XL-s13B-b90K"),
        ("data2vec", None, "facebook/data2vec-vision-large"),
    ],
)
def test_offline_without_cache_is_one_clear_line(name, arch, hf_id, tmp_path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty-hub"))
    with pytest.raises(UserError) as err:
        load_encoder(name, arch, device="cpu")
    message = str(err.value)
    assert "\n" not in message
    assert f"encoder {name!r}" in message and hf_id in message
    assert "--weights" in message and f"hf download {hf_id}" in message


def test_bad_local_paths(tmp_path, tiny_hf_models):
    with pytest.raises(UserError, match="does not exist"):
        load_encoder("dinov2", weights=str(tmp_path / "no-such-dir"))
    a_file = tmp_path / "model.bin"
    a_file.write_bytes(b"x")
    with pytest.raises(UserError, match="must be a Hugging Face model directory"):
        load_encoder("mae", weights=str(a_file))
    with pytest.raises(UserError, match="unknown arch 'vitz14' for encoder 'dinov2'; choose one of: vits14"):
        load_encoder("dinov2", "vitz14", weights=str(tiny_hf_models["dinov2"]))
    with pytest.raises(UserError, match="encoder 'simclr' is not supported: SimCLRv2"):
        load_encoder("simclr")


def test_checkpoints_that_leave_parameters_uninitialised_are_refused(tiny_hf_models, tmp_path):
    import json
    import shutil

    broken = tmp_path / "dinov2-3-layers"
    shutil.copytree(tiny_hf_models["dinov2"], broken)
    config = json.loads((broken / "config.json").read_text())
    config["num_hidden_layers"] = 3  # the weights hold 2 layers: layer 2 would be random
    (broken / "config.json").write_text(json.dumps(config))
    with pytest.raises(
        UserError, match=r"do not fit encoder 'dinov2' \(vitl14\): missing \d+ parameter\(s\) \(encoder\.layer\.2"
    ):
        load_encoder("dinov2", weights=str(broken))


def test_data2vec_without_pooler_weights_uses_the_identity_layernorm(tiny_hf_models, tmp_path, images):
    from transformers import Data2VecVisionModel

    model = Data2VecVisionModel.from_pretrained(tiny_hf_models["data2vec"], add_pooling_layer=False)
    model.save_pretrained(tmp_path / "no-pooler")
    encoder = load_encoder("data2vec", weights=str(tmp_path / "no-pooler"))
    x = torch.stack([encoder.transform(im) for im in images[:2]])
    with torch.no_grad():
        tokens = model.eval()(pixel_values=x).last_hidden_state[:, 1:].mean(1)
        expected = torch.nn.functional.layer_norm(tokens, tokens.shape[-1:], eps=model.config.layer_norm_eps)
    np.testing.assert_allclose(encoder(x).numpy(), expected.numpy(), rtol=0, atol=1e-4)


@pytest.mark.parametrize("name", ["clip", "convnext", "mae", "data2vec"])
def test_fd_heatmaps_run_on_every_transformers_encoder(name, images, tiny_hf_models):
    from dgm_eval.heatmaps import fd_heatmaps
    from dgm_eval.metrics import feature_statistics

    encoder = load_encoder(name, weights=str(tiny_hf_models[name]), device="cpu")
    feats = extract_features(images, encoder, batch_size=7).astype(np.float64)
    ref = feature_statistics(np.random.default_rng(0).normal(size=(3 * encoder.dim, encoder.dim)))
    maps = fd_heatmaps(encoder, images[:2], [0, 1], ref, feats, size=16)
    assert [m.shape for m in maps] == [(16, 16)] * 2 and any(m.max() > 0 for m in maps)


@pytest.mark.slow  # a full ResNet-50 forward/backward and a 2048x2048 eigvalsh with its gradient: ~20 s on CPU
def test_fd_heatmaps_on_swav(images, tiny_swav_file):
    from dgm_eval.heatmaps import fd_heatmaps
    from dgm_eval.metrics import feature_statistics

    encoder = load_encoder("swav", weights=str(tiny_swav_file), device="cpu")
    feats = extract_features(images[:4], encoder, batch_size=4).astype(np.float64)
    ref = feature_statistics(np.random.default_rng(0).normal(size=(64, encoder.dim)))
    maps = fd_heatmaps(encoder, images[:1], [0], ref, feats, size=16)
    assert maps[0].shape == (16, 16) and maps[0].max() > 0
