"""Training subsets: greedy k-DPP against brute-force enumeration, uniform draws, and the data-efficiency curve."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from fusemix.cli import app
from fusemix.subsample import choose_items, greedy_kdpp, log_det_subset
from sixlab_shared import UserError

runner = CliRunner()


def _kernel(latents: np.ndarray) -> np.ndarray:
    unit = latents / np.linalg.norm(latents, axis=1, keepdims=True)
    return (unit @ unit.T + 1.0) ** 2  # float64, built independently of the code under test


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_each_greedy_step_is_the_brute_force_argmax(seed: int) -> None:
    rng = np.random.default_rng(seed)
    latents = rng.normal(size=(9, 4))
    kernel = _kernel(latents)
    chosen = greedy_kdpp(torch.from_numpy(latents).float(), 5)
    assert len(set(chosen)) == 5
    for step in range(5):
        before = chosen[:step]
        dets = {
            i: np.linalg.det(kernel[np.ix_(before + [i], before + [i])]) for i in range(9) if i not in before
        }  # every candidate's determinant, enumerated
        # the chosen candidate has the largest determinant (up to rounding: at step 0 every L_ii is 4)
        assert dets[chosen[step]] >= max(dets.values()) * (1 - 1e-9), (step, dets)


def test_greedy_against_the_exact_map_by_enumeration() -> None:
    rng = np.random.default_rng(3)
    ratios = []
    for _ in range(5):
        latents = rng.normal(size=(10, 3))
        kernel = _kernel(latents)
        best = max(np.linalg.slogdet(kernel[np.ix_(s, s)])[1] for s in map(list, itertools.combinations(range(10), 4)))
        chosen = greedy_kdpp(torch.from_numpy(latents), 4)
        greedy = np.linalg.slogdet(kernel[np.ix_(chosen, chosen)])[1]
        assert greedy <= best + 1e-9
        assert log_det_subset(torch.from_numpy(latents), chosen) == pytest.approx(greedy, abs=1e-8)
        ratios.append(greedy - best)
    # greedy MAP is an approximation: on these draws it stays within 1 nat of the exact optimum
    assert min(ratios) > -1.0


def test_kdpp_prefers_diverse_items_over_uniform() -> None:
    # 4 tight clusters of 25: a 4-item k-DPP takes one from each, a uniform draw rarely does
    rng = np.random.default_rng(0)
    centres = np.eye(4) * 5
    latents = np.concatenate([c + rng.normal(0, 0.1, (25, 4)) for c in centres])
    chosen = choose_items("kdpp-item", 100, 4, seed=0, item_latents=torch.from_numpy(latents).float())
    assert sorted(int(i) // 25 for i in chosen) == [0, 1, 2, 3]
    uniform = choose_items("uniform", 100, 4, seed=0)
    assert uniform.tolist() == sorted(uniform.tolist()) and len(set(uniform.tolist())) == 4
    assert not torch.equal(uniform, choose_items("uniform", 100, 4, seed=1))
    # kdpp-text pools each item's captions first: two captions per item, identical clusters
    texts = torch.from_numpy(np.repeat(latents, 2, axis=0)).float()
    txt2item = torch.arange(100).repeat_interleave(2)
    by_text = choose_items("kdpp-text", 100, 4, seed=0, text_latents=texts, txt2item=txt2item)
    assert sorted(int(i) // 25 for i in by_text) == [0, 1, 2, 3]


def test_bad_subsample_settings() -> None:
    with pytest.raises(UserError, match="--subsample must be one of uniform, kdpp-item, kdpp-text"):
        choose_items("dpp", 10, 2, seed=0)
    with pytest.raises(UserError, match="--train-items 11 must be between 1 and the 10"):
        choose_items("uniform", 10, 11, seed=0)
    with pytest.raises(ValueError, match="k must be in"):
        greedy_kdpp(torch.zeros(3, 2), 0)


def test_curve_fast_writes_json_and_png(tmp_path) -> None:
    out = tmp_path / "curve"
    result = runner.invoke(app, ["curve", "--fast", "--out", str(out), "--size", "10", "--size", "20",
                                 "--subsample", "uniform", "--subsample", "kdpp-item", "--steps", "6"])  # fmt: skip
    assert result.exit_code == 0, result.output + str(result.exception)
    summary = json.loads((out / "summary.json").read_text())
    keys = {(r["size"], r["method"], r["subsample"]) for r in summary["rows"]}
    assert keys == {(s, m, k) for s in (10, 20) for m in ("fusemix", "no-mixup") for k in ("uniform", "kdpp-item")}
    assert (out / "curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "kdpp-item" in result.stdout
    bad = runner.invoke(app, ["curve", "--fast", "--out", str(tmp_path / "b"), "--subsample", "dpp"])
    assert bad.exit_code == 2 and "--subsample must be one of" in bad.stderr and not (tmp_path / "b").exists()
