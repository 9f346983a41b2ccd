"""Vectorised (stacked members) vs sequential training of M members on scikit-learn digits, and vs torch-uncertainty.

Same process, same data, same member seeds, one torch thread on every side (pass --threads 1). For each M it times:

* ``mlp``: our vectorised path with closed-form MLP gradients, against the sequential loop (plain PyTorch);
* ``generic``: our generic vectorised path (vmap forward + one backward; any module) on a module the MLP fast path
  does not recognise (Linear → Tanh → Linear inside a custom class), against the loop on the same module;
* ``torch_uncertainty`` (when ``torch_uncertainty`` imports): its ``deep_ensembles`` wrapper trained the way its
  classification routine does (all members' logits concatenated, one Adam over every parameter, the same minibatch
  for every member), against our vectorised path on the same MLP.

Prints one JSON line per (case, M): both times, their ratio (peer / ours: the speed-up) and, against the loop, the
largest parameter difference. Goal from the issue: ≥ 4x at M = 10 for every case.
"""

from __future__ import annotations

import argparse
import json
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


REPEATS = 3


def _time(factory, data, config, device, **kwargs) -> tuple[float, object]:
    """Best of REPEATS runs (the machine is shared: the minimum is the least disturbed run)."""
    best, ens = float("inf"), None
    for _ in range(REPEATS):
        start = time.perf_counter()
        ens = train_ensemble(factory, data.x_train, data.y_train, config, device=device, **kwargs)
        best = min(best, time.perf_counter() - start)
    return best, ens


def _torch_uncertainty_seconds(factory, data, members: int, epochs: int, batch: int) -> float | None:
    try:
        from torch_uncertainty.methods import deep_ensembles
    except ImportError:
        return None
    model = deep_ensembles([init_member(factory, 0, m) for m in range(members)], reset_model_parameters=False)
    n = data.x_train.shape[0]
    best = float("inf")
    for _ in range(REPEATS):
        optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
        start = time.perf_counter()
        _tu_epochs(model, optimiser, data, members, epochs, batch, n)
        best = min(best, time.perf_counter() - start)
    return best


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
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--hidden", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: leave as is)")
    parser.add_argument("--repeats", type=int, default=3, help="timings are the best of this many runs")
    args = parser.parse_args()
    global REPEATS
    REPEATS = args.repeats
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    data = load_dataset("digits", seed=0)
    mlp = mlp_factory(data.in_features, data.num_classes, (args.hidden,))

    def tanh_net() -> TanhNet:
        return TanhNet(data.in_features, args.hidden, data.num_classes)

    for factory in (mlp, tanh_net):  # imports and first-call costs, outside the timings
        warm = TrainConfig(members=2, epochs=1, batch_size=args.batch_size)
        _time(factory, data, warm, args.device)
        warm.vectorise = False
        _time(factory, data, warm, args.device)
    for m in (int(v) for v in args.members.split(",")):
        config = TrainConfig(members=m, epochs=args.epochs, batch_size=args.batch_size, seed=0)
        loop_config = TrainConfig(members=m, epochs=args.epochs, batch_size=args.batch_size, seed=0, vectorise=False)
        common = {"members": m, "epochs": args.epochs, "batch_size": args.batch_size, "hidden": args.hidden}
        common |= {
            "n_train": int(data.x_train.shape[0]),
            "device": args.device,
            "torch_threads": torch.get_num_threads(),
        }
        cases = []
        ours_s, ours = _time(mlp, data, config, args.device)
        peer_s, peer = _time(mlp, data, loop_config, args.device)
        cases.append(
            ("mlp", "vectorised, closed-form MLP gradients", "sequential loop", ours_s, peer_s, _diff(ours, peer))
        )
        g_s, g = _time(tanh_net, data, config, args.device)
        gl_s, gl = _time(tanh_net, data, loop_config, args.device)
        cases.append(("generic", "vectorised, vmap forward + one backward", "sequential loop", g_s, gl_s, _diff(g, gl)))
        tu_s = _torch_uncertainty_seconds(mlp, data, m, args.epochs, args.batch_size)
        if tu_s is not None:
            cases.append(
                (
                    "torch_uncertainty",
                    "vectorised, closed-form MLP gradients",
                    "torch_uncertainty deep_ensembles",
                    ours_s,
                    tu_s,
                    None,
                )
            )
        for case, ours_name, peer_name, o, p, diff in cases:
            record = {"case": case, **common, "ours": ours_name, "peer": peer_name}
            record |= {
                "ours_s": round(o, 4),
                "peer_s": round(p, 4),
                "ratio": round(p / o, 2),
                "max_abs_param_diff": diff,
            }
            print(json.dumps(record), flush=True)


if __name__ == "__main__":
    main()
