"""End-to-end jobs behind the CLI verbs (importable; ``cli.py`` only maps options onto them).

The ``bnpo rl`` job and its table rows live with the downstream runs, :func:`bnpo.downstream.rl_job` and
:func:`bnpo.downstream.rl_rows`, and the whole-pipeline demo in :mod:`bnpo.demo` (all importable from here too).

Each job validates everything it can before writing anything, then writes its outputs atomically.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

import gymnasium as gym

from bnpo import metrics
from bnpo.compile.fit import fit_compile, load_any_model
from bnpo.data import Dataset, collect, load_dataset
from bnpo.downstream import rl_job, rl_rows  # rl_job, rl_rows: re-exported (they lived here)
from bnpo.envs import BABYAI_ENV_IDS, ENV_IDS, make_expert
from bnpo.fit import (
    ROOM_PRESET,
    FitConfig,
    checkpoint_file,
    evaluate,
    fit,
    split_windows,
    training_batches,
)
from bnpo.plots import plot_segmentation, plot_training
from sixlab_shared import RunDir, UserError, atomic_write_json, get_device, require_output_file, seeded

logger = logging.getLogger(__name__)


def _output_folder(out: str | os.PathLike[str]) -> Path:
    """``out`` as a folder to write into; a path that exists and is not a folder is a user error."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {str(out)!r} exists and is not a folder; choose another path")
    return out


def _n_rooms(dataset: Dataset) -> int | None:
    return dataset.n_actions - 1 if dataset.env_id.startswith("bnpo/Room") else None


def load_policy(spec: str, env: gym.Env, seed: int):
    """The policy named by ``spec`` = ``module:callable`` (the current folder is importable too).

    The callable is the policy itself, ``policy(observation, info) -> action``, unless its first parameter is named
    ``env``: then it is a factory, called as ``callable(env, seed=seed)``, that returns the policy.

    Raises:
        UserError: the module cannot be imported, has no such attribute, or it is not callable.
    """
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise UserError(f"--policy {spec!r}: expected module:callable, e.g. mypolicies:greedy")
    added = os.getcwd() not in sys.path
    if added:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise UserError(f"--policy {spec!r}: cannot import module {module_name!r} ({err})") from err
    finally:
        if added:
            sys.path.remove(os.getcwd())
    target: Any = module
    for part in attribute.split("."):
        if not hasattr(target, part):
            raise UserError(f"--policy {spec!r}: module {module_name!r} has no attribute {attribute!r}")
        target = getattr(target, part)
    if not callable(target):
        raise UserError(f"--policy {spec!r}: {attribute!r} is not callable")
    try:
        first = next(iter(inspect.signature(target).parameters), None)
    except (TypeError, ValueError):
        first = None
    return target(env, seed=seed) if first == "env" else target


def collect_job(
    env_id: str,
    out: str | os.PathLike[str],
    *,
    episodes: int = 1000,
    policy: str = "expert",
    epsilon: float | None = None,
    max_steps: int | None = None,
    env_kwargs: dict[str, Any] | None = None,
    seed: int = 0,
    overwrite: bool = False,
) -> Dataset:
    """Collect ``episodes`` trajectories of ``env_id`` with the scripted expert (bnpo envs), a random policy, or a
    policy given as ``module:callable`` (see :func:`load_policy`).

    Raises:
        UserError: unknown env, no expert for it, a bad count, or ``out`` exists without ``overwrite``.
    """
    out = Path(out)
    if episodes < 1:
        raise UserError(f"--episodes must be >= 1, got {episodes}")
    if epsilon is not None and not 0.0 <= epsilon <= 1.0:
        raise UserError(f"--epsilon must be a probability in [0, 1], got {epsilon}")
    if max_steps is not None and max_steps < 1:
        raise UserError(f"--max-steps must be >= 1, got {max_steps}")
    require_output_file(out, overwrite=overwrite, what="--out")
    if policy not in ("expert", "random") and ":" not in policy:
        raise UserError(f"--policy must be 'expert', 'random' or module:callable, got {policy!r}")
    if out.suffix != ".npz":
        raise UserError(f"--out must end in .npz, got {str(out)!r}")
    try:
        env = gym.make(env_id, **(env_kwargs or {}))
    except (gym.error.Error, TypeError, ValueError) as err:
        raise UserError(f"cannot make environment {env_id!r}: {err}") from err
    if ":" in policy:
        actor = load_policy(policy, env, seed)
    elif policy == "expert":
        if env_id not in ENV_IDS and env_id not in BABYAI_ENV_IDS:
            known = ", ".join([*ENV_IDS, *BABYAI_ENV_IDS])
            raise UserError(
                f"no scripted expert for {env_id!r}; pass --policy random or module:callable, or use {known}"
            )
        actor = make_expert(env, epsilon=epsilon, seed=seed)
    else:
        env.action_space.seed(seed)
        actor = lambda obs, info: env.action_space.sample()  # noqa: E731
    dataset = collect(env, actor, episodes, seed=seed, max_steps=max_steps, env_id=env_id)
    out.parent.mkdir(parents=True, exist_ok=True)
    dataset.save(out)
    return dataset


