"""Each encoder's preprocessing (filter, antialias, size, crop, normalisation, dtype, --clean-resize) against a
pipeline hand-built from the reference table (reference/dgm-eval.md section 1), with PIL and numpy only."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from dgm_eval.encoders import clip, convnext, data2vec, dinov2, mae, swav
from dgm_eval.encoders.preprocessing import CLIP_MEAN, CLIP_STD, IMAGENET_MEAN, IMAGENET_STD, ImagePreprocessing

BICUBIC, BILINEAR = Image.Resampling.BICUBIC, Image.Resampling.BILINEAR
HALF = (0.5, 0.5, 0.5)

# name: (factory, resize rule, PIL filter, crop, mean, std)
SPECS = {
    "dinov2": (dinov2.dinov2_preprocessing, ("exact", 224), BICUBIC, None, IMAGENET_MEAN, IMAGENET_STD),
    "clip": (clip.clip_preprocessing, ("exact", 224), BICUBIC, None, CLIP_MEAN, CLIP_STD),
    "convnext": (convnext.convnext_preprocessing, ("shorter", 256), BICUBIC, 224, IMAGENET_MEAN, IMAGENET_STD),
    "mae": (mae.mae_preprocessing, ("exact", 224), BICUBIC, None, IMAGENET_MEAN, IMAGENET_STD),
    "data2vec": (data2vec.data2vec_preprocessing, ("exact", 224), BICUBIC, None, HALF, HALF),
    "swav": (swav.swav_preprocessing, ("shorter", 224), BILINEAR, 224, IMAGENET_MEAN, IMAGENET_STD),
}


def _reference(image: Image.Image, rule, resample, crop, mean, std, clean: bool) -> np.ndarray:
    kind, side = rule
    w, h = image.size
    if kind == "exact":
        size = (side, side)
    elif h <= w:
        size = (int(side * w / h), side)  # PIL (W, H)
    else:
        size = (side, int(side * h / w))
    if clean:  # clean-fid: per channel float32, PIL mode F, clip to [0, 255]
        arr = np.asarray(image, dtype=np.float32)
        chans = [np.asarray(Image.fromarray(arr[..., c], mode="F").resize(size, resample)) for c in range(3)]
        x = np.clip(np.stack(chans, 2), 0, 255).astype(np.float64) / 255.0
    else:
        x = np.asarray(image.resize(size, resample), dtype=np.float64) / 255.0
    if crop is not None:
        top, left = int(round((x.shape[0] - crop) / 2)), int(round((x.shape[1] - crop) / 2))
        x = x[top : top + crop, left : left + crop]
    return ((x - np.array(mean)) / np.array(std)).transpose(2, 0, 1)


@pytest.mark.parametrize("clean", [False, True], ids=["pil", "clean"])
@pytest.mark.parametrize("name", sorted(SPECS))
def test_preprocessing_matches_the_reference_table(name, clean, make_test_images):
    factory, rule, resample, crop, mean, std = SPECS[name]
    preprocessing = factory(clean)
    for image in make_test_images(3, seed=4, sizes=((40, 52), (300, 260), (224, 224))):
        x = preprocessing(image)
        assert x.dtype.is_floating_point and str(x.dtype) == "torch.float32"
        assert tuple(x.shape) == (3, 224, 224)
        expected = _reference(image, rule, resample, crop, mean, std, clean)
        np.testing.assert_allclose(x.numpy(), expected, rtol=0, atol=2e-5)
    assert ("clean-fid" in preprocessing.describe()) == clean


def test_clean_and_pil_paths_differ_and_gray_or_rgba_inputs_become_rgb(make_test_images):
    image = make_test_images(1, seed=9, sizes=((40, 52),))[0]
    a, b = dinov2.dinov2_preprocessing(False)(image), dinov2.dinov2_preprocessing(True)(image)
    assert (a - b).abs().max() > 1e-3  # uint8 rounding after PIL's resize vs none
    gray = image.convert("L")
    assert dinov2.dinov2_preprocessing()(gray).shape == (3, 224, 224)
    np.testing.assert_allclose(dinov2.dinov2_preprocessing()(image.convert("RGBA")).numpy(), a.numpy(), rtol=0, atol=0)


def test_tensor_mode_antialias_flag_changes_downsampling(make_test_images):
    image = make_test_images(1, seed=1, sizes=((300, 260),))[0]
    plain = ImagePreprocessing(size=(64, 64), mode="tensor", filter="bilinear", antialias=False)(image)
    smooth = ImagePreprocessing(size=(64, 64), mode="tensor", filter="bilinear", antialias=True)(image)
    assert (plain - smooth).abs().max() > 1e-2
    assert "antialias=False" in ImagePreprocessing(size=(8, 8), mode="tensor", filter="bilinear").describe()


def test_invalid_preprocessing_is_refused():
    with pytest.raises(ValueError, match="mode must be"):
        ImagePreprocessing(mode="cv2")
    with pytest.raises(ValueError, match="filter must be one of"):
        ImagePreprocessing(filter="area")
    with pytest.raises(ValueError, match="either size or shorter_side"):
        ImagePreprocessing(size=(8, 8), shorter_side=8)
    with pytest.raises(ValueError, match="mean and std"):
        ImagePreprocessing(mean=HALF)
