"""Which trajectories a fit trains on and in what order: the windows or padded episodes of a data set, the seeded
train/held-out split by episode, and the minibatch stream that wraps across epochs."""

from __future__ import annotations

import torch

from bnpo.data import Dataset
from bnpo.fit_config import FitConfig
from sixlab_shared import derive_seed, make_generator


class BatchStream:
    """Minibatch indices drawn from successive random permutations, wrapping across epochs (always full)."""

    def __init__(self, n: int, batch_size: int, seed: int) -> None:
        self.n = n
        self.batch_size = min(batch_size, n)
        self.generator = make_generator(seed)
        self.buffer = torch.empty(0, dtype=torch.long)

    def next(self) -> torch.Tensor:
        """The next (batch_size,) indices."""
        while self.buffer.numel() < self.batch_size:
            self.buffer = torch.cat([self.buffer, torch.randperm(self.n, generator=self.generator)])
        batch, self.buffer = self.buffer[: self.batch_size], self.buffer[self.batch_size :]
        return batch

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Generator state and remaining indices."""
        return {"generator": self.generator.get_state(), "buffer": self.buffer.clone()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Restore :meth:`state_dict`."""
        self.generator.set_state(state["generator"])
        self.buffer = state["buffer"].long()


def split_indices(n: int, fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Seeded (train, held-out) split of n trajectories; at least one held out when fraction > 0 and n >= 2."""
    perm = torch.randperm(n, generator=make_generator(derive_seed(seed, "split")))
    n_held = 0 if fraction <= 0 or n < 2 else max(1, round(n * fraction))
    return perm[n_held:].sort().values, perm[:n_held].sort().values


def training_batches(dataset: Dataset, config: FitConfig) -> dict[str, torch.Tensor]:
    """The trajectories a fit trains on: ``dataset.padded()`` with ``config.padding``, else
    ``dataset.windows(seq_len, window_stride)``; a ``mask`` (all True for windows) is always present."""
    if config.padding:
        return dataset.padded()
    windows = dataset.windows(config.seq_len, config.window_stride)
    windows["mask"] = torch.ones(windows["states"].shape[:2], dtype=torch.bool)
    return windows


def split_windows(episode: torch.Tensor, fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(train, held-out) window indices from the seeded split of the *episodes* (:func:`split_indices`), so the
    windows of one episode never land on both sides. ``episode``: (N,) int64 episode of each window."""
    n_episodes = int(episode.max()) + 1 if episode.numel() else 0
    _, held_episodes = split_indices(n_episodes, fraction, seed)
    held = torch.isin(episode, held_episodes)
    return torch.nonzero(~held)[:, 0], torch.nonzero(held)[:, 0]
