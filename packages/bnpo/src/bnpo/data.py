"""Expert datasets: the ``.npz`` schema, its validation on load, the collector, and fixed-length batches.

Schema of a bnpo dataset (``numpy.savez``; S = total number of steps over all episodes):

=================  ===============  =========================================================================
key                shape, dtype     meaning
=================  ===============  =========================================================================
``observations``   (S, D) float32   flattened observation s_t (``gymnasium.spaces.flatten``; one-hot for
                                    Discrete / MultiDiscrete), finite
``actions``        (S,) int64       discrete action a_t in [0, n_actions)   -- or (S, A) float32 if continuous
``episode_starts`` (S,) bool        True at the first step of each episode (``episode_starts[0]`` is True)
``n_actions``      () int64         number of discrete actions (the action dimension A if continuous)
``continuous``     () bool          whether actions are continuous
``options``        (S,) int64       optional: ground-truth option of each step (>= 0)
``env_id``         () str           optional: where the data came from
=================  ===============  =========================================================================
"""

from __future__ import annotations

import io
import logging
import os
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from sixlab_shared import UserError, atomic_write_bytes

logger = logging.getLogger(__name__)

REQUIRED_KEYS = ("observations", "actions", "episode_starts", "n_actions", "continuous")


class DatasetError(UserError):
    """A dataset file or array does not follow the bnpo schema."""


