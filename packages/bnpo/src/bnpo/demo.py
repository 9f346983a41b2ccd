"""``bnpo demo``: the whole pipeline on Room(6) or Landmarks, collect, fit, evaluate, segment, then a short
downstream comparison (SMDP PPO with and without the learned options), built from the per-verb jobs of
:mod:`bnpo.workflows`."""

from __future__ import annotations

import os
from typing import Any

from bnpo.downstream import DownstreamConfig
from bnpo.fit import ROOM_PRESET, FitConfig, checkpoint_file, load_model
from bnpo.plots import plot_downstream
from bnpo.workflows import _output_folder, collect_job, fit_job, segment_job
from sixlab_shared import RunDir, UserError, atomic_write_json, get_device

DEMOS = {
    "room": {
        "env": "bnpo/Room-v0",
        "env_kwargs": {"n_rooms": 6},
        "episodes": 1000,
        "epochs": 500,
        "fit": ROOM_PRESET,  # exact objective + split trials: 10 of 10 seeds on Room(6) (README)
        "downstream": "bnpo/Room-v0",  # the goal is shown only in the first state: an option must carry it
    },
    "landmarks": {
        "env": "bnpo/Landmarks-v0",
        "env_kwargs": {},
        "episodes": 1000,
        "epochs": 500,
        "fit": {"batch_size": 64, "objective": "exact", "entropy_decay": 0.99},  # relaxed fails here (README)
        "downstream": "bnpo/LandmarksGoal-v0",
    },
}
DEMO_RL = {"seeds": 3, "steps": 5000}
DEMO_RL_FAST = {"seeds": 2, "steps": 400}


def demo_job(
    out: str | os.PathLike[str],
    *,
    env: str = "room",
    fast: bool = False,
    seed: int = 0,
    device: str | None = None,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Collect expert data, fit nonparametrically, evaluate, draw the segmentation and training figures, then a
    short downstream comparison: SMDP PPO with and without the learned options (``downstream.png``,
    ``downstream.json``) on Room itself or on LandmarksGoal.

    ``fast`` shrinks everything (Room(3), 100 episodes, 12 epochs, 2 x 400-step RL runs) so it finishes in seconds.

    Returns:
        the summary dict.

    Raises:
        UserError: unknown ``env`` or ``out`` already holds a run.
    """
    from bnpo.downstream import compare

    if env not in DEMOS:
        raise UserError(f"--env must be one of {', '.join(DEMOS)}, got {env!r}")
    spec = dict(DEMOS[env])
    if fast:
        spec.update(episodes=100, epochs=12)
        if env == "room":
            spec["env_kwargs"] = {"n_rooms": 3}
    out = _output_folder(out)
    if (out / "config.json").exists() and not overwrite:
        raise UserError(f"{str(out)!r} already holds a run; pass --overwrite to replace it, or choose another --out")
    get_device(device)  # before anything is written
    out.mkdir(parents=True, exist_ok=True)
    data_path = out / "data.npz"
    collect_job(
        spec["env"], data_path, episodes=spec["episodes"], env_kwargs=spec["env_kwargs"], seed=seed, overwrite=True
    )
    config = FitConfig(nonparametric=True, epochs=spec["epochs"], seed=seed, **spec.get("fit", {}))
    summary = fit_job(data_path, out, config, device=device, overwrite=overwrite)
    segment_job(out, data_path, out, overwrite=True)
    summary["demo"] = {"env": spec["env"], "env_kwargs": spec["env_kwargs"], "episodes": spec["episodes"]}
    rl = DEMO_RL_FAST if fast else DEMO_RL
    rl_config = DownstreamConfig(steps=rl["steps"], seeds=list(range(seed, seed + rl["seeds"])))
    rl_kwargs = spec["env_kwargs"] if spec["downstream"] == spec["env"] else {}
    model = load_model(checkpoint_file(out))
    result = compare(spec["downstream"], model, rl_config, env_kwargs=rl_kwargs, device=device)
    atomic_write_json(out / "downstream.json", result)
    plot_downstream(out / "downstream.png", result)
    summary["downstream"] = {"env": spec["downstream"], "seeds": rl_config.seeds, "steps": rl_config.steps}
    for condition in ("options", "primitive"):
        summary["downstream"][condition] = {k: result[condition][k] for k in ("auc", "auc_mean", "auc_std")}
    RunDir(out, resume=True).write_summary(summary)
    return summary


__all__ = ["DEMOS", "DEMO_RL", "DEMO_RL_FAST", "demo_job"]
