"""Latent cache: layout and index maps, resumable streaming, unreadable items, stale keys, encoder unloading,
manifest validation."""

from __future__ import annotations

import gc
import json
import shutil
import subprocess
import sys
import weakref
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from fusemix import cache as cache_module
from fusemix.cache import build_cache, latent_cache_path, read_cache_metadata
from fusemix.data.items import load_item
from fusemix.data.manifest import read_manifest
from fusemix.data.shapes import make_shapes_dataset
from fusemix.encoders import EncoderSpec, load_encoder, resolve_encoder
from fusemix.encoders.frozen import FrozenEncoder
from fusemix.latents import load_paired_latents
from sixlab_shared import UserError

CONV = resolve_encoder("frozen-conv", "image")
BOW = resolve_encoder("frozen-bow", "text")


def test_layout_index_maps_and_values(shapes_manifest, shapes_cache) -> None:
    split = read_manifest(shapes_manifest).split("val")
    items = load_file(latent_cache_path(shapes_cache, CONV, "shapes", "val", "items"))
    texts = load_file(latent_cache_path(shapes_cache, BOW, "shapes", "val", "texts"))
    assert texts["txt2item"].tolist() == split.txt2item
    assert texts["latents"].shape == (len(split.captions), 256)
    ptr, index = texts["item2txt_ptr"], texts["item2txt_index"]
    for item in range(len(split.item_ids)):
        own = sorted(index[ptr[item] : ptr[item + 1]].tolist())
        assert own == [j for j, i in enumerate(split.txt2item) if i == item]  # LAVIS img2txt
    # the cached values are the encoder's outputs on the files (computed here independently of the cache code)
    direct = load_encoder(CONV).encode([load_item(p, "image") for p in split.item_paths])
    torch.testing.assert_close(items["latents"], direct)
    torch.testing.assert_close(texts["latents"], load_encoder(BOW).encode(split.captions))
    meta = read_cache_metadata(latent_cache_path(shapes_cache, CONV, "shapes", "val", "items"))
    assert meta["encoder_fingerprint"] == CONV.fingerprint() and meta["split"] == "val" and meta["format"] == 2
    paired = load_paired_latents(shapes_cache, CONV, BOW, "shapes", "val")
    assert paired.n_pairs == len(split.captions) == 5 * len(split.item_ids)