@dataclass
class Dataset:
    """Expert trajectories in the flat bnpo schema (see the module docstring)."""

    observations: np.ndarray
    actions: np.ndarray
    episode_starts: np.ndarray
    n_actions: int
    continuous: bool = False
    options: np.ndarray | None = None
    env_id: str = ""

    def __post_init__(self) -> None:
        self.validate()

    @property
    def obs_dim(self) -> int:
        """D."""
        return int(self.observations.shape[1])

    @property
    def n_episodes(self) -> int:
        """Number of episodes."""
        return int(self.episode_starts.sum())

    def validate(self, source: str = "dataset") -> None:
        """Check the schema; raise :class:`DatasetError` naming the field otherwise."""
        obs, actions, starts = self.observations, self.actions, self.episode_starts
        if not isinstance(obs, np.ndarray) or obs.ndim != 2 or obs.shape[0] == 0:
            raise DatasetError(f"{source}: 'observations' must be a non-empty (S, D) array, got shape {_shape(obs)}")
        steps = obs.shape[0]
        if not np.issubdtype(obs.dtype, np.number):
            raise DatasetError(f"{source}: 'observations' must be numeric, got dtype {obs.dtype}")
        if not np.isfinite(obs).all():
            bad = int(np.argwhere(~np.isfinite(obs))[0, 0])
            raise DatasetError(f"{source}: 'observations' holds NaN or inf (first at step {bad}); clean the data")
        if self.n_actions < 1:
            raise DatasetError(f"{source}: 'n_actions' must be >= 1, got {self.n_actions}")
        if self.continuous:
            if not isinstance(actions, np.ndarray) or actions.shape != (steps, self.n_actions):
                raise DatasetError(
                    f"{source}: continuous 'actions' must have shape ({steps}, {self.n_actions}), got {_shape(actions)}"
                )
            if not np.isfinite(actions).all():
                raise DatasetError(f"{source}: 'actions' holds NaN or inf")
        else:
            if not isinstance(actions, np.ndarray) or actions.shape != (steps,):
                raise DatasetError(f"{source}: 'actions' must have shape ({steps},), got {_shape(actions)}")
            if not np.issubdtype(actions.dtype, np.integer):
                raise DatasetError(f"{source}: discrete 'actions' must be integers, got dtype {actions.dtype}")
            if actions.min() < 0 or actions.max() >= self.n_actions:
                raise DatasetError(
                    f"{source}: 'actions' must lie in [0, {self.n_actions}) (n_actions), "
                    f"got values in [{actions.min()}, {actions.max()}]"
                )
        if not isinstance(starts, np.ndarray) or starts.shape != (steps,) or starts.dtype != np.bool_:
            raise DatasetError(f"{source}: 'episode_starts' must be a ({steps},) bool array, got {_shape(starts)}")
        if not starts[0]:
            raise DatasetError(f"{source}: 'episode_starts[0]' must be True (the data must begin an episode)")
        if self.options is not None:
            opts = self.options
            if not isinstance(opts, np.ndarray) or opts.shape != (steps,) or not np.issubdtype(opts.dtype, np.integer):
                raise DatasetError(f"{source}: 'options' must be a ({steps},) integer array, got {_shape(opts)}")
            if opts.min() < 0:
                raise DatasetError(f"{source}: 'options' must be >= 0, got minimum {opts.min()}")

    def episode_bounds(self) -> list[tuple[int, int]]:
        """(start, end) step indices of every episode."""
        starts = np.flatnonzero(self.episode_starts).tolist()
        ends = [*starts[1:], len(self.episode_starts)]
        return list(zip(starts, ends, strict=True))

    def episode_lengths(self) -> np.ndarray:
        """(n_episodes,) lengths."""
        return np.array([end - start for start, end in self.episode_bounds()])

    def windows(self, seq_len: int | None = None, stride: int | None = None) -> dict[str, torch.Tensor]:
        """Every episode cut into windows of ``seq_len`` steps that together cover all of its steps.

        Each episode of length L >= T gives windows starting at 0, stride, 2 stride, ... and, when the last of these
        does not reach the episode's end, one more window ending exactly at L (so no step is ever dropped; with
        ``stride < T`` the windows overlap). Equal-length episodes with the default T give one window each, the
        episode itself. A window that starts inside an episode is modelled as starting a new option (b_0 = 1), the
        approximation overlapping windows make (see the README).

        Args:
            seq_len: T; defaults to the shortest episode's length.
            stride: steps between window starts (default T: adjacent windows, the last one aligned to the end).

        Returns:
            dict with ``states`` (N, T, D) float32, ``actions`` (N, T) int64 or (N, T, A) float32, ``episode`` (N,)
            int64 (the window's episode), ``start`` (N,) int64 (its first step within the episode), and ``options``
            (N, T) int64 when ground truth is present.

        Raises:
            DatasetError: ``seq_len`` < 2, ``stride`` outside [1, T], or some episode is shorter than ``seq_len``.

        Example:
            >>> import numpy as np
            >>> data = Dataset(np.zeros((7, 1), np.float32), np.zeros(7, np.int64),
            ...                np.array([1, 0, 0, 0, 0, 1, 0], bool), n_actions=1)
            >>> w = data.windows(2)  # episodes of 5 and 2 steps
            >>> w["episode"].tolist(), w["start"].tolist()
            ([0, 0, 0, 1], [0, 2, 3, 0])
        """
        lengths = self.episode_lengths()
        if seq_len is None:
            seq_len = int(lengths.min())
        if seq_len < 2:
            raise DatasetError(f"seq_len must be >= 2 steps (the model needs transitions), got {seq_len}")
        stride = seq_len if stride is None else stride
        if not 1 <= stride <= seq_len:
            raise DatasetError(
                f"the window stride must be between 1 and seq_len={seq_len} steps (a longer stride would skip steps), "
                f"got {stride}"
            )
        short = int((lengths < seq_len).sum())
        if short:
            raise DatasetError(
                f"{short} of {len(lengths)} episodes are shorter than seq_len={seq_len} steps "
                f"(shortest {int(lengths.min())}); pass a smaller --seq-len or drop short episodes"
            )
        episodes, starts, first = [], [], []
        for episode, (begin, end) in enumerate(self.episode_bounds()):
            offsets = list(range(0, end - begin - seq_len + 1, stride))
            if offsets[-1] + seq_len < end - begin:
                offsets.append(end - begin - seq_len)
            episodes += [episode] * len(offsets)
            starts += offsets
            first += [begin + offset for offset in offsets]
        index = np.asarray(first)[:, None] + np.arange(seq_len)[None, :]
        out = {
            "states": torch.as_tensor(self.observations[index], dtype=torch.float32),
            "actions": torch.as_tensor(self.actions[index], dtype=torch.float32 if self.continuous else torch.int64),
            "episode": torch.as_tensor(episodes, dtype=torch.int64),
            "start": torch.as_tensor(starts, dtype=torch.int64),
        }
        if self.options is not None:
            out["options"] = torch.as_tensor(self.options[index], dtype=torch.int64)
        return out

    def padded(self) -> dict[str, torch.Tensor]:
        """Every episode whole, padded at the end to the longest one, with a mask of the real steps.

        Padded steps repeat the episode's last step (states, actions, options), so padding never looks like an
        option boundary; models given the ``mask`` ignore them (``OptionModel.log_likelihood(..., mask)``).

        Returns:
            dict with ``states`` (N, T_max, D) float32, ``actions`` (N, T_max) int64 or (N, T_max, A) float32,
            ``mask`` (N, T_max) bool, ``episode`` (N,) = 0..N-1, ``start`` (N,) zeros, and ``options`` (N, T_max)
            int64 with ground truth.

        Example:
            >>> import numpy as np
            >>> data = Dataset(np.arange(5, dtype=np.float32)[:, None], np.zeros(5, np.int64),
            ...                np.array([1, 0, 0, 1, 0], bool), n_actions=1)
            >>> p = data.padded()
            >>> p["states"][..., 0].tolist(), p["mask"].tolist()
            ([[0.0, 1.0, 2.0], [3.0, 4.0, 4.0]], [[True, True, True], [True, True, False]])
        """
        bounds = self.episode_bounds()
        longest = max(end - begin for begin, end in bounds)
        index = np.stack([np.minimum(np.arange(begin, begin + longest), end - 1) for begin, end in bounds])
        mask = np.stack([np.arange(longest) < end - begin for begin, end in bounds])
        out = {
            "states": torch.as_tensor(self.observations[index], dtype=torch.float32),
            "actions": torch.as_tensor(self.actions[index], dtype=torch.float32 if self.continuous else torch.int64),
            "mask": torch.as_tensor(mask),
            "episode": torch.arange(len(bounds), dtype=torch.int64),
            "start": torch.zeros(len(bounds), dtype=torch.int64),
        }
        if self.options is not None:
            out["options"] = torch.as_tensor(self.options[index], dtype=torch.int64)
        return out

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the dataset as ``.npz`` atomically."""
        arrays: dict[str, Any] = {
            "observations": self.observations.astype(np.float32),
            "actions": self.actions,
            "episode_starts": self.episode_starts,
            "n_actions": np.int64(self.n_actions),
            "continuous": np.bool_(self.continuous),
            "env_id": np.str_(self.env_id),
        }
        if self.options is not None:
            arrays["options"] = self.options.astype(np.int64)
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        atomic_write_bytes(path, buffer.getvalue())


def _shape(x: Any) -> str:
    return str(tuple(x.shape)) if hasattr(x, "shape") else type(x).__name__


def load_dataset(path: str | os.PathLike[str]) -> Dataset:
    """Load and validate a ``.npz`` dataset.

    Raises:
        DatasetError: the file is missing, unreadable, lacks a key, or breaks the schema (the message names the
            field).
    """
    path = Path(path)
    if path.is_dir():
        raise DatasetError(f"dataset {str(path)!r} is a folder, expected a .npz file")
    if not path.is_file():
        raise DatasetError(f"dataset {str(path)!r} does not exist; create one with `bnpo collect`")
    with open(path, "rb") as handle:
        magic = handle.read(4)
    if magic not in (b"PK\x03\x04", b"PK\x05\x06"):  # a zip archive (an empty one ends in PK\x05\x06)
        raise DatasetError(f"dataset {str(path)!r} is not a .npz (zip) archive; create one with `bnpo collect`")
    try:
        with open(path, "rb") as handle, np.load(handle, allow_pickle=False) as data:  # we close the file
            arrays = {key: data[key] for key in data.files}
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error) as err:
        reason = type(err).__name__ if "pickle" in str(err) else " ".join(str(err).split())
        raise DatasetError(f"dataset {str(path)!r} is truncated or corrupt ({reason})") from err
    missing = [key for key in REQUIRED_KEYS if key not in arrays]
    if missing:
        raise DatasetError(f"dataset {str(path)!r} lacks key(s) {', '.join(missing)}; see the schema in bnpo.data")
    for key in ("n_actions", "continuous"):
        if arrays[key].shape != () or not (
            np.issubdtype(arrays[key].dtype, np.integer) or np.issubdtype(arrays[key].dtype, np.bool_)
        ):
            raise DatasetError(
                f"dataset {str(path)!r}: {key!r} must be a scalar integer/bool, got shape {arrays[key].shape} "
                f"dtype {arrays[key].dtype}"
            )
    dataset = Dataset.__new__(Dataset)
    dataset.observations = arrays["observations"]
    dataset.actions = arrays["actions"]
    dataset.episode_starts = arrays["episode_starts"]
    dataset.n_actions = int(arrays["n_actions"])
    dataset.continuous = bool(arrays["continuous"])
    dataset.options = arrays.get("options")
    dataset.env_id = str(arrays["env_id"]) if "env_id" in arrays else ""
    dataset.validate(source=f"dataset {str(path)!r}")
    return dataset


def collect(
    env: gym.Env,
    policy: Callable[[Any, dict[str, Any]], Any],
    n_episodes: int,
    *,
    seed: int = 0,
    max_steps: int | None = None,
    env_id: str = "",
) -> Dataset:
    """Roll out ``policy`` in any gymnasium env and record a dataset.

    Observations are flattened with ``gymnasium.spaces.flatten``. Ground-truth options are recorded when every step's
    ``info`` carries an ``"option"`` entry (the bnpo environments do).

    Args:
        env: a gymnasium environment (Discrete or Box action space).
        policy: ``policy(observation, info) -> action``.
        n_episodes: number of episodes.
        seed: ``env.reset(seed=seed)`` before the first episode (later resets continue its generator).
        max_steps: cap on each episode's length (besides the env's own termination / truncation).
        env_id: recorded in the dataset.

    Returns:
        the :class:`Dataset`.

    Raises:
        ValueError: the action space is neither Discrete nor Box, or ``n_episodes`` < 1.

    Example:
        >>> import gymnasium as gym, bnpo
        >>> env = gym.make("bnpo/Line-v0")
        >>> data = collect(env, bnpo.envs.make_expert(env), 3, seed=0)
        >>> data.n_episodes, data.observations.shape
        (3, (60, 10))
    """
    if n_episodes < 1:
        raise ValueError(f"n_episodes must be >= 1, got {n_episodes}")
    space = env.action_space
    if isinstance(space, gym.spaces.Discrete):
        continuous, n_actions, start = False, int(space.n), int(space.start)
    elif isinstance(space, gym.spaces.Box):
        continuous, n_actions, start = True, int(np.prod(space.shape)), 0
    else:
        raise ValueError(f"action space must be Discrete or Box, got {space}")
    observations, actions, starts, options = [], [], [], []
    has_options = True
    for episode in range(n_episodes):
        obs, info = env.reset(seed=seed if episode == 0 else None)
        steps = 0
        while True:
            action = policy(obs, info)
            observations.append(gym.spaces.flatten(env.observation_space, obs).astype(np.float32))
            actions.append(np.asarray(action, dtype=np.float32).reshape(-1) if continuous else int(action) - start)
            starts.append(steps == 0)
            has_options = has_options and "option" in info
            options.append(int(info.get("option", -1)))
            obs, _, terminated, truncated, info = env.step(action)
            steps += 1
            if terminated or truncated or (max_steps is not None and steps >= max_steps):
                break
    return Dataset(
        observations=np.stack(observations),
        actions=np.stack(actions).astype(np.float32) if continuous else np.asarray(actions, dtype=np.int64),
        episode_starts=np.asarray(starts, dtype=bool),
        n_actions=n_actions,
        continuous=continuous,
        options=np.asarray(options, dtype=np.int64) if has_options else None,
        env_id=env_id,
    )
