"""Manifests and caches real datasets can trust: CSV/JSONL parsing, encodings, cache keys (weights, item ids and
resolved paths, not captions or the working directory), retrieval checks, offline hub ids."""

from __future__ import annotations

import csv
import io
import json
import shutil
import time
from pathlib import Path

import pytest
import torch
from PIL import Image

from fusemix.adapters import AdapterConfig, FusionModel
from fusemix.cache import build_cache
from fusemix.checkpoint import save_fusion_checkpoint
from fusemix.data.manifest import read_manifest
from fusemix.encoders import EncoderSpec, load_encoder, resolve_encoder
from fusemix.encoders import huggingface as hf_module
from fusemix.encoders.weights import folder_fingerprint, weights_fingerprint
from fusemix.latents import load_paired_latents
from fusemix.query import retrieve
from sixlab_shared import UserError

CONV = resolve_encoder("frozen-conv", "image")
BOW = resolve_encoder("frozen-bow", "text")
HEADER = "item_id,item_path,caption,split\n"


@pytest.fixture()
def images(tmp_path: Path) -> Path:
    for name in ("a", "b", "c"):
        Image.new("RGB", (16, 16), (10 * len(name), 20, 30)).save(tmp_path / f"{name}.png")
    return tmp_path


def test_csv_quoted_multiline_caption_is_one_record(images) -> None:
    text = HEADER + 'a,a.png,"A dog\nrunning on grass",train\nb,b.png,"He said ""hi"", twice",train\n'
    (images / "m.csv").write_bytes(text.encode())
    split = read_manifest(images / "m.csv").split("train")
    expected = [row["caption"] for row in csv.DictReader(io.StringIO(text, newline=""))]
    assert split.captions == expected == ["A dog\nrunning on grass", 'He said "hi", twice']
    # CRLF files are read the same way
    (images / "crlf.csv").write_bytes(text.replace("\n", "\r\n").replace("dog\r\n", "dog\n").encode())
    assert read_manifest(images / "crlf.csv").split("train").captions == expected


