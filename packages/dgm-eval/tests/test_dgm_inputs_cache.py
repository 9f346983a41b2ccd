"""Inputs (folders, ADM npz, arrays, nsample) and the feature cache (every part of the key recomputes)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from dgm_eval.api import compute_metrics
from dgm_eval.cache import FeatureCache
from dgm_eval.encoders import load_encoder
from dgm_eval.extraction import extract_features
from dgm_eval.features import image_features
from dgm_eval.inputs import ImageSource, InputError, open_input


def _img(rng, size=12):
    return rng.integers(0, 256, size=(size, size, 3), dtype=np.uint8)


def test_folder_extensions_any_case_and_sorted(tmp_path, rng):
    for name, fmt in (("b.PNG", "PNG"), ("a.jpg", "JPEG"), ("c.JpEg", "JPEG"), ("d.webp", "WEBP"), ("e.BMP", "BMP")):
        Image.fromarray(_img(rng)).save(tmp_path / name, format=fmt)
    (tmp_path / "notes.txt").write_text("x")
    source = ImageSource.from_folder(tmp_path)
    assert [p.name for p in source.files] == ["a.jpg", "b.PNG", "c.JpEg", "d.webp", "e.BMP"]
    assert source.labels is None and source[0].mode == "RGB"


def test_class_subfolders_numeric_order_and_recursive(tmp_path, rng):
    for cls, count in (("10", 2), ("2", 1), ("cat", 2)):
        (tmp_path / cls).mkdir()
        for i in range(count):
            Image.fromarray(_img(rng)).save(tmp_path / cls / f"{i}.png")
    source = ImageSource.from_folder(tmp_path)
    assert source.labels.tolist() == ["2", "10", "10", "cat", "cat"]
    (tmp_path / "cat" / "deep").mkdir()
    Image.fromarray(_img(rng)).save(tmp_path / "cat" / "deep" / "x.png")
    assert len(ImageSource.from_folder(tmp_path)) == 5
    assert len(ImageSource.from_folder(tmp_path, recursive=True)) == 6


def test_adm_npz_is_memory_mapped_and_equals_the_folder(tmp_path, rng):
    images = rng.integers(0, 256, size=(9, 10, 10, 3), dtype=np.uint8)
    np.savez(tmp_path / "samples.npz", images, np.arange(9) % 3)
    source = open_input(tmp_path / "samples.npz")
    assert isinstance(source, ImageSource) and source.array is None  # not loaded into memory
    assert isinstance(source._images(), np.memmap)
    assert source.labels.tolist() == [0, 1, 2] * 3
    for i in (0, 4, 8):
        np.testing.assert_array_equal(np.asarray(source[i]), images[i])
    np.savez_compressed(tmp_path / "compressed.npz", arr_0=images)
    np.testing.assert_array_equal(np.asarray(open_input(tmp_path / "compressed.npz")[3]), images[3])
    np.savez(tmp_path / "bad.npz", arr_0=images.astype(np.float32))
    with pytest.raises(InputError, match="must be uint8 images"):
        open_input(tmp_path / "bad.npz")


def test_array_inputs_uint8_and_float(rng):
    batch = rng.integers(0, 256, size=(4, 8, 8, 3), dtype=np.uint8)
    nchw_float = batch.transpose(0, 3, 1, 2) / 255.0
    a, b = ImageSource.from_array(batch), ImageSource.from_array(nchw_float)
    np.testing.assert_array_equal(np.asarray(a[2]), np.asarray(b[2]))
    with pytest.raises(InputError, match=r"finite values in \[0, 1\]"):
        ImageSource.from_array(nchw_float * 3)


def test_nsample_is_seeded_without_replacement(rng):
    source = ImageSource.from_array(rng.integers(0, 256, size=(50, 4, 4, 3), dtype=np.uint8))
    a = ImageSource.from_array(source.array).cap(20, seed=5).indices
    b = ImageSource.from_array(source.array).cap(20, seed=5).indices
    c = ImageSource.from_array(source.array).cap(20, seed=6).indices
    assert a.tolist() == b.tolist() and a.tolist() != c.tolist()
    assert len(set(a.tolist())) == 20 and a.tolist() == sorted(a.tolist())


def test_cache_hits_and_every_key_part_recomputes(tmp_path, image_sets):
    cache = FeatureCache(tmp_path / "cache")
    enc = load_encoder("random", device="cpu", seed=0)
    folder = image_sets["dir"] / "ref"

    def run(source=None, encoder=enc, selection=None):
        source = source or ImageSource.from_folder(folder)
        return image_features(source, encoder, cache=cache, selection=selection or {"nsample": None, "seed": 0})

    first = run()
    assert not first.cached and run().cached
    np.testing.assert_array_equal(run().features, first.features)
    assert not run(selection={"nsample": 30, "seed": 0}).cached  # sample selection
    assert not run(encoder=load_encoder("random", device="cpu", seed=1)).cached  # weights
    assert not run(encoder=load_encoder("pixel", device="cpu")).cached  # encoder
    assert not run(encoder=load_encoder("pixel", device="cpu", clean_resize=True)).cached  # preprocessing
    assert not run(source=ImageSource.from_folder(folder).cap(25, seed=0)).cached  # selected images
    # Content, not name: rewrite one file with different pixels under the same name.
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(folder / "img000003.png")
    changed = run()
    assert not changed.cached and not np.array_equal(changed.features, first.features)
    assert not FeatureCache(tmp_path / "off", enabled=False).load("anything")


def test_results_independent_of_batch_size_and_file_order(tmp_path, image_sets):
    enc = load_encoder("random", device="cpu", seed=0)
    ref = ImageSource.from_folder(image_sets["dir"] / "ref")
    gen = ImageSource.from_folder(image_sets["dir"] / "gen")
    f_ref = extract_features(ref, enc, batch_size=40)
    results = [
        compute_metrics(f_ref, extract_features(gen, enc, batch_size=bs), ["fd", "prdc", "sw_approx"], nearest_k=3)
        for bs in (1, 7, 64)
    ]
    for other in results[1:]:
        for key, value in results[0].items():
            assert other[key] == pytest.approx(value, rel=1e-6, abs=1e-9)
    # The same images under names that sort in reverse order: same metrics.
    rev = tmp_path / "reversed"
    rev.mkdir()
    files = sorted((image_sets["dir"] / "gen").iterdir())
    for i, path in enumerate(files):
        (rev / f"z{len(files) - i:03d}.png").write_bytes(path.read_bytes())
    shuffled = compute_metrics(
        f_ref, extract_features(ImageSource.from_folder(rev), enc), ["fd", "prdc", "sw_approx"], nearest_k=3
    )
    for key, value in results[0].items():
        assert shuffled[key] == pytest.approx(value, rel=1e-6, abs=1e-9)
