"""Every CLI verb on tiny data, and every user error: one line on stderr, exit 2, nothing written or lost."""

from __future__ import annotations

import csv
import json
import shutil

import pytest
from typer.testing import CliRunner

from fusemix.cli import app

runner = CliRunner()

ENCODERS = ["--item-encoder", "frozen-conv", "--text-encoder", "frozen-bow"]


def _train_args(cache_dir, out, *extra: str) -> list[str]:
    return ["train", "--cache-dir", str(cache_dir), "--dataset", "shapes", *ENCODERS, "--out", str(out),
            "--preset", "cpu", "--depth", "1", "--expansion", "1", "--out-dim", "16", "--batch-size", "16",
            "--steps", "10", "--eval-every", "5", "--warmup-steps", "2", "--device", "cpu", *extra]  # fmt: skip


def _user_error(result, message: str) -> None:
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines and lines[-1].startswith("error: ") and message in lines[-1], result.stderr


@pytest.fixture(scope="module")
def trained(shapes_cache, tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "run"
    result = runner.invoke(app, _train_args(shapes_cache, out))
    assert result.exit_code == 0, result.output + str(result.exception)
    return out


def test_help_of_every_verb() -> None:
    for verb in ("cache", "train", "evaluate", "retrieve", "demo", "encoders"):
        result = runner.invoke(app, [verb, "--help"])
        assert result.exit_code == 0 and "--" in result.output
    assert "fusemix 0.1.0" in runner.invoke(app, ["--version"]).output


def test_train_options_cover_train_config() -> None:
    from fusemix.train import TrainConfig
    from sixlab_shared.cli import config_coverage

    # every field is an option (or a --config key) with the dataclass's default; `device` is the shared --device;
    # the two fields without a default are required options
    assert config_coverage(app, "train", TrainConfig) == []
    for missing in ("--cache-dir", "--dataset"):
        args = ["train", "--cache-dir", "c", "--dataset", "d", "--out", "o"]
        at = args.index(missing)
        result = runner.invoke(app, args[:at] + args[at + 2 :])
        assert result.exit_code == 2 and missing in result.output


def test_demo_options_cover_demo_config(tmp_path) -> None:
    from fusemix.demo import DemoConfig
    from sixlab_shared.cli import config_coverage

    # seeds: `--seeds N` with the shared `--seed` first seed; device: the shared --device; subsamples: `fusemix curve`
    assert config_coverage(app, "demo", DemoConfig, exclude=("seeds", "device", "subsamples")) == []
    bad = runner.invoke(app, ["demo", "--fast", "--steps", "0", "--out", str(tmp_path / "d")])
    _user_error(bad, "--steps must be >= 1, got 0")
    _user_error(runner.invoke(app, ["demo", "--fast", "--size", "500", "--out", str(tmp_path / "d")]),
                "--size 500 exceeds --train-pool 60")  # fmt: skip
    assert not (tmp_path / "d").exists()


def test_shared_options_on_every_verb() -> None:
    from sixlab_shared.cli import HELP

    def help_text(verb: str) -> str:
        output = runner.invoke(app, [verb, "--help"], env={"COLUMNS": "300"}).output
        return " ".join(output.replace("│", " ").split())

    for verb in ("cache", "train", "evaluate", "retrieve", "demo", "curve", "generate"):
        text = help_text(verb)
        for flag in ("device", "threads", "config"):
            assert f"--{flag}" in text and " ".join(HELP[flag].split())[:40] in text, (verb, flag)
    for verb in ("demo", "curve"):
        assert " ".join(HELP["fast"].split())[:30] in help_text(verb)
    assert "[default: 0]" in help_text("train").split("--seed")[1][:200]


def test_cache_verb(shapes_manifest, tmp_path) -> None:
    args = ["cache", "--manifest", str(shapes_manifest), "--dataset", "shapes", "--cache-dir", str(tmp_path / "c"),
            *ENCODERS, "--split", "val", "--shard-size", "8"]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split()[:6] == ["split", "side", "encoded", "skipped", "distinct", "reused"]
    assert lines[1].split()[:6] == ["val", "items", "12", "0", "-", "False"]
    # the text row counts captions (12 images x 5), not distinct strings; those are counted apart
    with open(shapes_manifest, newline="") as handle:
        val_captions = [row["caption"] for row in csv.DictReader(handle) if row["split"] == "val"]
    assert len(val_captions) == 60
    assert lines[2].split()[:6] == ["val", "texts", "60", "0", str(len(set(val_captions))), "False"]
    again = runner.invoke(app, args)
    assert again.stdout.splitlines()[1].split()[5] == "True"


def test_train_evaluate_retrieve(trained, shapes_cache, tmp_path) -> None:
    summary = json.loads((trained / "summary.json").read_text())
    assert summary["steps"] == 10 and summary["selection"].startswith("best r_mean on the validation")
    checkpoint = trained / "checkpoints" / "best.safetensors"
    result = runner.invoke(app, ["evaluate", "--checkpoint", str(checkpoint), "--cache-dir", str(shapes_cache),
                                 "--split", "test", "--out", str(tmp_path / "eval"), "--chunk-size", "7"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "item->text" in result.stdout and "chance" in result.stdout and "16 items, 80 captions" in result.stdout
    metrics = json.loads((tmp_path / "eval" / "summary.json").read_text())
    assert metrics["chance/t2i_r1"] == pytest.approx(100 / 16)
    # chunking does not change the numbers
    other = runner.invoke(app, ["evaluate", "--checkpoint", str(checkpoint), "--cache-dir", str(shapes_cache),
                                "--split", "test", "--chunk-size", "1000"])  # fmt: skip
    assert other.stdout == result.stdout
    hits = runner.invoke(app, ["retrieve", "--checkpoint", str(checkpoint), "--cache-dir", str(shapes_cache),
                               "--query", "a small red circle at the top left", "-k", "3"])  # fmt: skip
    assert hits.exit_code == 0, hits.output
    rows = hits.stdout.splitlines()
    assert len(rows) == 3 and rows[0].split()[0] == "1" and rows[0].split()[2].startswith("test-")
    assert float(rows[0].split()[1]) >= float(rows[1].split()[1]) >= float(rows[2].split()[1])
    captions = runner.invoke(app, ["retrieve", "--checkpoint", str(checkpoint), "--cache-dir", str(shapes_cache),
                                   "--item-id", "test-00003", "-k", "2"])  # fmt: skip
    assert captions.exit_code == 0 and len(captions.stdout.splitlines()) == 2


def test_train_config_file_and_resume(shapes_cache, tmp_path) -> None:
    config = tmp_path / "train.toml"
    config.write_text("steps = 4\nseed = 9\n")
    out = tmp_path / "run"
    result = runner.invoke(app, [*_train_args(shapes_cache, out), "--config", str(config)])
    assert result.exit_code == 0, result.output
    stored = json.loads((out / "config.json").read_text())["config"]
    assert stored["seed"] == 9 and stored["steps"] == 10  # the command line wins over the file
    resumed = runner.invoke(app, [*_train_args(shapes_cache, out), "--config", str(config), "--resume"])
    assert resumed.exit_code == 0 and "trained 10 steps" in resumed.stdout


def test_demo_fast(tmp_path) -> None:
    result = runner.invoke(app, ["demo", "--fast", "--out", str(tmp_path / "demo")])
    assert result.exit_code == 0, result.output + str(result.exception)
    assert "chance" in result.stdout and "FuseMix - no-mixup" in result.stdout
    summary = json.loads((tmp_path / "demo" / "summary.json").read_text())
    assert {r["method"] for r in summary["rows"]} == {"fusemix", "no-mixup"}
    assert {r["size"] for r in summary["rows"]} == {20, 60}
    again = runner.invoke(app, ["demo", "--fast", "--out", str(tmp_path / "demo")])
    _user_error(again, "already holds a run; pass --overwrite to replace it, or choose another --out")
    assert "--resume" not in again.stderr  # the demo has no --resume


def test_demo_fast_audio(tmp_path) -> None:
    result = runner.invoke(app, ["demo", "--fast", "--modality", "audio", "--out", str(tmp_path / "demo")])
    assert result.exit_code == 0, result.output + str(result.exception)
    assert "clips method" in result.stdout and "60 clips: FuseMix - no-mixup" in result.stdout
    summary = json.loads((tmp_path / "demo" / "summary.json").read_text())
    assert summary["modality"] == "audio" and summary["test_items"] == 30
    best = max(r["t2i_r5"] for r in summary["rows"])
    assert best > 2 * summary["chance"]["t2i_r5"]  # 20 steps on 60 clips already beat chance
    _user_error(runner.invoke(app, ["demo", "--fast", "--modality", "video", "--out", str(tmp_path / "v")]),
                "--modality must be image or audio")  # fmt: skip
    assert not (tmp_path / "v").exists()


def test_encoders_list() -> None:
    result = runner.invoke(app, ["encoders"])
    assert result.exit_code == 0 and "dinov2-g" in result.stdout and "minilm" in result.stdout


def test_user_errors_write_nothing(shapes_manifest, shapes_cache, trained, tmp_path) -> None:
    cache_dir = tmp_path / "c"
    _user_error(runner.invoke(app, ["cache", "--manifest", str(tmp_path / "none.csv"), "--dataset", "d",
                                    "--cache-dir", str(cache_dir), *ENCODERS]), "does not exist")  # fmt: skip
    bad = tmp_path / "bad.csv"
    bad.write_text("item_id,item_path,caption,split\nx,a.png,,train\n")
    _user_error(runner.invoke(app, ["cache", "--manifest", str(bad), "--dataset", "d", "--cache-dir", str(cache_dir),
                                    *ENCODERS]), "line 2: empty caption for item 'x'")  # fmt: skip
    _user_error(runner.invoke(app, ["cache", "--manifest", str(shapes_manifest), "--dataset", "d", "--cache-dir",
                                    str(cache_dir), "--item-encoder", "nope", "--text-encoder", "frozen-bow"]),
                "unknown item encoder 'nope'")  # fmt: skip
    holdout = ["cache", "--manifest", str(shapes_manifest), "--dataset", "d", "--cache-dir", str(cache_dir),
               *ENCODERS, "--split", "holdout"]  # fmt: skip
    _user_error(runner.invoke(app, holdout), "has no split 'holdout'")
    assert not cache_dir.exists()
    # training into an existing run: refused, the run untouched
    before = {p: p.read_bytes() for p in trained.rglob("*") if p.is_file()}
    _user_error(runner.invoke(app, _train_args(shapes_cache, trained)), "already holds a run")
    assert {p: p.read_bytes() for p in trained.rglob("*") if p.is_file()} == before
    _user_error(runner.invoke(app, _train_args(shapes_cache, tmp_path / "r", "--preset", "giant")), "unknown adapter")
    _user_error(
        runner.invoke(app, _train_args(shapes_cache, tmp_path / "r", "--batch-size", "500")), "lower --batch-size"
    )
    _user_error(runner.invoke(app, _train_args(shapes_cache, tmp_path / "r", "--alpha", "0")), "use --no-mixup")
    _user_error(runner.invoke(app, _train_args(shapes_cache, tmp_path / "r", "--steps", "-5")), "--steps must be >= 1")
    epochs = [a for a in _train_args(shapes_cache, tmp_path / "r", "--epochs", "-1") if a not in ("--steps", "10")]
    _user_error(runner.invoke(app, epochs), "--epochs must be >= 1, got -1")
    _user_error(runner.invoke(app, _train_args(shapes_cache, tmp_path / "r", "--val-split", "test")), "test split")
    assert not (tmp_path / "r").exists()
    checkpoint = trained / "checkpoints" / "best.safetensors"
    _user_error(runner.invoke(app, ["evaluate", "--checkpoint", str(tmp_path / "x.safetensors"), "--cache-dir",
                                    str(shapes_cache)]), "does not exist")  # fmt: skip
    _user_error(runner.invoke(app, ["evaluate", "--checkpoint", str(checkpoint), "--cache-dir", str(shapes_cache),
                                    "--split", "holdout"]), "no items latents")  # fmt: skip
    _user_error(runner.invoke(app, ["retrieve", "--checkpoint", str(checkpoint), "--cache-dir", str(shapes_cache)]),
                "exactly one of --query")  # fmt: skip
    _user_error(runner.invoke(app, ["retrieve", "--checkpoint", str(checkpoint), "--cache-dir", str(shapes_cache),
                                    "--item-id", "zzz"]), "item 'zzz' is not in")  # fmt: skip
    _user_error(runner.invoke(app, ["demo", "--fast", "--seeds", "0", "--out", str(tmp_path / "d")]), "--seeds")
    assert not (tmp_path / "d").exists()


def test_evaluate_refuses_latents_of_other_size(trained, shapes_cache, tmp_path) -> None:
    # a cache whose item latents were renamed from another encoder of another width
    from fusemix.cache import latent_cache_path
    from fusemix.encoders import resolve_encoder

    work = tmp_path / "cache"
    shutil.copytree(shapes_cache, work)
    conv, bow = resolve_encoder("frozen-conv", "image"), resolve_encoder("frozen-bow", "text")
    path = latent_cache_path(work, conv, "shapes", "test", "items")
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(path), framework="pt") as handle:
        meta = handle.metadata()
        tensors = {k: handle.get_tensor(k) for k in handle.keys()}  # noqa: SIM118
    tensors["latents"] = tensors["latents"][:, :100].contiguous()
    save_file(tensors, str(path), metadata=meta)
    del bow
    result = runner.invoke(app, ["evaluate", "--checkpoint", str(trained / "checkpoints" / "best.safetensors"),
                                 "--cache-dir", str(work)])  # fmt: skip
    _user_error(result, "items latents of split 'test' are 100-d but the checkpoint's adapter takes 256")


def test_unavailable_encoder_leaves_no_trace(shapes_manifest, tmp_path) -> None:
    cache_dir = tmp_path / "c"
    result = runner.invoke(app, ["cache", "--manifest", str(shapes_manifest), "--dataset", "d", "--cache-dir",
                                 str(cache_dir), "--item-encoder", "hf:sixlab-test/missing-model@cls",
                                 "--text-encoder", "frozen-bow", "--split", "val"])  # fmt: skip
    _user_error(result, "huggingface-cli download sixlab-test/missing-model")
    assert not cache_dir.exists()


def test_evaluate_never_writes_into_a_run(trained, shapes_cache) -> None:
    before = {p: p.read_bytes() for p in trained.rglob("*") if p.is_file()}
    result = runner.invoke(app, ["evaluate", "--checkpoint", str(trained / "checkpoints" / "best.safetensors"),
                                 "--cache-dir", str(shapes_cache), "--out", str(trained)])  # fmt: skip
    _user_error(result, "holds a training run")
    checkpoint = str(trained / "checkpoints" / "best.safetensors")
    overwrite = runner.invoke(app, ["evaluate", "--checkpoint", checkpoint, "--cache-dir", str(shapes_cache),
                                    "--out", str(trained), "--overwrite"])  # fmt: skip
    _user_error(overwrite, "holds a training run")
    assert {p: p.read_bytes() for p in trained.rglob("*") if p.is_file()} == before