def test_jsonl_keeps_unicode_line_separators_inside_strings(images) -> None:
    captions = ["a dog\u2028on grass", "next\u0085line \u2029 paragraph"]
    lines = [json.dumps({"item_id": n, "item_path": f"{n}.png", "caption": c}, ensure_ascii=False)
             for n, c in zip("ab", captions, strict=True)]  # fmt: skip
    (images / "m.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    split = read_manifest(images / "m.jsonl").split("train")
    assert split.captions == captions and split.item_ids == ["a", "b"]


def test_utf8_bom_is_accepted_and_other_encodings_are_one_line(images) -> None:
    (images / "bom.csv").write_bytes(("\ufeff" + HEADER + "a,a.png,Café au lait,val\n").encode("utf-8"))
    split = read_manifest(images / "bom.csv").split("val")
    assert split.item_ids == ["a"] and split.captions == ["Café au lait"]  # the item_id column survives the BOM
    (images / "latin.csv").write_bytes((HEADER + "a,a.png,Café au lait,val\n").encode("latin-1"))
    with pytest.raises(UserError, match=r"is not UTF-8 \(byte 0xe9 at offset \d+\); re-save it as UTF-8") as err:
        read_manifest(images / "latin.csv")
    assert "\n" not in str(err.value)


def test_caption_empty_after_cleaning_names_the_item(images) -> None:
    (images / "m.csv").write_text(HEADER + "a,a.png,fine,train\nb,b.png,...!,train\n")
    with pytest.raises(UserError, match=r"line 3: caption '\.\.\.!' of item 'b' is empty after cleaning"):
        read_manifest(images / "m.csv")


def _rows(pairs: list[tuple[str, str]]) -> str:
    return HEADER + "".join(f"{i},{i}.png,{c},train\n" for i, c in pairs)


def test_item_cache_is_keyed_on_ids_and_resolved_paths_not_captions_or_cwd(images, monkeypatch) -> None:
    (images / "m.csv").write_text(_rows([("a", "a red thing"), ("b", "a blue thing"), ("c", "a blue thing")]))
    cache = images / "cache"
    first = build_cache(read_manifest(images / "m.csv"), "d", CONV, BOW, cache)["train"]
    assert not first["items"].reused
    # editing one caption rebuilds the text side only (with --overwrite) and reuses the items
    (images / "m.csv").write_text(_rows([("a", "a crimson thing"), ("b", "a blue thing"), ("c", "a blue thing")]))
    with pytest.raises(UserError, match="built from other content"):
        build_cache(read_manifest(images / "m.csv"), "d", CONV, BOW, cache)
    second = build_cache(read_manifest(images / "m.csv"), "d", CONV, BOW, cache, overwrite=True)["train"]
    assert second["items"].reused and not second["texts"].reused
    data = load_paired_latents(cache, CONV, BOW, "d", "train")
    assert data.captions[0] == "a crimson thing"
    torch.testing.assert_close(data.texts[0], load_encoder(BOW).encode(["a crimson thing"])[0])
    # the same manifest named relative to another working directory reuses both sides
    monkeypatch.chdir(images.parent)
    relative = Path(images.name) / "m.csv"
    third = build_cache(read_manifest(relative), "d", CONV, BOW, Path(images.name) / "cache")["train"]
    assert third["items"].reused and third["texts"].reused
    # a file rewritten in place (same id and path, new content) is not reused
    Image.new("RGB", (16, 16), (200, 0, 0)).save(images / "b.png")
    with pytest.raises(UserError, match="built from other content"):
        build_cache(read_manifest(images / "m.csv"), "d", CONV, BOW, cache)
    rebuilt = build_cache(read_manifest(images / "m.csv"), "d", CONV, BOW, cache, overwrite=True)["train"]
    assert not rebuilt["items"].reused and rebuilt["texts"].reused
    data = load_paired_latents(cache, CONV, BOW, "d", "train")
    torch.testing.assert_close(data.items[1], load_encoder(CONV).encode([Image.open(images / "b.png")])[0])
    # another file under the same item id is another item: the items are rebuilt
    (images / "m.csv").write_text(_rows([("a", "a crimson thing"), ("b", "a blue thing"), ("c", "a blue thing")])
                                  .replace("c,c.png", "c,a.png"))  # fmt: skip
    with pytest.raises(UserError, match="built from other content"):
        build_cache(read_manifest(images / "m.csv"), "d", CONV, BOW, cache)


def test_text_report_counts_captions(images) -> None:
    (images / "m.csv").write_text(_rows([("a", "same words"), ("b", "same words"), ("c", "other words")]))
    report = build_cache(read_manifest(images / "m.csv"), "d", CONV, BOW, images / "cache")["train"]["texts"]
    assert (report.n_inputs, report.n_encoded, report.n_distinct) == (3, 3, 2)
    reused = build_cache(read_manifest(images / "m.csv"), "d", CONV, BOW, images / "cache")["train"]["texts"]
    assert reused.reused and (reused.n_inputs, reused.n_encoded, reused.n_distinct) == (3, 3, 2)


def test_weights_fingerprint_follows_the_files(tiny_bert_dir, images) -> None:
    folder = images / "bert"
    shutil.copytree(tiny_bert_dir, folder)
    spec = resolve_encoder(f"hf:{folder}@mean", "text")
    before = weights_fingerprint(spec)
    assert before.startswith("files:") and weights_fingerprint(spec) == before
    (images / "m.csv").write_text(_rows([("a", "a red thing"), ("b", "a blue thing")]))
    build_cache(read_manifest(images / "m.csv"), "d", CONV, spec, images / "cache")
    # swap the weights in place (same folder, same name): the cache must not be reused
    from transformers import BertModel

    model = BertModel.from_pretrained(folder)
    with torch.no_grad():
        model.embeddings.word_embeddings.weight.mul_(2.0)
    model.save_pretrained(folder)
    assert (
        weights_fingerprint(spec) != before
        and spec.fingerprint() == resolve_encoder(f"hf:{folder}@mean", "text").fingerprint()
    )
    with pytest.raises(UserError, match="built from other weights"):
        build_cache(read_manifest(images / "m.csv"), "d", CONV, spec, images / "cache")
    report = build_cache(read_manifest(images / "m.csv"), "d", CONV, spec, images / "cache", overwrite=True)
    assert report["train"]["items"].reused and not report["train"]["texts"].reused
    # hub ids: a pinned commit is the fingerprint; an id absent from the local cache is unresolved
    pinned = EncoderSpec("x", "text", "hf", "org/model", "mean", revision="a" * 40)
    assert weights_fingerprint(pinned) == "hub:" + "a" * 40
    assert weights_fingerprint(EncoderSpec("y", "text", "hf", "sixlab-test/absent", "mean")) == "unresolved:main"
    assert folder_fingerprint(folder) == folder_fingerprint(folder)


def test_offline_hub_id_fails_in_one_line_at_once(monkeypatch) -> None:
    from huggingface_hub import constants

    spec = resolve_encoder("hf:sixlab-test/not-a-model@cls", "image")
    # no HF_HUB_OFFLINE, but the hub cannot be reached: no retries, one line, before any download attempt
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(hf_module, "_hub_reachable", lambda timeout=3.0: False)
    started = time.perf_counter()
    with pytest.raises(UserError, match=r"sixlab-test/not-a-model.*offline.*huggingface-cli download") as err:
        load_encoder(spec)
    # no retries (they would take minutes); a generous bound so a busy runner cannot fail it
    assert time.perf_counter() - started < 30.0 and "\n" not in str(err.value)


def _checkpoint(path: Path, item_dim: int, text_dim: int) -> Path:
    torch.manual_seed(0)
    settings = {"depth": 1, "expansion": 1, "dropout": 0.0, "out_dim": 8}
    model = FusionModel(AdapterConfig(in_dim=item_dim, **settings), AdapterConfig(in_dim=text_dim, **settings))
    extras = {"encoders": {"item": CONV.to_dict(), "text": BOW.to_dict()}, "dataset": "d"}
    save_fusion_checkpoint(path, model, **extras)
    return path


def test_retrieve_checks_sizes_and_lists_identical_captions_once(images) -> None:
    (images / "m.csv").write_text(
        _rows([("a", "same words"), ("b", "same words"), ("c", "other words")]) + "a,a.png,more words,train\n"
    )
    build_cache(read_manifest(images / "m.csv"), "d", CONV, BOW, images / "cache")
    wrong = _checkpoint(images / "wrong.safetensors", 64, 256)
    with pytest.raises(
        UserError, match="items latents of split 'train' are 256-d but the checkpoint's adapter takes 64-d"
    ):
        retrieve(wrong, images / "cache", "train", item_id="a")
    good = _checkpoint(images / "good.safetensors", 256, 256)
    hits = retrieve(good, images / "cache", "train", item_id="a", k=10)
    assert sorted(hit.key for hit in hits) == ["more words", "other words", "same words"]
    assert [hit.rank for hit in hits] == [1, 2, 3]
