"""Training on cached latents: seeding, no encoder, equal contrastive batches, resume, strict checkpoints,
validation-only model selection."""

from __future__ import annotations

import dataclasses
import importlib
import json
import re
import subprocess
import sys

import pytest
import torch

from fusemix.adapters import AdapterConfig, FusionModel
from fusemix.checkpoint import load_fusion_checkpoint, load_state_strict, save_fusion_checkpoint
from fusemix.recall_metrics import chance_recall
from fusemix.train import TrainConfig, train
from sixlab_shared import UserError, load_checkpoint

train_module = importlib.import_module("fusemix.train")  # the package attribute `fusemix.train` is the function


def _config(cache_dir, **overrides) -> TrainConfig:
    base = TrainConfig(
        cache_dir=str(cache_dir), dataset="shapes", item_encoder="frozen-conv", text_encoder="frozen-bow",
        preset="cpu", depth=1, expansion=1, out_dim=16, batch_size=16, steps=40, warmup_steps=4, eval_every=10, seed=3,
        device="cpu",
    )  # fmt: skip
    return dataclasses.replace(base, **overrides)


def test_training_is_seeded_beats_chance_and_learns_tau(shapes_cache, tmp_path) -> None:
    first = train(_config(shapes_cache), tmp_path / "a")
    second = train(_config(shapes_cache), tmp_path / "b")
    assert first.best == second.best
    a = load_checkpoint(tmp_path / "a" / "checkpoints" / "last.safetensors")["model"]
    b = load_checkpoint(tmp_path / "b" / "checkpoints" / "last.safetensors")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    chance = chance_recall(torch.arange(60) // 5, 12)  # 12 validation images, 5 captions each
    mean_r1 = (first.best["t2i_r1"] + first.best["i2t_r1"]) / 2
    assert mean_r1 > 2 * chance["t2i"][1] and first.best["rsum"] > sum(chance["t2i"].values()) * 2 + 20
    assert first.temperature != pytest.approx(0.07)  # learned (it falls below 0.07 in longer runs: see the demo)
    other = train(_config(shapes_cache, seed=4), tmp_path / "c")
    assert other.best != first.best


def test_mixup_and_no_mixup_contrast_the_same_batch(shapes_cache, tmp_path, monkeypatch) -> None:
    seen: dict[str, list] = {"loss": [], "mix_in": []}
    real_loss, real_mix = train_module.symmetric_infonce, train_module.fusemix

    def loss(x, y, tau):
        seen["loss"].append(x.shape[0])
        return real_loss(x, y, tau)

    def mix(zx, zy, alpha, generator):
        seen["mix_in"].append(zx.shape[0])
        return real_mix(zx, zy, alpha, generator)

    monkeypatch.setattr(train_module, "symmetric_infonce", loss)
    monkeypatch.setattr(train_module, "fusemix", mix)
    train(_config(shapes_cache, steps=3, val_split=None), tmp_path / "mix")
    assert seen["loss"] == [16, 16, 16] and seen["mix_in"] == [32, 32, 32]
    seen["loss"].clear(), seen["mix_in"].clear()
    train(_config(shapes_cache, steps=3, val_split=None, mixup=False), tmp_path / "plain")
    assert seen["loss"] == [16, 16, 16] and seen["mix_in"] == []


def test_resume_continues_exactly(shapes_cache, tmp_path, monkeypatch) -> None:
    config = _config(shapes_cache, steps=12, eval_every=4)
    train(config, tmp_path / "full")
    calls = {"n": 0}
    real_loss = train_module.symmetric_infonce

    def dies(x, y, tau):
        calls["n"] += 1
        if calls["n"] == 7:
            raise KeyboardInterrupt
        return real_loss(x, y, tau)

    monkeypatch.setattr(train_module, "symmetric_infonce", dies)
    with pytest.raises(KeyboardInterrupt):
        train(config, tmp_path / "cut")
    assert load_checkpoint(tmp_path / "cut" / "checkpoints" / "last.safetensors")["step"] == 4
    monkeypatch.setattr(train_module, "symmetric_infonce", real_loss)
    with pytest.raises(UserError, match="differ from the stored run: depth"):
        train(dataclasses.replace(config, depth=2), tmp_path / "cut", resume=True)
    train(config, tmp_path / "cut", resume=True)
    full = load_checkpoint(tmp_path / "full" / "checkpoints" / "last.safetensors")
    cut = load_checkpoint(tmp_path / "cut" / "checkpoints" / "last.safetensors")
    assert cut["step"] == full["step"] == 12
    for key in full["model"]:
        torch.testing.assert_close(cut["model"][key], full["model"][key], rtol=0, atol=0)

    # metrics.jsonl was cut back to the checkpoint's step: the rows of steps 5-6 are not repeated
    def rows(run):
        lines = (tmp_path / run / "metrics.jsonl").read_text().splitlines()
        return [(r["step"], r.get("loss/train"), r.get("val/r_mean")) for r in map(json.loads, lines)]

    assert rows("cut") == rows("full") and len({r[:1] + r[2:] for r in rows("cut")}) == len(rows("cut"))


def test_selection_reads_validation_only(shapes_cache, tmp_path, monkeypatch) -> None:
    requested = []
    real = train_module.load_paired_latents

    def spy(cache_dir, item_spec, text_spec, dataset, split):
        requested.append(split)
        return real(cache_dir, item_spec, text_spec, dataset, split)

    monkeypatch.setattr(train_module, "load_paired_latents", spy)
    result = train(_config(shapes_cache), tmp_path / "run")
    assert sorted(requested) == ["train", "val"]
    metrics = [m for m in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines() if "val/r_mean" in m]
    import json

    values = {json.loads(m)["step"]: json.loads(m)["val/r_mean"] for m in metrics}
    assert result.best["step"] == max(values, key=lambda s: (values[s], -s))
    best = load_checkpoint(tmp_path / "run" / "checkpoints" / "best.safetensors")
    assert best["step"] == result.best["step"] and best["encoders"]["item"]["name"] == "frozen-conv"


def test_strict_checkpoints_store_hyperparameters(tmp_path) -> None:
    model = FusionModel(AdapterConfig(8, 4, 2, dropout=0.0), AdapterConfig(6, 4, 1, dropout=0.0))
    save_fusion_checkpoint(tmp_path / "m.safetensors", model, dataset="d")
    loaded, state = load_fusion_checkpoint(tmp_path / "m.safetensors")
    assert loaded.config() == model.config() and state["dataset"] == "d"
    z = torch.randn(3, 8)
    torch.testing.assert_close(loaded.encode_items(z), model.eval().encode_items(z))
    shallow = FusionModel(AdapterConfig(8, 4, 1, dropout=0.0), AdapterConfig(6, 4, 1, dropout=0.0))
    with pytest.raises(UserError, match=r"unexpected keys item_adapter\.blocks\.1\."):
        load_state_strict(shallow, model.state_dict(), "m")
    wider = FusionModel(AdapterConfig(8, 5, 2, dropout=0.0), AdapterConfig(6, 5, 1, dropout=0.0))
    with pytest.raises(UserError, match=r"shape mismatches item_adapter\.proj\.weight \(4, 8\) vs \(5, 8\)"):
        load_state_strict(wider, model.state_dict(), "m")


def test_bad_settings_fail_before_writing(shapes_cache, tmp_path) -> None:
    with pytest.raises(UserError, match="loads 400 pairs .* has 200; lower --batch-size"):
        train(_config(shapes_cache, batch_size=200), tmp_path / "x")
    with pytest.raises(UserError, match="unknown adapter preset"):
        train(_config(shapes_cache, preset="huge"), tmp_path / "x")
    with pytest.raises(UserError, match="--train-items 99"):
        train(_config(shapes_cache, train_items=99), tmp_path / "x")
    with pytest.raises(UserError, match=r"no items latents of encoder 'dinov2-s' .*\(cached: frozen-conv\)"):
        train(_config(shapes_cache, item_encoder="dinov2-s"), tmp_path / "x")
    for overrides, message in (
        ({"steps": -5}, "--steps must be >= 1, got -5"),
        ({"steps": None, "epochs": -1}, "--epochs must be >= 1, got -1"),
        ({"eval_every": 0}, "--eval-every must be >= 1"),
        ({"lr": 0.0}, "--lr must be > 0"),
        ({"val_split": "test"}, "--val-split 'test' would select the model on the test split"),
        ({"val_split": "train"}, "--val-split 'train' is the training split"),
        ({"dataset": "nope"}, "run `fusemix cache --dataset nope --split train"),
        ({"val_split": "extra"}, "or pass --val-split '' to train without a validation split"),
    ):
        with pytest.raises(UserError, match=re.escape(message)):
            train(_config(shapes_cache, **overrides), tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_encoders_are_read_from_the_cache(shapes_cache) -> None:
    train_data, val_data = train_module.load_training_data(_config(shapes_cache, item_encoder=None, text_encoder=None))
    assert train_data.item_spec.name == "frozen-conv" and train_data.text_spec.name == "frozen-bow"
    assert val_data is not None and val_data.items.shape[1] == train_data.items.shape[1]


def test_subset_keeps_all_captions_of_chosen_items(shapes_cache) -> None:
    train_data, _ = train_module.load_training_data(_config(shapes_cache, val_split=None))
    subset = train_module._subset_items(train_data, 7, seed=0)
    assert subset.items.shape[0] == 7 and subset.n_pairs == 35
    for row in range(7):
        original = train_data.item_ids.index(subset.item_ids[row])
        torch.testing.assert_close(subset.items[row], train_data.items[original])
        own = subset.texts[subset.txt2item == row]
        torch.testing.assert_close(own, train_data.texts[train_data.txt2item == original])


def test_training_instantiates_no_encoder(shapes_cache, tmp_path, monkeypatch) -> None:
    import fusemix.cache
    import fusemix.encoders
    from fusemix.encoders.frozen import FrozenEncoder
    from fusemix.encoders.huggingface import HFEncoder

    def refuse(*args, **kwargs):
        raise AssertionError("an encoder was instantiated during training")

    for target, name in ((FrozenEncoder, "__init__"), (HFEncoder, "__init__"), (fusemix.encoders, "load_encoder"),
                         (fusemix.cache, "load_encoder")):  # fmt: skip
        monkeypatch.setattr(target, name, refuse)
    result = train(_config(shapes_cache, steps=3, eval_every=3), tmp_path / "run")
    assert result.best is not None


@pytest.mark.slow
def test_training_never_imports_transformers(shapes_cache, tmp_path) -> None:
    # the import guard of reference §7.8, in a fresh interpreter (slow: a new process imports torch)
    script = (
        "import sys\n"
        "sys.modules['transformers'] = None  # any import of transformers now fails\n"
        "import fusemix.encoders.frozen as frozen\n"
        "def refuse(*a, **k): raise AssertionError('an encoder was instantiated during training')\n"
        "frozen.FrozenEncoder.__init__ = refuse\n"
        "from fusemix.cli import app\n"
        "app([*sys.argv[1:]], standalone_mode=True)\n"
    )
    args = ["train", "--cache-dir", str(shapes_cache), "--dataset", "shapes", "--item-encoder", "frozen-conv",
            "--text-encoder", "frozen-bow", "--out", str(tmp_path / "run"), "--preset", "cpu", "--batch-size", "16",
            "--steps", "5", "--eval-every", "5", "--device", "cpu"]  # fmt: skip
    result = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "trained 5 steps" in result.stdout
    assert (tmp_path / "run" / "checkpoints" / "best.safetensors").is_file()


@pytest.mark.slow
def test_two_process_training_under_torchrun(shapes_cache, tmp_path) -> None:
    # DDP over gloo on CPU: each process takes its own slice of the epoch, only the main process writes/reports
    out = tmp_path / "ddp"
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29533",
               "-m", "fusemix.cli", "train", "--cache-dir", str(shapes_cache), "--dataset", "shapes",
               "--item-encoder", "frozen-conv", "--text-encoder", "frozen-bow", "--out", str(out), "--preset", "cpu",
               "--depth", "1", "--expansion", "1", "--out-dim", "16", "--batch-size", "16", "--steps", "4",
               "--eval-every", "2", "--device", "cpu"]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.count("trained 4 steps") == 1
    state = load_checkpoint(out / "checkpoints" / "last.safetensors")
    assert state["step"] == 4


def test_gpu_check_cpu_tiny_path() -> None:
    import importlib.util
    from pathlib import Path

    path = Path(__file__).parents[1] / "benchmarks" / "gpu_check.py"
    spec = importlib.util.spec_from_file_location("fusemix_gpu_check", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    result = module.run("cpu", tiny=True)
    assert result["passed"] and result["agreement"]["max_abs_diff_loss"] == 0.0
    assert result["train"]["steps_per_s"] > 0 and result["peak_memory_mib"] is None
    json.dumps(result)  # JSON-able for tools/gpu_check.py
