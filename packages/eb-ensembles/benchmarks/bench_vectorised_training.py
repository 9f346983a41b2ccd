"""Vectorised (stacked members) vs sequential training of M members on scikit-learn digits, and vs torch-uncertainty.

Same process, same data, same member seeds, one torch thread on every side (pass --threads 1). For each M it times:

* ``mlp``: our vectorised path with closed-form MLP gradients, against the sequential loop (plain PyTorch);
* ``generic``: our generic vectorised path (any module: vmap forward, closed-form loss gradient, one backward,
  recorded once per minibatch shape with ``make_fx`` and replayed) on a module the MLP fast path does not recognise
  (Linear → Tanh → Linear inside a custom class), against the loop on the same module;
* ``torch_uncertainty`` (when ``torch_uncertainty`` imports): its ``deep_ensembles`` wrapper trained the way its
  classification routine does (all members' logits concatenated, one Adam over every parameter, the same minibatch
  for every member), against our vectorised path on the same MLP.

Prints one JSON line per (case, M): both times (the median of ``--repeats`` runs; in every repeat each side runs
once, one right after the other, so both see the same machine load), their ratio (peer / ours: the speed-up),
the ratio of every repeat and, against the loop, the largest parameter difference. Goal from the issue: ≥ 4x at
M = 10 for every case.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
from torch import nn

from eb_ensembles.data import load_dataset
from eb_ensembles.models import mlp_factory
from eb_ensembles.training.config import TrainConfig
from eb_ensembles.training.likelihood import member_loss
from eb_ensembles.training.members import epoch_order, init_member
from eb_ensembles.training.train import train_ensemble


class TanhNet(nn.Module):
    """A module outside the MLP fast path: it goes through the generic vectorised path."""

    def __init__(self, d: int = 64, hidden: int = 100, k: int = 10) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(d, hidden), nn.Tanh())
        self.head = nn.Linear(hidden, k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


def _train(factory, data, config, device):
    return train_ensemble(factory, data.x_train, data.y_train, config, device=device)


def _seconds(fn) -> tuple[float, object]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def _side_by_side(ours, peer, repeats: int) -> tuple[list[float], list[float], object, object]:
    """Run ``ours`` and ``peer`` alternately ``repeats`` times; their timings and last results."""
    ours_t, peer_t, a, b = [], [], None, None
    for _ in range(repeats):
        t, a = _seconds(ours)
        ours_t.append(t)
        t, b = _seconds(peer)
        peer_t.append(t)
    return ours_t, peer_t, a, b


def _torch_uncertainty_runner(factory, data, members: int, epochs: int, batch: int):
    try:
        from torch_uncertainty.methods import deep_ensembles
    except ImportError:
        return None
    n = data.x_train.shape[0]

    def run():
        model = deep_ensembles([init_member(factory, 0, m) for m in range(members)], reset_model_parameters=False)
        optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
        _tu_epochs(model, optimiser, data, members, epochs, batch, n)

    return run


def _tu_epochs(model, optimiser, data, members: int, epochs: int, batch: int, n: int) -> None:
    for epoch in range(epochs):
        order = epoch_order(0, 0, epoch, n, torch.device("cpu"))
        for step in range(-(-n // batch)):
            idx = order[step * batch : (step + 1) * batch]
            logits = model(data.x_train[idx])  # (M·B, K)
            loss = member_loss("classification", logits, data.y_train[idx].repeat(members))
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()


def _diff(a, b) -> float:
    return max(float((sa[k] - sb[k]).abs().max()) for sa, sb in zip(a.states, b.states, strict=True) for k in sa)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--members", default="2,5,10,20", help="comma-separated ensemble sizes")
    parser.add_argument("--epochs", type=int, default=30, help="default: TrainConfig's (30)")
    parser.add_argument("--hidden", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: leave as is)")
    parser.add_argument("--repeats", type=int, default=3, help="timings are the median of this many runs")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    data = load_dataset("digits", seed=0)
    mlp = mlp_factory(data.in_features, data.num_classes, (args.hidden,))

    def tanh_net() -> TanhNet:
        return TanhNet(data.in_features, args.hidden, data.num_classes)

    for factory in (mlp, tanh_net):  # imports and first-call costs (the recorder's included), outside the timings
        warm = TrainConfig(members=2, epochs=3, batch_size=args.batch_size)
        _train(factory, data, warm, args.device)
        warm.vectorise = False
        _train(factory, data, warm, args.device)
    for m in (int(v) for v in args.members.split(",")):
        config = TrainConfig(members=m, epochs=args.epochs, batch_size=args.batch_size, seed=0)
        loop_config = TrainConfig(members=m, epochs=args.epochs, batch_size=args.batch_size, seed=0, vectorise=False)
        common = {"members": m, "epochs": args.epochs, "batch_size": args.batch_size, "hidden": args.hidden}
        common |= {
            "n_train": int(data.x_train.shape[0]),
            "device": args.device,
            "torch_threads": torch.get_num_threads(),
            "repeats": args.repeats,
        }
        runs = {
            "mlp": (
                "vectorised, closed-form MLP gradients",
                "sequential loop",
                lambda config=config: _train(mlp, data, config, args.device),
                lambda config=loop_config: _train(mlp, data, config, args.device),
                True,
            ),
            "generic": (
                "vectorised, vmap forward + one backward, recorded with make_fx",
                "sequential loop",
                lambda config=config: _train(tanh_net, data, config, args.device),
                lambda config=loop_config: _train(tanh_net, data, config, args.device),
                True,
            ),
        }
        tu = _torch_uncertainty_runner(mlp, data, m, args.epochs, args.batch_size)
        if tu is not None:
            runs["torch_uncertainty"] = (
                "vectorised, closed-form MLP gradients",
                "torch_uncertainty deep_ensembles",
                lambda config=config: _train(mlp, data, config, args.device),
                tu,
                False,
            )
        for case, (ours_name, peer_name, ours, peer, compare) in runs.items():
            ours_t, peer_t, a, b = _side_by_side(ours, peer, args.repeats)
            o, p = statistics.median(ours_t), statistics.median(peer_t)
            record = {"case": case, **common, "ours": ours_name, "peer": peer_name}
            record |= {
                "ours_s": round(o, 4),
                "peer_s": round(p, 4),
                "ratio": round(p / o, 2),
                "ratio_each_repeat": [round(pt / ot, 2) for ot, pt in zip(ours_t, peer_t, strict=True)],
                "max_abs_param_diff": _diff(a, b) if compare else None,
            }
            print(json.dumps(record), flush=True)


if __name__ == "__main__":
    main()
