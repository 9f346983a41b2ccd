"""Reference §7 checks of the paper's math: recall (5 captions), ties, mixup, loss, temperature, adapters, LR."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from fusemix.adapters import AdapterConfig, FusionAdapter, FusionModel, count_parameters
from fusemix.captions import clean_caption
from fusemix.loss import Temperature, symmetric_infonce
from fusemix.mixup import fusemix, mix_halves, mixup_alpha, sample_lambda
from fusemix.optim import learning_rate, parameter_groups
from fusemix.recall_metrics import chance_recall, ranks_from_similarity, recall_at_k, retrieval_metrics, retrieval_ranks


def _sim_from_orders(orders: list[list[int]], n_txt: int) -> torch.Tensor:
    sim = torch.zeros(len(orders), n_txt)
    for i, order in enumerate(orders):
        assert sorted(order) == list(range(n_txt))
        for position, caption in enumerate(order):
            sim[i, caption] = float(n_txt - position)
    return sim


def _hand_case() -> tuple[torch.Tensor, torch.Tensor]:
    rest = list(range(15))
    order0 = [2, 0, 1] + rest[3:]  # image 0: own caption 2 first
    order1 = [0, 1, 2, 7, 3, 4, 5, 6, 8, 9] + rest[10:]  # image 1: first own caption (7) at rank 3
    # image 2: none of 10-14 in the top 10. (Reference §7.1 says "first own at rank 12", impossible with only ten
    # foreign captions; rank 10 is the furthest it can be, and R@10 is the same.)
    order2 = rest
    return _sim_from_orders([order0, order1, order2], 15), torch.arange(15) // 5


def _positive_matrix_recall(sim: np.ndarray, positive: np.ndarray, k: int) -> float:
    # CLIP_benchmark-style, written independently: a query hits when >= 1 positive is in its top K
    # (float64, stable descending sort: equal scores keep the lower gallery index first).
    hits = []
    for q in range(sim.shape[0]):
        order = np.argsort(-sim[q], kind="stable")[:k]
        hits.append(positive[q, order].any())
    return 100.0 * float(np.mean(hits))


def test_recall_five_captions_hand_case() -> None:
    sim, txt2item = _hand_case()
    item_ranks, text_ranks = ranks_from_similarity(sim, txt2item)
    assert item_ranks.tolist() == [0, 3, 10]
    i2t = recall_at_k(item_ranks)
    assert i2t[1] == pytest.approx(100 / 3) and i2t[5] == pytest.approx(200 / 3) and i2t[10] == pytest.approx(200 / 3)
    # t->i uses sim.T; per-caption ranks computed by hand (ties: lower image index first)
    assert text_ranks.tolist() == [2, 2, 0, 0, 0, 2, 2, 0, 1, 1, 2, 2, 2, 2, 2]
    t2i = recall_at_k(text_ranks)
    assert t2i[1] == pytest.approx(400 / 15) and t2i[5] == 100.0
    positive = (txt2item[None, :] == torch.arange(3)[:, None]).numpy()
    for k in (1, 5, 10):
        assert i2t[k] == pytest.approx(_positive_matrix_recall(sim.double().numpy(), positive, k))
        assert t2i[k] == pytest.approx(_positive_matrix_recall(sim.T.double().numpy(), positive.T, k))


@pytest.mark.parametrize("chunk", [1, 7, 1024])
def test_recall_matches_positive_matrix_on_random_data(chunk: int) -> None:
    g = torch.Generator().manual_seed(0)
    n_items = 40
    counts = torch.randint(1, 7, (n_items,), generator=g)  # uneven: 1-6 captions per item (COCO has >5)
    txt2item = torch.repeat_interleave(torch.arange(n_items), counts)
    txt2item = txt2item[torch.randperm(txt2item.numel(), generator=g)]  # captions not grouped by item
    items = torch.nn.functional.normalize(torch.randn(n_items, 16, generator=g), dim=1)
    texts = torch.nn.functional.normalize(items[txt2item] + 0.9 * torch.randn(txt2item.numel(), 16, generator=g), dim=1)
    item_ranks, text_ranks = retrieval_ranks(items, texts, txt2item, chunk_size=chunk)
    sim = (items.double() @ texts.double().T).numpy()
    positive = (txt2item[None, :] == torch.arange(n_items)[:, None]).numpy()
    for k in (1, 5, 10):
        assert recall_at_k(item_ranks, [k])[k] == pytest.approx(_positive_matrix_recall(sim, positive, k))
        assert recall_at_k(text_ranks, [k])[k] == pytest.approx(_positive_matrix_recall(sim.T, positive.T, k))


def test_ties_and_large_k() -> None:
    sim = torch.zeros(2, 6)  # all-equal rows
    txt2item = torch.tensor([0, 0, 0, 1, 1, 1])
    item_ranks, text_ranks = ranks_from_similarity(sim, txt2item)
    assert item_ranks.tolist() == [0, 3]  # lower index wins: item 1's first own caption (3) sits behind 0, 1, 2
    assert text_ranks.tolist() == [0, 0, 0, 1, 1, 1]
    metrics = retrieval_metrics(item_ranks, text_ranks, ks=(6, 100))
    assert metrics["i2t_r6"] == 100.0 and metrics["t2i_r100"] == 100.0


def test_diagonal_shortcut_differs_from_lavis_rule() -> None:
    # The trap: duplicate each image per caption and score 1:1 on the diagonal (open_clip's get_clip_metrics).
    sim, txt2item = _hand_case()
    dup = sim[txt2item]  # 15 x 15, row j = image of caption j
    diagonal_ranks = torch.tensor([int((dup[j] > dup[j, j]).sum()) for j in range(15)])
    diagonal_r1 = recall_at_k(diagonal_ranks, [1])[1]
    lavis_r1 = recall_at_k(ranks_from_similarity(sim, txt2item)[0], [1])[1]
    assert lavis_r1 == pytest.approx(100 / 3)
    assert diagonal_r1 == pytest.approx(100 / 15)  # only caption 2 is top of its own row
    assert diagonal_r1 != pytest.approx(lavis_r1)


def test_item_without_caption_is_named() -> None:
    with pytest.raises(ValueError, match="item 1 has no caption"):
        ranks_from_similarity(torch.zeros(3, 4), torch.tensor([0, 0, 2, 2]))


def test_chance_levels_closed_form() -> None:
    txt2item = torch.arange(20) // 5  # 4 items x 5 captions
    chance = chance_recall(txt2item, 4, ks=(1, 5))
    assert chance["t2i"][1] == pytest.approx(25.0)
    assert chance["i2t"][1] == pytest.approx(25.0)  # 5 of 20 captions are own
    assert chance["i2t"][5] == pytest.approx(100 * (1 - math.comb(15, 5) / math.comb(20, 5)))


# ---------------------------------------------------------------- mixup


def test_mixup_endpoints_shapes_and_odd_batch() -> None:
    z = torch.arange(12.0).reshape(6, 2)
    assert torch.equal(mix_halves(z, 1.0), z[:3])
    assert torch.equal(mix_halves(z, 0.0), z[3:])
    with pytest.raises(ValueError, match="even loaded batch"):
        mix_halves(z[:5], 0.5)
    with pytest.raises(ValueError, match="even loaded batch"):
        fusemix(z[:5], z[:5], 1.0, torch.Generator().manual_seed(0))


def test_mixup_shares_lambda_and_partner_and_stays_in_hull() -> None:
    g = torch.Generator().manual_seed(3)
    zx, zy = torch.randn(8, 5, generator=g), torch.randn(8, 3, generator=g)
    out = fusemix(zx, zy, 1.0, torch.Generator().manual_seed(11))
    lam = out.lam
    assert out.x.shape == (4, 5) and out.y.shape == (4, 3)
    torch.testing.assert_close(out.x, lam * zx[:4] + (1 - lam) * zx[4:])
    torch.testing.assert_close(out.y, lam * zy[:4] + (1 - lam) * zy[4:])
    low, high = torch.minimum(zx[:4], zx[4:]), torch.maximum(zx[:4], zx[4:])
    assert bool(((out.x >= low - 1e-6) & (out.x <= high + 1e-6)).all())
    again = fusemix(zx, zy, 1.0, torch.Generator().manual_seed(11))
    assert again.lam == lam


@pytest.mark.parametrize("alpha, var", [(1.0, 1 / 12), (2.0, 1 / 20), (0.5, 1 / 8)])
def test_lambda_distribution(alpha: float, var: float) -> None:
    g = torch.Generator().manual_seed(0)
    draws = np.array([sample_lambda(alpha, g) for _ in range(10_000)])
    assert draws.mean() == pytest.approx(0.5, abs=0.01)
    assert draws.var() == pytest.approx(var, abs=0.005)  # Beta(a, a): 1 / (4 (2a + 1))
    assert ((draws >= 0) & (draws <= 1)).all()


def test_alpha_schedules() -> None:
    assert mixup_alpha(7, 10) == 1.0
    assert mixup_alpha(0, 10, init=0.2, final=1.0, kind="cosine") == pytest.approx(0.2)
    assert mixup_alpha(5, 10, init=0.2, final=1.0, kind="cosine") == pytest.approx(0.6)
    assert mixup_alpha(10, 10, init=0.2, final=1.0, kind="exp") == pytest.approx(1.0)
    assert mixup_alpha(5, 10, init=0.25, final=1.0, kind="exp") == pytest.approx(0.5)
    with pytest.raises(ValueError, match="alpha schedule"):
        mixup_alpha(0, 1, kind="linear")


# ---------------------------------------------------------------- loss and temperature


def _numpy_infonce(x: np.ndarray, y: np.ndarray, tau: float) -> float:
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    y = y / np.linalg.norm(y, axis=1, keepdims=True)
    logits = x @ y.T / tau

    def ce(m: np.ndarray) -> float:
        mx = m.max(axis=1, keepdims=True)
        lse = (mx + np.log(np.exp(m - mx).sum(axis=1, keepdims=True)))[:, 0]
        return float(np.mean(lse - np.diag(m)))

    return 0.5 * (ce(logits) + ce(logits.T))


def test_loss_against_float64_numpy_symmetry_and_scale() -> None:
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(6, 4, generator=g, dtype=torch.float64), torch.randn(6, 4, generator=g, dtype=torch.float64)
    loss = symmetric_infonce(x, y, 0.1)
    assert float(loss) == pytest.approx(_numpy_infonce(x.numpy(), y.numpy(), 0.1), rel=1e-10)
    assert float(symmetric_infonce(y, x, 0.1)) == pytest.approx(float(loss), rel=1e-12)
    assert float(symmetric_infonce(3.0 * x, 0.2 * y, 0.1)) == pytest.approx(float(loss), rel=1e-10)


def test_loss_limits_and_temperature_gradient() -> None:
    e = torch.eye(8)
    assert float(symmetric_infonce(e, e, 1e-3)) < 1e-6
    same = torch.ones(8, 4)
    assert float(symmetric_infonce(same, same, 0.07)) == pytest.approx(math.log(8), rel=1e-6)
    temperature = Temperature()
    x = torch.randn(5, 3, generator=torch.Generator().manual_seed(0))
    symmetric_infonce(x, x.flip(0), temperature()).backward()
    assert temperature.value.grad is not None and float(temperature.value.grad) != 0.0


def test_temperature_init_clamp_and_no_decay() -> None:
    model = FusionModel(AdapterConfig(4, 2, 1, dropout=0.0), AdapterConfig(3, 2, 1, dropout=0.0))
    assert float(model.temperature().detach()) == pytest.approx(0.07)
    with torch.no_grad():
        model.temperature.value.fill_(1.0)
    assert float(model.temperature().detach()) == 0.5
    with torch.no_grad():
        model.temperature.value.fill_(1e-5)
    assert float(model.temperature().detach()) == pytest.approx(1e-3)
    decay, no_decay = parameter_groups(model, 0.1)
    assert any(p is model.temperature.value for p in no_decay["params"])
    assert all(p.ndim >= 2 for p in decay["params"]) and all(p.ndim < 2 for p in no_decay["params"])
    assert no_decay["weight_decay"] == 0.0 and decay["weight_decay"] == 0.1


# ---------------------------------------------------------------- adapters


def test_adapter_parameter_count_paper_config() -> None:
    with torch.device("meta"):
        adapter = FusionAdapter(AdapterConfig(in_dim=1536, out_dim=512, depth=4, expansion=4, dropout=0.6))
    assert count_parameters(adapter) == 76_330_496  # reference §7.7, derived by hand: 4(8d^2 + 7d) + 2d + 512(d + 1)


def test_adapter_shapes_eval_determinism_and_bad_input() -> None:
    torch.manual_seed(0)
    adapter = FusionAdapter(AdapterConfig(in_dim=24, out_dim=8, depth=2, expansion=4, dropout=0.6))
    z = torch.randn(5, 24)
    adapter.eval()
    assert adapter(z).shape == (5, 8)
    torch.testing.assert_close(adapter(z), adapter(z))
    adapter.train()
    assert not torch.allclose(adapter(z), adapter(z))  # dropout active in training
    with pytest.raises(ValueError, match=r"shape \(B, 24\)"):
        adapter(torch.randn(5, 23))


# ---------------------------------------------------------------- captions and schedule


def test_caption_cleaning() -> None:
    assert clean_caption("A Dog, (running)!  on grass.") == "a dog, running on grass"
    assert clean_caption('x~y;z:"w"#*') == "x y z w"
    long = " ".join(f"w{i}" for i in range(60))
    assert clean_caption(long).split() == [f"w{i}" for i in range(50)]
    assert clean_caption("  ...  ") == ""


def test_learning_rate_schedule() -> None:
    assert learning_rate(0, 0) == pytest.approx(1e-6)
    assert learning_rate(50, 0) == pytest.approx(1e-6 + (1e-3 - 1e-6) * 0.5)
    assert learning_rate(100, 0) == pytest.approx(1e-3)
    assert learning_rate(250 * 122, 250) == pytest.approx(1e-6 + (1e-3 - 1e-6) / 2)  # ~5.0e-4
    last = learning_rate(499 * 122, 499)
    assert 1e-6 < last < 1.01e-6
    # step mode: warm-up then cosine over steps, reaching min_lr at the end
    assert learning_rate(10, 5, warmup_steps=20, total_steps=120) == pytest.approx(1e-6 + (1e-3 - 1e-6) * 0.5)
    assert learning_rate(70, 9, warmup_steps=20, total_steps=120) == pytest.approx(1e-6 + (1e-3 - 1e-6) / 2)
    assert learning_rate(120, 9, warmup_steps=20, total_steps=120) == pytest.approx(1e-6)