def test_interrupted_extraction_resumes_from_finished_shards(
    shapes_manifest, shapes_cache, tmp_path, monkeypatch
) -> None:
    calls = {"n": 0}
    original = FrozenEncoder.encode

    def flaky(self, inputs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt  # killed mid-extraction
        return original(self, inputs)

    monkeypatch.setattr(FrozenEncoder, "encode", flaky)
    manifest = read_manifest(shapes_manifest)
    with pytest.raises(KeyboardInterrupt):
        build_cache(manifest, "shapes", CONV, BOW, tmp_path, splits=["train"], shard_size=8)
    final = latent_cache_path(tmp_path, CONV, "shapes", "train", "items")
    assert not final.exists()
    assert len(list(final.with_name(final.name + ".partial").glob("shard-*.safetensors"))) == 2
    calls["n"] = 100  # no more failures; count the remaining work
    build_cache(manifest, "shapes", CONV, BOW, tmp_path, splits=["train"], shard_size=8)
    unique_captions = len(set(manifest.split("train").captions))
    assert calls["n"] - 100 == 3 + -(-unique_captions // 8)  # 3 image shards left (of 5) + every caption shard
    assert not final.with_name(final.name + ".partial").exists()
    resumed = load_paired_latents(tmp_path, CONV, BOW, "shapes", "train")
    clean = load_paired_latents(shapes_cache, CONV, BOW, "shapes", "train")
    torch.testing.assert_close(resumed.items, clean.items)
    torch.testing.assert_close(resumed.texts, clean.texts)
    # a second run reuses the finished files without loading an encoder
    monkeypatch.setattr(cache_module, "load_encoder", lambda *a, **k: pytest.fail("encoder loaded for a cached split"))
    reports = build_cache(manifest, "shapes", CONV, BOW, tmp_path, splits=["train"])
    assert reports["train"]["items"].reused and reports["train"]["texts"].reused


def test_unreadable_items_are_skipped_or_fail_under_strict(tmp_path) -> None:
    manifest_path = make_shapes_dataset(tmp_path / "data", {"train": 6}, seed=1)
    bad = tmp_path / "data" / "images" / "train" / "train-00002.png"
    bad.write_bytes(b"not a png")
    manifest = read_manifest(manifest_path)
    with pytest.raises(UserError, match="item 'train-00002' is unreadable"):
        build_cache(manifest, "d", CONV, BOW, tmp_path / "cache", strict=True, shard_size=2)
    partial = latent_cache_path(tmp_path / "cache", CONV, "d", "train", "items")
    assert len(list(partial.with_name(partial.name + ".partial").glob("shard-*"))) == 1  # work so far kept
    reports = build_cache(manifest, "d", CONV, BOW, tmp_path / "cache", shard_size=2)
    assert reports["train"]["items"].n_skipped == 1 and reports["train"]["items"].skipped == ["train-00002"]
    paired = load_paired_latents(tmp_path / "cache", CONV, BOW, "d", "train")
    assert paired.items.shape[0] == 5 and paired.n_pairs == 25 and "train-00002" not in paired.item_ids
    assert int(paired.txt2item.max()) == 4


def test_other_encoder_or_content_is_never_reused(shapes_manifest, shapes_cache, tmp_path) -> None:
    other = EncoderSpec("frozen-conv", "image", "frozen", "conv", image_size=64, dim=256, seed=7)
    with pytest.raises(UserError, match=r"no items latents for encoder 'frozen-conv'.*cached there for other encoders"):
        load_paired_latents(shapes_cache, other, BOW, "shapes", "val")
    # a file renamed into another encoder's place is caught by its metadata
    target = latent_cache_path(tmp_path, other, "shapes", "val", "items")
    target.parent.mkdir(parents=True)
    shutil.copy(latent_cache_path(shapes_cache, CONV, "shapes", "val", "items"), target)
    shutil.copytree(latent_cache_path(shapes_cache, BOW, "shapes", "val", "texts").parent.parent,
                    tmp_path / BOW.slug())  # fmt: skip
    with pytest.raises(UserError, match="was written by encoder"):
        load_paired_latents(tmp_path, other, BOW, "shapes", "val")
    # same dataset name, different content: refused unless overwrite
    changed = tmp_path / "changed.csv"
    text = Path(shapes_manifest).read_text().replace("A small", "One small", 1)
    changed.write_text(text)
    for img in (Path(shapes_manifest).parent / "images").iterdir():
        shutil.copytree(img, tmp_path / "images" / img.name, dirs_exist_ok=True)
    work = tmp_path / "work"
    shutil.copytree(shapes_cache, work)
    before = latent_cache_path(work, BOW, "shapes", "train", "texts").read_bytes()
    with pytest.raises(UserError, match="built from other content"):
        build_cache(read_manifest(changed), "shapes", CONV, BOW, work, splits=["train"])
    assert latent_cache_path(work, BOW, "shapes", "train", "texts").read_bytes() == before
    build_cache(read_manifest(changed), "shapes", CONV, BOW, work, splits=["train"], overwrite=True)
    assert latent_cache_path(work, BOW, "shapes", "train", "texts").read_bytes() != before


def test_encoders_are_unloaded_after_extraction(shapes_manifest, tmp_path, monkeypatch) -> None:
    refs = []

    def tracked(spec, device="cpu"):
        encoder = load_encoder(spec, device)
        refs.append(weakref.ref(encoder))
        return encoder

    monkeypatch.setattr(cache_module, "load_encoder", tracked)
    build_cache(read_manifest(shapes_manifest), "shapes", CONV, BOW, tmp_path, splits=["val"])
    gc.collect()
    assert len(refs) == 2 and all(ref() is None for ref in refs)


def test_manifest_validation(tmp_path) -> None:
    (tmp_path / "a.png").write_bytes(b"x")
    cases = {
        "nocol.csv": ("item_id,caption\n1,hi\n", "lacks column"),
        "empty.csv": ("item_id,item_path,caption,split\n1,a.png,  ,train\n", "line 2: empty caption for item '1'"),
        "missing.csv": ("item_id,item_path,caption,split\n1,b.png,hi,train\n", "file of item '1' does not exist"),
        "twopaths.csv": ("item_id,item_path,caption\n1,a.png,hi\n1,a2.png,yo\n", "item '1' has two paths"),
        "bad.jsonl": ('{"item_path": "a.png", "caption": "hi"}\n[1]\n', "line 2: expected a JSON object"),
        "none.csv": ("item_id,item_path,caption,split\n", "has no rows"),
    }
    for name, (content, message) in cases.items():
        (tmp_path / name).write_text(content)
        with pytest.raises(UserError, match=message):
            read_manifest(tmp_path / name)
    (tmp_path / "ok.jsonl").write_text(
        '{"item_id": "x", "item_path": "a.png", "caption": "one", "split": "test"}\n'
        '{"item_id": "x", "item_path": "a.png", "caption": "two", "split": "test"}\n'
    )
    manifest = read_manifest(tmp_path / "ok.jsonl")
    assert manifest.split("test").captions == ["one", "two"] and manifest.split("test").txt2item == [0, 0]
    with pytest.raises(UserError, match="has no split 'train'; it has test"):
        manifest.split("train")
    with pytest.raises(UserError, match="does not exist"):
        read_manifest(tmp_path / "nothing.csv")


@pytest.mark.slow
def test_two_process_extraction_matches_one(shapes_manifest, shapes_cache, tmp_path) -> None:
    script = tmp_path / "extract.py"
    script.write_text(
        "import sys\n"
        "from fusemix.cache import build_cache\n"
        "from fusemix.data.manifest import read_manifest\n"
        "from fusemix.encoders import resolve_encoder\n"
        "build_cache(read_manifest(sys.argv[1]), 'shapes', resolve_encoder('frozen-conv', 'image'),\n"
        "            resolve_encoder('frozen-bow', 'text'), sys.argv[2], splits=['train'], shard_size=8)\n"
    )
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29517",
               str(script), str(shapes_manifest), str(tmp_path / "cache")]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, env={
        **__import__("os").environ, "OMP_NUM_THREADS": "1"})  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    two = load_paired_latents(tmp_path / "cache", CONV, BOW, "shapes", "train")
    one = load_paired_latents(shapes_cache, CONV, BOW, "shapes", "train")
    torch.testing.assert_close(two.items, one.items)
    torch.testing.assert_close(two.texts, one.texts)
    assert json.loads(json.dumps(two.item_ids)) == one.item_ids
