"""Downstream studies: SMDP PPO with options learned offline from expert data, with primitive actions only, and with
the options of an untrained model of the same size (control), over seeds, in parallel processes.

    OMP_NUM_THREADS=1 python benchmarks/downstream_study.py taxi --seeds 0 1 2 3 4 --steps 100000 --jobs 2 --out taxi
    python benchmarks/downstream_study.py taxi --probe --model taxi/model.safetensors   # where each option drives

Studies (``STUDIES``):

* ``taxi``: options fitted on ``bnpo/TaxiHidden-v0`` shortest-path expert episodes (the README's Taxi recipe: fixed
  K = 4, exact objective over whole padded episodes, batch 64, entropy decay 0.99, 150 epochs), RL on the same env.
* ``unlock``: options fitted on BabyAI-bot episodes of ``bnpo/BabyAI-UnlockLocal-v0`` (the BabyAI recipe, 100
  epochs), RL on the same level without the bot, 64-step limit.
* ``unlockdist-from-unlock``: the same options (fitted on UnlockLocal), RL on the harder
  ``bnpo/BabyAI-UnlockLocalDist-v0`` (the same task with distractor objects in the room), 64-step limit.
* ``gotoobj12-from-gotoobj``: options fitted on GoToObj (8x8 room), RL on GoToObj in a 12x12 room (the object
  is often out of the 7x7 view), 40-step limit.
* ``unlock-from-gotoobj``: options fitted on BabyAI-bot episodes of ``bnpo/BabyAI-GoToObj-v0`` (the GoToObj study's
  recipe), RL on the harder ``bnpo/BabyAI-UnlockLocal-v0`` (pick up the key, open the door) without the bot.

Steps: collect ``--episodes`` expert episodes (seed 0), fit, then one SMDP PPO run per (condition, seed), ``--jobs``
processes at a time, one thread each. Writes ``model.safetensors``, ``fit.json``, ``downstream_<study>.json``
(:func:`bnpo.downstream.compare`'s layout, every condition, plus ``fit``) and ``downstream_<study>.png``, and prints
the AUC table (mean ± std, per seed).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import gymnasium as gym
import numpy as np

CONDITIONS = ("options", "primitive", "untrained_options")
BABYAI_FIT = {"objective": "exact", "padding": True, "batch_size": 64, "entropy_decay": 0.99, "epochs": 100}
STUDIES = {
    "taxi": {
        "data_env": "bnpo/TaxiHidden-v0",
        "fit": {"k": 4, "objective": "exact", "padding": True, "batch_size": 64, "entropy_decay": 0.99, "epochs": 150},
        "rl_env": "bnpo/TaxiHidden-v0",
        "env_kwargs": {},
    },
    "unlock": {
        "data_env": "bnpo/BabyAI-UnlockLocal-v0",
        "fit": BABYAI_FIT,
        "rl_env": "bnpo/BabyAI-UnlockLocal-v0",
        "env_kwargs": {"expert": False, "max_steps": 64},
    },
    "unlockdist-from-unlock": {
        "data_env": "bnpo/BabyAI-UnlockLocal-v0",
        "fit": BABYAI_FIT,
        "rl_env": "bnpo/BabyAI-UnlockLocalDist-v0",
        "env_kwargs": {"expert": False, "max_steps": 64},
    },
    "gotoobj12-from-gotoobj": {
        "data_env": "bnpo/BabyAI-GoToObj-v0",
        "fit": BABYAI_FIT,
        "rl_env": "bnpo/BabyAI-GoToObj-v0",
        "env_kwargs": {"expert": False, "room_size": 12, "max_steps": 40},
    },
    "unlock-from-gotoobj": {
        "data_env": "bnpo/BabyAI-GoToObj-v0",
        "fit": BABYAI_FIT,  # nonparametric (no "k")
        "rl_env": "bnpo/BabyAI-UnlockLocal-v0",
        "env_kwargs": {"expert": False, "max_steps": 64},
    },
}


def fit_options(out: Path, name: str, *, episodes: int = 1000, seed: int = 0) -> dict:
    """Collect expert data of the study's ``data_env``, fit, save ``out/model.safetensors``; returns the fit's scores
    (K, usage, accuracy and boundary F1 against the expert's labels, exact log-likelihood per step)."""
    import bnpo

    spec = STUDIES[name]
    settings = dict(spec["fit"])
    k = settings.pop("k", None)
    env = gym.make(spec["data_env"])
    data = bnpo.collect(env, bnpo.make_expert(env, seed=seed), episodes, seed=seed, env_id=spec["data_env"])
    config = bnpo.FitConfig(nonparametric=k is None, k=k or 3, seed=seed, **settings)
    result = bnpo.fit(data, config)
    scores = bnpo.evaluate(result.model, data.padded() if config.padding else data.windows())
    out.mkdir(parents=True, exist_ok=True)
    bnpo.save_model(out / "model.safetensors", result.model)
    summary = {key: scores[key] for key in ("K", "used_options", "usage", "accuracy", "boundary_f1", "loglik_per_step")}
    summary.update(data_env=spec["data_env"], episodes=episodes, seed=seed, fit=spec["fit"])
    summary["train_seconds"] = round(result.seconds, 1)
    (out / "fit.json").write_text(json.dumps(summary, indent=1))
    return summary


def run_cell(condition: str, seed: int, model_path: str, rl: dict, env_id: str, env_kwargs: dict) -> dict:
    """One SMDP PPO run (:func:`bnpo.downstream.train_agent`) of ``condition`` with ``DownstreamConfig(**rl)``."""
    from sixlab_shared import set_threads

    set_threads(1)
    import bnpo
    from bnpo.downstream import DownstreamConfig, train_agent, untrained_like

    model = None
    if condition != "primitive":
        model = bnpo.load_model(model_path)
        if condition == "untrained_options":
            model = untrained_like(model)
    config = DownstreamConfig(**{**rl, "seeds": [seed]})
    run = train_agent(env_id, model, seed, config, env_kwargs=env_kwargs)
    run["condition"] = condition
    return run


def assemble(runs: list[dict], rl: dict, env_id: str, env_kwargs: dict, fit: dict | None = None) -> dict:
    """The runs in :func:`bnpo.downstream.compare`'s layout, one entry per condition (seeds in order)."""
    result: dict = {"env": env_id, "env_kwargs": env_kwargs, "config": rl}
    for condition in CONDITIONS:
        mine = sorted((r for r in runs if r["condition"] == condition), key=lambda r: r["seed"])
        if not mine:
            continue
        aucs = np.array([r["auc"] for r in mine])
        result[condition] = {
            "runs": mine,
            "auc": aucs.tolist(),
            "auc_mean": float(aucs.mean()),
            "auc_std": float(aucs.std()),
        }
    if fit is not None:
        result["fit"] = fit
    return result


def late_episodes(run: dict, fraction: float = 0.1) -> dict:
    """Mean length (primitive steps), return and success of the episodes ending in the last ``fraction`` of a
    run's primitive-step budget."""
    episodes = np.array(run["episodes"], dtype=float).reshape(-1, 5)
    late = episodes[episodes[:, 0] > (1 - fraction) * run["primitive_steps"]]
    if len(late) == 0:
        return {"episodes": 0}
    return {
        "episodes": len(late),
        "length": late[:, 2].mean(),
        "return": late[:, 3].mean(),
        "success": late[:, 4].mean(),
    }


def taxi_option_ends(model_path: str | Path, episodes: int = 200, option_steps: int = 15) -> dict[int, dict]:
    """Where each learned option takes the taxi from the state right after the expert's pick-up (episodes seeded
    1000, 1001, ...): per option, how many calls ended at each stand R, G, Y, B, elsewhere (beta fired or the cap
    on the way), or by delivering the passenger (Taxi's termination)."""
    import bnpo
    from bnpo.options import OptionsWrapper

    model = bnpo.load_model(model_path)
    env = OptionsWrapper(gym.make("bnpo/TaxiHidden-v0"), model, option_steps=option_steps)
    locs = [tuple(loc) for loc in env.unwrapped.taxi.locs]
    ends = {k: dict.fromkeys(["R", "G", "Y", "B", "elsewhere", "delivered"], 0) for k in range(model.n_options)}
    for k in range(model.n_options):
        for episode in range(episodes):
            obs, info = env.reset(seed=1000 + episode)
            expert = bnpo.make_expert(env, seed=episode)
            while obs[2] != 4:  # until the passenger is in the taxi
                obs, _, _, _, info = env.step(expert(obs, info))
            obs, _, terminated, _, _ = env.step(env.unwrapped.action_space.n + k)
            cell = (int(obs[0]), int(obs[1]))
            name = "delivered" if terminated else "RGYB"[locs.index(cell)] if cell in locs else "elsewhere"
            ends[k][name] += 1
    return ends


def table(result: dict) -> str:
    """AUC mean ± std and per seed, one line per condition, and the last 10% of each run's episodes."""
    lines = []
    for condition in CONDITIONS:
        if condition not in result:
            continue
        part = result[condition]
        per_seed = ", ".join(f"{a:.3f}" for a in part["auc"])
        lines.append(f"{condition:<18} AUC {part['auc_mean']:.3f} ± {part['auc_std']:.3f}   [{per_seed}]")
        late = [late_episodes(run) for run in part["runs"]]
        for key in ("success", "length", "return"):
            values = ", ".join(f"{x[key]:.2f}" if x["episodes"] else "-" for x in late)
            lines.append(f"{'':<18} last 10% of steps, {key}: [{values}]")
    return "\n".join(lines)


def study(
    out: Path,
    name: str,
    seeds: list[int],
    rl: dict,
    *,
    jobs: int = 2,
    conditions: tuple[str, ...] = CONDITIONS,
    env_kwargs: dict | None = None,
    model_path: Path | None = None,
    episodes: int = 1000,
) -> dict:
    """Fit (unless ``model_path`` is given), run every (condition, seed), write the JSON and PNG; returns the
    assembled result."""
    from bnpo.plots import plot_downstream

    spec = STUDIES[name]
    env_kwargs = spec["env_kwargs"] if env_kwargs is None else env_kwargs
    out.mkdir(parents=True, exist_ok=True)
    fit = None
    if model_path is None:
        fit = fit_options(out, name, episodes=episodes)
        model_path = out / "model.safetensors"
        print("fit:", json.dumps(fit), flush=True)
    cells = [(c, s) for s in seeds for c in conditions]
    started = time.perf_counter()
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        futures = [pool.submit(run_cell, c, s, str(model_path), rl, spec["rl_env"], env_kwargs) for c, s in cells]
        runs = [f.result() for f in futures]
    for run in runs:
        print(f"{run['condition']} seed {run['seed']}: AUC {run['auc']:.3f} ({run['seconds']:.0f} s)")
    result = assemble(runs, rl, spec["rl_env"], env_kwargs, fit)
    result["seconds"] = round(time.perf_counter() - started, 1)
    stem = f"downstream_{name.replace('-', '_')}"
    (out / f"{stem}.json").write_text(json.dumps(result))
    plot_downstream(out / f"{stem}.png", result)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("study", choices=list(STUDIES))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--steps", type=int, default=100_000, help="primitive steps per run")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--conditions", nargs="+", default=list(CONDITIONS), choices=CONDITIONS)
    parser.add_argument("--model", type=Path, default=None, help="reuse a fitted model instead of fitting")
    parser.add_argument("--episodes", type=int, default=1000)
    parser.add_argument("--option-steps", type=int, default=15)
    parser.add_argument("--env-kwargs", default=None, help="JSON keyword arguments for gym.make (RL env)")
    parser.add_argument("--out", type=Path, default=None, help="output folder (required unless --probe)")
    parser.add_argument("--probe", action="store_true", help="taxi: only print where each option of --model ends")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    if args.probe:
        for k, ends in taxi_option_ends(args.model, option_steps=args.option_steps).items():
            print(f"option {k}: {ends}")
        return
    if args.out is None:
        parser.error("--out is required")
    rl = {"steps": args.steps, "option_steps": args.option_steps}
    result = study(
        args.out,
        args.study,
        args.seeds,
        rl,
        jobs=args.jobs,
        conditions=tuple(args.conditions),
        env_kwargs=None if args.env_kwargs is None else json.loads(args.env_kwargs),
        model_path=args.model,
        episodes=args.episodes,
    )
    print(table(result))
    print(f"{result['seconds']:.0f} s for the RL runs; wrote the JSON and PNG to {args.out}")


if __name__ == "__main__":
    main()
