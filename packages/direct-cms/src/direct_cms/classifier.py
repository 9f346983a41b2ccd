"""The frozen feature space for digit sample quality: a small CNN classifier trained on the 8×8 digits.

Features are the 64-d penultimate activations; FD and precision/recall are computed in them. Trained in seconds on
CPU, saved as safetensors and reloaded strictly.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import nn

from direct_cms.data import Dataset
from sixlab_shared import UserError, derive_seed, load_checkpoint, make_generator, save_checkpoint, seeded

logger = logging.getLogger(__name__)

__all__ = ["DigitClassifier", "load_classifier", "train_classifier"]


class DigitClassifier(nn.Module):
    """CNN for ``(B, 1, 8, 8)`` digits in [−1, 1]: ``features`` → ``(B, 64)``, ``forward`` → ``(B, 10)`` logits."""

    feature_dim = 64

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1),
            nn.SiLU(),
            nn.Conv2d(32, 64, 3, padding=1, stride=2),  # 4×4
            nn.SiLU(),
            nn.Flatten(),
            nn.Linear(64 * 16, self.feature_dim),
            nn.SiLU(),
        )
        self.head = nn.Linear(self.feature_dim, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate features ``(B, 64)``; inputs are clamped to [−1, 1] first."""
        if x.ndim != 4 or x.shape[1:] != (1, 8, 8):
            raise ValueError(f"expected digits of shape (B, 1, 8, 8), got {tuple(x.shape)}")
        return self.body(x.clamp(-1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def train_classifier(data: Dataset, seed: int = 0, steps: int = 400, batch_size: int = 128) -> DigitClassifier:
    """Train the classifier on all digits (light noise augmentation); returns it frozen, in eval mode."""
    with seeded(derive_seed(seed, "classifier-init")):  # module init reads the global RNG; restored after
        model = DigitClassifier(data.num_classes)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    gen = make_generator(derive_seed(seed, "classifier-data"))
    for _ in range(steps):
        rows = torch.randint(0, data.x.shape[0], (batch_size,), generator=gen)
        x = data.x[rows] + 0.1 * torch.randn(data.x[rows].shape, generator=gen)
        loss = nn.functional.cross_entropy(model(x), data.labels[rows])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval().requires_grad_(False)
    with torch.no_grad():
        accuracy = (model(data.x).argmax(1) == data.labels).float().mean().item()
    logger.info("digit classifier: train accuracy %.3f", accuracy)
    return model


def save_classifier(model: DigitClassifier, path: str | Path) -> None:
    """Save atomically as safetensors."""
    save_checkpoint(path, {"classifier": model.state_dict()})


def load_classifier(path: str | Path) -> DigitClassifier:
    """Load strictly (a mismatching file names its keys).

    Raises:
        UserError: the file is missing or is not a classifier checkpoint.
    """
    state = load_checkpoint(path)
    if "classifier" not in state:
        raise UserError(f"{str(path)!r} is not a digit-classifier checkpoint")
    model = DigitClassifier()
    try:
        model.load_state_dict(state["classifier"], strict=True)
    except RuntimeError as err:
        raise UserError(f"{str(path)!r} does not match the digit classifier: {str(err).splitlines()[0]}") from err
    return model.eval().requires_grad_(False)