def fit_job(
    data: str | os.PathLike[str],
    out: str | os.PathLike[str],
    config: FitConfig,
    *,
    device: str | None = None,
    resume: bool = False,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Load data, fit, evaluate (all and held-out), write config, metrics, checkpoint, summary and training.png.

    ``config.method`` picks the model: ``bnpo`` (:func:`bnpo.fit.fit`) or ``compile`` (CompILE / NP-CompILE,
    :func:`bnpo.compile.fit_compile`); both give the same scores, outputs and checkpoint layout.

    ``resume`` continues the run in ``out`` from its checkpoint (rows of ``metrics.jsonl`` after the checkpoint are
    cut first); ``overwrite`` replaces a finished run there.

    Returns:
        the summary dict (also in ``summary.json``).

    Raises:
        UserError: bad data, bad options, an existing run without ``resume``, or a mismatching checkpoint.
    """
    dataset = load_dataset(data)
    windows = training_batches(dataset, config)  # validates lengths before anything is written
    train_index, _ = split_windows(windows["episode"], config.holdout_fraction, config.seed)
    if len(train_index) == 0:
        raise UserError(
            f"the training split is empty ({dataset.n_episodes} episodes, --holdout "
            f"{config.holdout_fraction}); lower --holdout or collect more episodes"
        )
    torch_device = get_device(device)
    _output_folder(out)
    run = RunDir(out, resume=resume, overwrite=overwrite, flags=("--resume", "--overwrite"))
    if resume:
        previous = FitConfig.from_dict(run.read_config().get("fit"), f"{str(Path(out) / 'config.json')!r}")
        changed = [
            f"{f.name} {getattr(previous, f.name)!r} -> {getattr(config, f.name)!r}"
            for f in dataclasses.fields(FitConfig)
            if f.name != "epochs" and getattr(previous, f.name) != getattr(config, f.name)
        ]
        if changed:
            raise UserError(
                "--resume needs the original run's fit options (only --epochs may change); "
                f"changed: {', '.join(changed)}"
            )
    else:
        run.write_config({"fit": dataclasses.asdict(config), "data": str(data)}, seed=config.seed, device=torch_device)
    train = fit_compile if config.method == "compile" else fit
    with seeded(config.seed):  # the library's own generators are explicit; this guards third-party draws only
        result = train(dataset, config, run=run, resume=resume, device=torch_device)
    model = result.model
    summary: dict[str, Any] = {
        "method": _method_name(config),
        "train_seconds": round(result.seconds, 2),
        "epochs": config.epochs,
    }
    summary["all"] = evaluate(model, windows, n_rooms=_n_rooms(dataset))
    if len(result.heldout_index):
        held = {key: value[result.heldout_index] for key, value in windows.items()}  # whole held-out episodes
        summary["heldout"] = {
            k: v for k, v in evaluate(model, held).items() if k in ("loglik_per_traj", "loglik_per_step")
        }
        summary["heldout"]["n_trajectories"] = len(result.heldout_index)
    if result.selection:
        summary["restarts"] = result.selection
    run.write_summary(summary)
    plot_training(run.file("training.png"), result.history)
    return summary


PRESETS: dict[str, dict[str, Any]] = {"room": ROOM_PRESET}
"""Named FitConfig recipes for ``bnpo fit --preset``."""


def apply_preset(config: FitConfig, preset: str | None) -> FitConfig:
    """``config`` with the fields of the named preset applied where ``config`` still holds the FitConfig default
    (so options given explicitly with a non-default value win).

    Raises:
        UserError: unknown preset name.
    """
    if preset is None:
        return config
    if preset not in PRESETS:
        raise UserError(f"--preset must be one of {', '.join(PRESETS)}, got {preset!r}")
    defaults = FitConfig()
    changes = {key: value for key, value in PRESETS[preset].items() if getattr(config, key) == getattr(defaults, key)}
    return dataclasses.replace(config, **changes)


def _method_name(config: FitConfig) -> str:
    """``BNPO``, ``fixed-K BNPO``, ``CompILE`` or ``NP-CompILE``."""
    if config.method == "compile":
        return "NP-CompILE" if config.nonparametric else "CompILE"
    return "BNPO" if config.nonparametric else "fixed-K BNPO"


def _load_for_model(
    model_path: str | os.PathLike[str],
    data: str | os.PathLike[str],
    seq_len: int | None,
    device: str | None = None,
    padding: bool = False,
):
    model_file = checkpoint_file(model_path)
    if not model_file.is_file():
        raise UserError(f"model {str(model_path)!r} is neither a checkpoint nor a run directory holding one")
    dataset = load_dataset(data)
    model = load_any_model(model_file, device=get_device(device))
    if model.config.obs_dim != dataset.obs_dim or model.config.n_actions != dataset.n_actions:
        raise UserError(
            f"the model expects obs_dim={model.config.obs_dim}, n_actions={model.config.n_actions} but the data has "
            f"obs_dim={dataset.obs_dim}, n_actions={dataset.n_actions}"
        )
    return model, dataset, dataset.padded() if padding else dataset.windows(seq_len)


def _refuse_existing(out: Path, names: tuple[str, ...], overwrite: bool) -> None:
    existing = [name for name in names if (out / name).exists()]
    if existing and not overwrite:
        raise UserError(f"--out {str(out)!r} already holds {', '.join(existing)}; pass --overwrite or choose another")


def evaluate_job(
    model_path: str | os.PathLike[str],
    data: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    seq_len=None,
    overwrite: bool = False,
    device: str | None = None,
    padding: bool = False,
) -> dict[str, Any]:
    """Scores of a saved model on a dataset, written to ``out/evaluation.json`` (replaced only with ``overwrite``);
    ``padding`` scores whole padded episodes instead of windows."""
    out = _output_folder(out)
    _refuse_existing(out, ("evaluation.json",), overwrite)
    model, dataset, windows = _load_for_model(model_path, data, seq_len, device, padding)
    result = evaluate(model, windows, n_rooms=_n_rooms(dataset))
    Path(out).mkdir(parents=True, exist_ok=True)
    atomic_write_json(Path(out) / "evaluation.json", result)
    return result


def segment_job(
    model_path: str | os.PathLike[str],
    data: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    n_plot: int = 12,
    seq_len: int | None = None,
    overwrite: bool = False,
    device: str | None = None,
    padding: bool = False,
) -> dict[str, Any]:
    """Segmentation of every trajectory (Viterbi for BNPO, the encoder's argmax for CompILE): ``segments.json``
    (options, boundaries) and ``segmentation.png``
    (replaced only with ``overwrite``); ``padding`` segments whole episodes (lists cut to each episode's length)."""
    if n_plot < 1:
        raise UserError(f"--n-plot must be >= 1, got {n_plot}")
    out = _output_folder(out)
    _refuse_existing(out, ("segments.json", "segmentation.png"), overwrite)
    model, _, windows = _load_for_model(model_path, data, seq_len, device, padding)
    mask = windows.get("mask")
    options, boundaries = model.segment(
        windows["states"].to(model.device),
        windows["actions"].to(model.device),
        None if mask is None else mask.to(model.device),
    )
    options, boundaries = options.cpu().numpy(), boundaries.cpu().numpy()
    lengths = mask.sum(1).tolist() if mask is not None else [options.shape[1]] * options.shape[0]
    truth = windows["options"].numpy() if "options" in windows else None
    mapping = metrics.hungarian_accuracy(options, truth)[1] if truth is not None else None
    Path(out).mkdir(parents=True, exist_ok=True)
    atomic_write_json(
        Path(out) / "segments.json",
        {
            "options": [row[:n].tolist() for row, n in zip(options, lengths, strict=True)],
            "boundaries": [row[:n].tolist() for row, n in zip(boundaries, lengths, strict=True)],
        },
    )
    plot_segmentation(
        Path(out) / "segmentation.png",
        options[:n_plot],
        truth[:n_plot] if truth is not None else None,
        mapping=mapping,
        title=f"K = {model.n_options}",
    )
    return {"n_trajectories": int(options.shape[0]), "K": model.n_options, "mapping": mapping}


def summary_rows(summary: dict[str, Any]) -> list[tuple[str, str]]:
    """(name, value) rows of the CLI's result table."""
    rows = [("method", summary["method"])] if "method" in summary else []
    scores = summary.get("all", summary)
    for key in ("K", "used_options", "room_score", "rooms_covered", "accuracy", "boundary_f1", "loglik_per_step"):
        if key in scores:
            value = scores[key]
            rows.append((key, f"{value:.4f}" if isinstance(value, float) else str(value)))
    if "heldout" in summary:
        rows.append(("heldout_loglik_per_step", f"{summary['heldout']['loglik_per_step']:.4f}"))
    if "restarts" in summary:
        chosen = next(r for r in summary["restarts"] if r["selected"])
        rows.append(("restart_kept", f"{chosen['restart']} of {len(summary['restarts'])}"))
    if "train_seconds" in summary:
        rows.append(("train_seconds", f"{summary['train_seconds']:.1f}"))
    if "usage" in scores:
        rows.append(("usage", json.dumps(scores["usage"])))
    if "downstream" in summary:
        rows += [(k, v) for k, v in rl_rows(summary["downstream"]) if k.startswith("auc")]
    return rows


def format_table(rows: list[tuple[str, str]]) -> str:
    """A two-column plain-text table."""
    width = max(len(name) for name, _ in rows) if rows else 0
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


def __getattr__(name: str) -> Any:
    """``demo_job``, ``DEMOS``, ``DEMO_RL`` and ``DEMO_RL_FAST`` moved to :mod:`bnpo.demo` (it imports this module,
    so they are re-exported lazily)."""
    if name in ("demo_job", "DEMOS", "DEMO_RL", "DEMO_RL_FAST"):
        from bnpo import demo

        return getattr(demo, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "collect_job",
    "evaluate_job",
    "apply_preset",
    "fit_job",
    "format_table",
    "rl_job",
    "rl_rows",
    "segment_job",
    "summary_rows",
]
