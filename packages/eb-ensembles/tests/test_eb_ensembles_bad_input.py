"""Every bad input of issue 17: one clear line (a UserError in the library; exit 2 from the CLI), nothing written."""

from __future__ import annotations

import pytest
import torch
from torchmetrics.functional.classification import multiclass_calibration_error
from typer.testing import CliRunner

from eb_ensembles.checks import InvalidInputError
from eb_ensembles.cli import app
from eb_ensembles.ensemble import DeepEnsemble
from eb_ensembles.metrics import calibration_error, ensemble_nll, gaussian_nll, total_variation
from eb_ensembles.models import mlp_factory
from eb_ensembles.training.config import TrainConfig
from eb_ensembles.training.train import train_ensemble

runner = CliRunner()


def _one_line_exit_2(args, message):
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0], result.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["train", "--dataset", "blobs", "--members", "1", "--epochs", "1"],
        ["experiment", "E1", "--fast"],
        ["demo", "--fast"],
        ["evaluate", "--run", "nowhere"],
    ],
)
def test_negative_seed_and_bad_device_are_one_line_and_make_no_folder(args, tmp_path):
    out = tmp_path / "out"
    _one_line_exit_2([*args, "--seed", "-3", "--out", str(out)], "--seed must be an integer in [0, 2**32)")
    _one_line_exit_2([*args, "--device", "tpu", "--out", str(out)], "tpu")
    if not torch.cuda.is_available():
        _one_line_exit_2([*args, "--device", "cuda", "--out", str(out)], "CUDA is not available")
    assert not out.exists()


def test_labels_outside_range_and_non_finite_data(toy_classification, toy_regression):
    x, y = toy_classification
    config = TrainConfig(members=2, epochs=1)
    bad = y.clone()
    bad[0] = 3  # the model has 3 outputs: labels must lie in [0, 3)
    with pytest.raises(InvalidInputError, match=r"class labels must lie in \[0, 3\), got values in \[0, 3\]"):
        train_ensemble(mlp_factory(5, 3), x, bad, config)
    bad[0] = -1
    with pytest.raises(InvalidInputError, match="class labels must lie in"):
        train_ensemble(mlp_factory(5, 3), x, bad, config)
    nan_x = x.clone()
    nan_x[3, 1] = float("nan")
    with pytest.raises(InvalidInputError, match="inputs hold NaN or infinite"):
        train_ensemble(mlp_factory(5, 3), nan_x, y, config)
    xr, yr = toy_regression
    inf_y = yr.clone()
    inf_y[0] = float("inf")
    with pytest.raises(InvalidInputError, match="targets hold NaN or infinite"):
        train_ensemble(mlp_factory(1, 2), xr, inf_y, config)


@pytest.mark.parametrize("vectorise", [True, False])
def test_width_mismatches(vectorise, toy_classification, toy_regression):
    x, y = toy_classification
    config = TrainConfig(members=2, epochs=1, vectorise=vectorise)
    with pytest.raises(InvalidInputError, match="does not accept inputs of width 5"):
        train_ensemble(mlp_factory(4, 3), x, y, config)
    xr, yr = toy_regression
    # the MLP fast path would have trained a 3-output regression net silently; the probe stops it first
    with pytest.raises(InvalidInputError, match="regression network must output 2 values"):
        train_ensemble(mlp_factory(1, 3), xr, yr, config)
    with pytest.raises(InvalidInputError, match=r"must output 1 value \(the mean; noise_std is fixed\)"):
        train_ensemble(mlp_factory(1, 2), xr, yr, config, noise_std=0.1)


def test_probabilities_versus_logits_in_metrics():
    logits = torch.tensor([[[2.0, -1.0, 0.5]], [[0.0, 1.0, 3.0]]])
    labels = torch.tensor([2])
    log_probs = torch.log_softmax(logits, -1)
    assert ensemble_nll(log_probs, labels) > 0
    with pytest.raises(InvalidInputError, match="holds probabilities where log-probabilities are expected"):
        ensemble_nll(log_probs.exp(), labels)
    with pytest.raises(InvalidInputError, match="apply log_softmax"):
        ensemble_nll(logits, labels)
    probs = log_probs.exp()[0]
    assert total_variation(probs, probs) == 0.0
    with pytest.raises(InvalidInputError, match="apply softmax to logits first"):
        total_variation(logits[0], probs)
    with pytest.raises(InvalidInputError, match="apply softmax to logits first"):
        total_variation(probs, log_probs[1])


def test_gaussian_nll_rejects_negative_or_non_finite_variances():
    mean, target = torch.zeros(3), torch.ones(3)
    assert gaussian_nll(mean, torch.ones(3), target) == pytest.approx(
        0.5 * (torch.log(torch.tensor(2 * torch.pi)).item() + 1)
    )
    with pytest.raises(InvalidInputError, match="`variance` must be finite and > 0"):
        gaussian_nll(mean, torch.tensor([1.0, -0.5, 1.0]), target)
    with pytest.raises(InvalidInputError, match="`variance` must be finite and > 0"):
        gaussian_nll(mean, torch.tensor([1.0, float("nan"), 1.0]), target)
    with pytest.raises(InvalidInputError, match="same shape"):
        gaussian_nll(mean, torch.ones(2), target)


def test_checkpoint_of_another_factory(toy_classification, tmp_path):
    x, y = toy_classification
    ens = train_ensemble(mlp_factory(5, 3, (8,)), x, y, TrainConfig(members=2, epochs=1), checkpoint_dir=tmp_path)
    assert DeepEnsemble.load(tmp_path, mlp_factory(5, 3, (8,)), "classification").num_members == ens.num_members
    with pytest.raises(InvalidInputError, match=r"do not fit this model factory \(parameter\(s\) net.0.bias"):
        DeepEnsemble.load(tmp_path, mlp_factory(5, 3, (16,)), "classification")


def test_ece_with_float64_confidences_on_bin_edges_agrees_with_torchmetrics():
    """Confidences k/15 in float64 sit on torchmetrics' float32 bin edges; both must bin them alike."""
    n_bins, k = 15, 3
    conf = torch.tensor([j / n_bins for j in range(6, n_bins + 1)] * 4, dtype=torch.float64)
    rest = (1 - conf) / (k - 1)
    probs = torch.stack([conf, rest, rest], 1)
    correct = torch.rand(len(conf), generator=torch.Generator().manual_seed(0)) < 0.5
    labels = torch.where(correct, 0, 1)  # the prediction is always class 0
    edges64 = torch.linspace(0, 1, n_bins + 1, dtype=torch.float64)
    edges32 = torch.linspace(0, 1, n_bins + 1)
    moved = torch.bucketize(conf, edges64, right=True) != torch.bucketize(conf.float(), edges32, right=True)
    assert bool(moved.any()), "the case must put some confidences in another bin under float64 binning"
    ours = calibration_error(probs, labels, n_bins=n_bins)
    theirs = float(multiclass_calibration_error(probs, labels, num_classes=k, n_bins=n_bins, norm="l1"))
    assert ours == pytest.approx(theirs, abs=1e-6)
