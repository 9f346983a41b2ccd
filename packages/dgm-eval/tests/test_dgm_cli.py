"""The CLI verbs on tiny data, and every bad input of the spec: one line, exit 2, nothing written."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from dgm_eval.cli import app

runner = CliRunner()

FAST = ["--encoder", "random", "--device", "cpu", "--nearest-k", "3", "--kd-subset-size", "20", "--kd-num-subsets", "5"]


def _run(*args: str):
    return runner.invoke(app, [str(a) for a in args])


def _assert_user_error(result, message: str) -> None:
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert message in lines[0], lines[0]


def test_compute_writes_table_json_csv_and_config(image_sets):
    d = image_sets["dir"]
    out = d / "out"
    result = _run(
        "compute",
        d / "ref",
        d / "gen",
        d / "test",
        "--out",
        out,
        "--metrics",
        "fd,kd,prdc,realism,vendi,authpct,sw_approx",
        *FAST,
    )
    assert result.exit_code == 0, result.output
    assert "precision" in result.stdout and "fd" in result.stdout
    data = json.loads((out / "results.json").read_text())
    gens = list(data["results"])
    assert gens == [str(d / "gen"), str(d / "test")]
    assert data["results"][gens[0]]["fd"] > data["results"][gens[1]]["fd"]  # the shifted set is farther
    assert (out / "results.csv").read_text().splitlines()[0].startswith("gen,fd,kd_mean,kd_std,precision")
    config = json.loads((out / "config.json").read_text())["config"]
    assert config["encoder"]["encoder"] == "random" and config["nearest_k"] == 3
    resolved = config.pop("resolved")  # what the options resolved to: nothing left null that has a value
    enc = resolved["encoder"]
    assert enc["weights"] == "random(seed=0)" and enc["dim"] > 0 and enc["class"].endswith("Encoder")
    assert set(enc["preprocessing"]) >= {"size", "mode", "filter", "antialias", "mean", "std"}
    assert resolved["precision"] == "fp32" and resolved["device"] == "cpu" and resolved["cache_dir"]
    assert torch.__version__.startswith(resolved["versions"]["torch"])
    assert resolved["versions"]["dgm-eval"] and resolved["versions"]["transformers"]
    from dgm_eval.evaluation import ComputeConfig, EncoderConfig

    rebuilt = ComputeConfig(**{**config, "encoder": EncoderConfig(**config["encoder"])})
    assert dataclasses.asdict(rebuilt) == config  # config.json round-trips to the config dataclass
    with np.load(out / "realism.npz") as realism:
        assert realism["run00"].shape == (30,) and realism["run01"].shape == (30,)
    assert data["vendi_per_class"][gens[0]].keys() == {"0"}  # a flat folder is one class, never NaN


def test_compute_same_seed_same_numbers_and_cache(image_sets):
    d = image_sets["dir"]
    args = [d / "ref", d / "gen", "--metrics", "fd,kd,fd_infinity", *FAST, "--seed", "3"]
    assert _run("compute", *args, "--out", d / "a").exit_code == 0
    assert _run("compute", *args, "--out", d / "b", "--no-cache").exit_code == 0
    a = json.loads((d / "a" / "results.json").read_text())["results"]
    b = json.loads((d / "b" / "results.json").read_text())["results"]
    assert a == b


def test_features_verb_gives_the_same_fd_as_images(image_sets):
    d = image_sets["dir"]
    for name in ("ref", "gen"):
        result = _run("features", d / name, "--out", d / f"{name}.npz", "--encoder", "random", "--device", "cpu")
        assert result.exit_code == 0, result.output
    assert np.load(d / "ref.npz")["features"].shape == (40, 256)
    assert _run("compute", d / "ref.npz", d / "gen.npz", "--out", d / "o1", "--metrics", "fd", *FAST).exit_code == 0
    assert _run("compute", d / "ref", d / "gen", "--out", d / "o2", "--metrics", "fd", *FAST).exit_code == 0
    fd_feats = json.loads((d / "o1" / "results.json").read_text())["results"][str(d / "gen.npz")]["fd"]
    fd_images = json.loads((d / "o2" / "results.json").read_text())["results"][str(d / "gen")]["fd"]
    assert fd_feats == pytest.approx(fd_images, rel=1e-12)


def test_compute_test_set_metrics_from_saved_features(tmp_path, rng):
    for name, shift in (("ref", 0.0), ("gen", 0.2), ("test", 0.0)):
        np.savez(tmp_path / f"{name}.npz", features=rng.normal(size=(90, 6)) + shift)
    out = tmp_path / "out"
    result = _run(
        "compute", tmp_path / "ref.npz", tmp_path / "gen.npz", "--test", tmp_path / "test.npz", "--out", out,
        "--metrics", "ct,ct_test,ct_modified,fls,fls_overfit", *FAST,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    values = json.loads((out / "results.json").read_text())["results"][str(tmp_path / "gen.npz")]
    assert set(values) >= {"ct", "ct_test", "ct_modified", "fls", "fls_overfit"}
    assert all(np.isfinite(v) for v in values.values())


def test_stats_streams_mean_and_covariance(image_sets):
    d = image_sets["dir"]
    assert (
        _run("features", d / "ref", "--out", d / "ref_feats.npz", "--encoder", "random", "--device", "cpu").exit_code
        == 0
    )
    result = _run(
        "stats", d / "ref", "--out", d / "ref_stats.npz", "--encoder", "random", "--device", "cpu", "--chunk", "7"
    )
    assert result.exit_code == 0, result.output
    feats = np.load(d / "ref_feats.npz")["features"].astype(np.float64)
    with np.load(d / "ref_stats.npz") as stats:
        np.testing.assert_allclose(stats["mu"], feats.mean(0), rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(stats["sigma"], np.cov(feats, rowvar=False), rtol=1e-8, atol=1e-10)
        assert int(stats["n"]) == 40
    # FD against saved statistics equals FD against the features.
    out = d / "out"
    assert _run("compute", d / "ref_stats.npz", d / "gen", "--out", out, "--metrics", "fd", *FAST).exit_code == 0
    out2 = d / "out2"
    assert _run("compute", d / "ref", d / "gen", "--out", out2, "--metrics", "fd", *FAST).exit_code == 0
    fd_stats = json.loads((out / "results.json").read_text())["results"][str(d / "gen")]["fd"]
    fd_feats = json.loads((out2 / "results.json").read_text())["results"][str(d / "gen")]["fd"]
    assert fd_stats == pytest.approx(fd_feats, rel=1e-8)


def test_encoders_lists_registry():
    result = _run("encoders")
    assert result.exit_code == 0
    assert "pixel" in result.stdout and "random" in result.stdout and "dinov2" in result.stdout
    # Every encoder shows its weight source and preprocessing, straight from the registry.
    from dgm_eval.encoders import list_encoders

    for info in list_encoders():
        assert f"weights:       {info.weight_source}" in result.stdout
        assert f"preprocessing: {info.preprocessing}" in result.stdout
    assert "unsupported:   SimCLRv2" in result.stdout


def test_unreadable_images_are_skipped_and_counted_or_strict_error(image_sets):
    d = image_sets["dir"]
    (d / "gen" / "broken.png").write_bytes(b"not an image at all")
    good = (d / "gen" / "img000000.png").read_bytes()
    (d / "gen" / "truncated.PNG").write_bytes(good[: len(good) // 2])
    out = d / "out"
    result = _run("compute", d / "ref", d / "gen", "--out", out, "--metrics", "fd", *FAST)
    assert result.exit_code == 0, result.output
    data = json.loads((out / "results.json").read_text())
    assert data["skipped_unreadable"][str(d / "gen")] == 2
    assert data["results"][str(d / "gen")]["n_gen"] == 30
    strict_out = d / "strict"
    result = _run(
        "compute", d / "ref", d / "gen", "--out", strict_out, "--metrics", "fd", "--strict", "--no-cache", *FAST
    )
    _assert_user_error(result, "cannot read image")
    assert "broken.png" in result.stderr
    assert not strict_out.exists()


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("empty_folder", "holds no images"),
        ("missing_path", "does not exist"),
        ("unknown_metric", "unknown metric(s) 'fdd'"),
        ("unknown_encoder", "unknown encoder 'dinov3'"),
        ("needs_test", "need held-out real images; pass --test"),
        ("too_few_prdc", "metric 'prdc' needs at least 6"),
        ("too_few_kd", "metric 'kd' needs at least 2"),
        ("too_few_ct", "metric 'ct' needs at least 21 generated"),
        ("mismatched_dims", "feature dimensions differ"),
        ("nan_features", "features hold NaN or inf"),
        ("is_without_inception", "metric 'is' needs class probabilities"),
        ("stats_for_prdc", "the reference is saved statistics"),
    ],
)
def test_bad_inputs_fail_with_one_line_and_write_nothing(image_sets, case, message):
    d = image_sets["dir"]
    out = d / "out"
    ref, gen = d / "ref", d / "gen"
    metrics = "fd"
    extra: list[str] = []
    if case == "empty_folder":
        gen = d / "empty"
        gen.mkdir()
        (gen / "notes.txt").write_text("no images here")
    elif case == "missing_path":
        gen = d / "nope"
    elif case == "unknown_metric":
        metrics = "fd,fdd"
    elif case == "unknown_encoder":
        extra = ["--encoder", "dinov3"]
    elif case == "needs_test":
        metrics = "fd,ct"
    elif case == "too_few_prdc":
        metrics = "prdc"
        extra = ["--nearest-k", "5", "--nsample", "5"]
    elif case == "too_few_kd":
        metrics = "kd"
        extra = ["--nsample", "1"]
    elif case == "too_few_ct":
        metrics = "ct"
        extra = ["--test", str(d / "test"), "--nsample", "20"]
    elif case == "mismatched_dims":
        np.savez(d / "a.npz", features=np.random.default_rng(0).normal(size=(20, 8)))
        np.savez(d / "b.npz", features=np.random.default_rng(1).normal(size=(20, 9)))
        ref, gen = d / "a.npz", d / "b.npz"
    elif case == "nan_features":
        feats = np.random.default_rng(0).normal(size=(20, 8))
        feats[3, 1] = np.nan
        np.savez(d / "a.npz", features=feats)
        gen = d / "a.npz"
    elif case == "is_without_inception":
        metrics = "is"
    elif case == "stats_for_prdc":
        feats = np.random.default_rng(0).normal(size=(20, 8))
        np.savez(d / "s.npz", mu=feats.mean(0), sigma=np.cov(feats, rowvar=False))
        ref, metrics = d / "s.npz", "fd,prdc"
    cache = d / "cache"
    args = [ref, gen, "--out", out, "--metrics", metrics, "--cache-dir", cache, *FAST, *extra]
    result = _run("compute", *args)
    _assert_user_error(result, message)
    assert not out.exists()
    assert not cache.exists()  # nothing computed, nothing cached


def test_existing_results_are_not_clobbered(image_sets):
    d = image_sets["dir"]
    out = d / "out"
    out.mkdir()
    (out / "results.json").write_text('{"keep": true}')
    result = _run("compute", d / "ref", d / "gen", "--out", out, "--metrics", "fd", *FAST)
    _assert_user_error(result, "already holds results.json")
    assert (out / "results.json").read_text() == '{"keep": true}'


def test_features_and_stats_refuse_to_overwrite(image_sets):
    d = image_sets["dir"]
    target = d / "f.npz"
    target.write_bytes(b"old")
    _assert_user_error(_run("features", d / "ref", "--out", target, "--encoder", "random"), "already exists")
    _assert_user_error(_run("stats", d / "ref", "--out", target, "--encoder", "random"), "already exists")
    assert target.read_bytes() == b"old"


def test_demo_fast_writes_results_png_and_reading(tmp_path):
    out = tmp_path / "demo"
    result = _run("demo", "--fast", "--out", out)
    assert result.exit_code == 0, result.output
    assert (out / "curves.png").stat().st_size > 10_000
    data = json.loads((out / "results.json").read_text())
    assert set(data["values"]) == {"pixel", "random"}
    memorize = next(line for line in data["reading"] if line.startswith("[pixel] memorize"))
    caught, missed = memorize.split("; missed by ")
    assert "authpct" in caught and "fd" in missed.split(", ")  # FD misses memorisation, AuthPct catches it
    assert "caught by" in result.stdout


def test_config_file_sets_options_and_command_line_wins(image_sets):
    d = image_sets["dir"]
    config = d / "run.toml"
    config.write_text('metrics = ["fd", "sw_approx"]\nencoder = "random"\ndevice = "cpu"\nseed = 4\n')
    out = d / "out"
    result = _run("compute", d / "ref", d / "gen", "--config", config, "--out", out, "--seed", "5")
    assert result.exit_code == 0, result.output
    saved = json.loads((out / "config.json").read_text())["config"]
    assert saved["metrics"] == ["fd", "sw_approx"] and saved["encoder"]["encoder"] == "random" and saved["seed"] == 5
    assert set(json.loads((out / "results.json").read_text())["results"][str(d / "gen")]) == {
        "fd",
        "sw_approx",
        "n_gen",
        "n_ref",
    }


@pytest.mark.parametrize("verb", ["compute", "features", "stats", "encoders", "demo"])
def test_every_verb_has_help_with_defaults(verb):
    result = _run(verb, "--help")
    assert result.exit_code == 0
    assert "Usage" in result.stdout


@pytest.mark.parametrize(
    ("verb", "config_cls", "exclude"),
    [
        # ref/gens are the REF GEN arguments, out the shared --out, encoder the EncoderConfig options below
        ("compute", "ComputeConfig", ("ref", "gens", "encoder")),
        ("features", "FeaturesConfig", ("path", "encoder")),
        ("stats", "StatsConfig", ("path", "encoder")),
        ("compute", "EncoderConfig", ()),
        ("features", "EncoderConfig", ()),
        ("stats", "EncoderConfig", ()),
    ],
)
def test_every_config_field_is_reachable_with_the_dataclass_default(verb, config_cls, exclude):
    from dgm_eval import config as config_module
    from sixlab_shared.cli import config_coverage

    cls = getattr(config_module, config_cls)
    problems = config_coverage(app, verb, cls, exclude=exclude)
    # --out of features/stats has no default (a file must be named); the dataclass's "" means "not set"
    problems = [p for p in problems if not (verb != "compute" and p.startswith("default: out "))]
    assert problems == []


def test_demo_config_is_reachable():
    from dgm_eval.demo import DemoConfig
    from sixlab_shared.cli import config_coverage

    # device: the shared --device (None there = the demo's own default, cpu)
    assert config_coverage(app, "demo", DemoConfig, exclude=("device",)) == []


def test_metric_choices_and_help_come_from_the_registry(image_sets):
    from dgm_eval.metric_registry import METRIC_NAMES, REGISTRY

    listing = _run("metrics")
    assert listing.exit_code == 0
    assert [line.split(":")[0] for line in listing.stdout.splitlines()[:-1]] == list(METRIC_NAMES)
    assert all(
        ("needs --test" in line) == REGISTRY[line.split(":")[0]].needs_test for line in listing.stdout.splitlines()[:-1]
    )
    d = image_sets["dir"]
    bad = _run("compute", d / "ref", d / "gen", "--metrics", "fd,prcd", *FAST, "--out", d / "x")
    _assert_user_error(bad, "unknown metric(s) 'prcd'; choose from: " + ", ".join(METRIC_NAMES))
    assert not (d / "x").exists()


def test_gen_train_path_is_a_bootstrap_of_the_training_set(image_sets):
    d = image_sets["dir"]
    feats = d / "ref_feats.npz"
    assert _run("features", d / "ref", "--out", feats, "--encoder", "random", "--device", "cpu").exit_code == 0
    rows = {}
    for name, train in (("images", f"{d / 'ref'}:train"), ("features", f"{feats}:train")):
        args = [d / "ref", train, d / "gen", "--metrics", "fd,authpct", *FAST, "--out", d / name]
        result = _run("compute", *args)
        assert result.exit_code == 0, result.output
        rows[name] = json.loads((d / name / "results.json").read_text())["results"]
    train = rows["images"][f"{d / 'ref'}:train"]
    assert train["n_gen"] == 40  # min(--nsample, N) draws
    assert train["authpct"] == 0.0  # every draw is a copy of a reference sample: none is authentic
    assert rows["images"][str(d / "gen")]["authpct"] > 0
    # the same seeded draws (with replacement) from the images and from their saved features
    assert rows["features"][f"{feats}:train"]["fd"] == pytest.approx(train["fd"], rel=1e-6)
    from dgm_eval.inputs import ImageSource

    source = ImageSource.from_folder(d / "ref").cap(None, seed=2, replace=True)  # the first GEN: seed + 2
    assert len(source) == 40 and len(set(source.indices.tolist())) < 40  # drawn with replacement


def test_wrong_kind_files_are_one_line_errors(image_sets, tmp_path):
    import random

    d = image_sets["dir"]
    noise = random.Random(0)  # seeded bytes: the same files on every run
    (tmp_path / "random.npz").write_bytes(noise.randbytes(600))
    np.savez(tmp_path / "pickled.npz", features=np.array([{"x": 1}], dtype=object))
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "bad.pth").write_bytes(noise.randbytes(300))
    (tmp_path / "folder.npz").mkdir()
    cases = [
        (["compute", tmp_path / "random.npz", d / "gen"], "is not a valid .npz archive (not a zip file)"),
        (["compute", d / "ref", tmp_path / "pickled.npz"], "holds Python objects (pickled)"),
        (["compute", d / "ref", tmp_path / "notes.txt"], "is neither a folder nor an .npz file"),
        (["stats", tmp_path / "random.npz", "--out", tmp_path / "s.npz"], "is not a valid .npz archive"),
        (["features", d / "ref", "--out", tmp_path / "folder.npz"], "is a folder"),
        (["compute", d / "ref", d / "gen", "--encoder", "dinov2", "--weights", tmp_path / "bad.pth"],
         "not a PyTorch state-dict file"),
    ]  # fmt: skip
    for args, message in cases:
        extra = ["--out", tmp_path / "o"] if args[0] == "compute" else []
        encoder = [] if "--encoder" in args else ["--encoder", "random"]
        _assert_user_error(_run(*args, *encoder, "--device", "cpu", *extra), message)
    assert not (tmp_path / "o").exists() and not (tmp_path / "s.npz").exists()


def test_sample_counts_are_checked_again_after_unreadable_images_are_dropped(image_sets):
    d = image_sets["dir"]
    small = d / "small"
    small.mkdir()
    for i, path in enumerate(sorted((d / "gen").iterdir())[:5]):
        (small / f"{i}.png").write_bytes(path.read_bytes() if i < 3 else b"not a png")  # 3 readable of 5
    args = [d / "ref", small, "--metrics", "prdc", *FAST, "--out", d / "out"]  # nearest_k 3: needs 4 samples
    result = _run("compute", *args)
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert "skipped 2 unreadable image(s)" in lines[0]  # the warning, then the one-line error
    assert lines[-1].startswith("error: metric 'prdc' needs at least 4") and lines[-1].endswith("got 3")
    assert len(lines) == 2 and not (d / "out").exists()
