"""CompILE epoch time: the encoder of this package (``bnpo.compile.masked_lstm``: input projection shared by the
segments, the masked recurrence in one autograd node) against the ``nn.LSTMCell`` loop it replaced (the public
code's ``masked_encode``: one cell call per step and segment, autograd through every step), side by side.

Both run the same fit (``fit_compile``, the compare_compile.py settings, seed 0) in one process, one thread,
alternating ``--rounds`` times; the figure is CPU seconds per epoch (``time.process_time``), so the load of other
processes on a shared machine inflates both sides alike. It also prints the largest difference between the two
fits' per-epoch losses (the same maths, other float rounding). Usage (from the workspace root):

    OMP_NUM_THREADS=1 uv run --no-sync python packages/bnpo/benchmarks/bench_compile_epoch.py --epochs 5 --rounds 2
"""

from __future__ import annotations

import argparse
import contextlib
import time

import torch

ENVS = {
    "Room(6)": ("bnpo/Room-v0", {"n_rooms": 6}, 1000, 128),
    "Landmarks": ("bnpo/Landmarks-v0", {}, 300, 64),
}


def cell_loop(embedded: torch.Tensor, mask: torch.Tensor | None, cell: torch.nn.LSTMCell) -> torch.Tensor:
    """The replaced encoder recurrence: (B, T, H) inputs -> (B, T, H), the cell's state times the mask per step."""
    batch, steps, h = embedded.shape
    hx, cx = embedded.new_zeros(batch, h), embedded.new_zeros(batch, h)
    outputs = []
    for t in range(steps):
        hx, cx = cell(embedded[:, t], (hx, cx))
        if mask is not None:
            hx, cx = hx * mask[:, t, None], cx * mask[:, t, None]
        outputs.append(hx)
    return torch.stack(outputs, dim=1)


@contextlib.contextmanager
def cell_loop_encoder():
    """Swap the model's encoder recurrence for :func:`cell_loop` (the per-step ``nn.LSTMCell``) while inside."""
    from bnpo.compile import model as compile_model

    cells: dict[str, torch.nn.LSTMCell] = {}

    def inputs(embedded, lstm):  # the cell loop projects the inputs itself, step by step
        cells["cell"] = lstm
        return embedded

    saved = compile_model.input_gates, compile_model.masked_lstm
    compile_model.input_gates = inputs
    compile_model.masked_lstm = lambda embedded, mask, _weight: cell_loop(embedded, mask, cells["cell"])
    try:
        yield
    finally:
        compile_model.input_gates, compile_model.masked_lstm = saved


def main() -> None:
    import gymnasium as gym

    import bnpo
    from bnpo.compile import fit_compile
    from bnpo.fit_config import FitConfig

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--envs", nargs="+", default=list(ENVS), choices=list(ENVS))
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(1)
    for name in args.envs:
        env_id, kwargs, episodes, batch = ENVS[name]
        env = gym.make(env_id, **kwargs)
        data = bnpo.collect(env, bnpo.make_expert(env, seed=0), episodes, seed=0, env_id=env_id)
        config = FitConfig(
            method="compile", k=7, epochs=args.epochs, batch_size=batch, tau_decay=1.0, seed=0, holdout_fraction=0.1
        )
        seconds: dict[str, list[float]] = {"cell loop": [], "masked_lstm": []}
        losses = {}
        for _ in range(args.rounds):
            for side in seconds:
                context = cell_loop_encoder() if side == "cell loop" else contextlib.nullcontext()
                with context:
                    started = time.process_time()
                    result = fit_compile(data, config)
                    seconds[side].append((time.process_time() - started) / args.epochs)
                losses[side] = [row["loss/total"] for row in result.history]
        gap = max(abs(a - b) for a, b in zip(losses["cell loop"], losses["masked_lstm"], strict=True))
        old, new = min(seconds["cell loop"]), min(seconds["masked_lstm"])
        print(
            f"{name}: CPU s/epoch cell loop {old:.3f} (rounds {[round(s, 3) for s in seconds['cell loop']]}), "
            f"masked_lstm {new:.3f} (rounds {[round(s, 3) for s in seconds['masked_lstm']]}): {old / new:.2f}x; "
            f"largest per-epoch loss difference {gap:.2e}",
            flush=True,
        )


if __name__ == "__main__":
    main()
