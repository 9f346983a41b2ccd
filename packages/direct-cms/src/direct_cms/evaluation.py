"""Evaluation: fixed initial noise (stored once, reused), ODE error per K, sample quality, the teacher's sanity line.

- **Fixed noise.** x_T, the conditioning labels and the K-step sampler's re-noising draws are generated once from
  the seed and stored (``eval_noise.safetensors``); teacher and every student start from the same x_T, and the
  students' re-noising never shifts x_T (reference §6).
- **ODE error** (the paper's "latent MSE"): MSE between the student's K-step samples and the teacher's own N-step
  solve (same solver, N and w as training) from the same x_T.
- **Quality, digits:** Fréchet distance and k-NN precision/recall in the features of the package's digit
  classifier, against real digits and against the teacher's samples; conditional accuracy of the classifier.
- **Quality, 2-D ring:** energy distance to real data and to teacher samples; mode precision and coverage.
- **Teacher sanity:** the teacher's N-step solve against its 1000-step solve (on a subset).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import torch

from direct_cms.classifier import DigitClassifier
from direct_cms.config import DEFAULT_KS
from direct_cms.data import RING_STD, Dataset, ring_centres
from direct_cms.guidance import EpsModel, GuidedTeacher
from direct_cms.metrics import energy_distance, frechet_distance, mode_stats, ode_error, precision_recall
from direct_cms.scheduler import DirectCMScheduler
from direct_cms.solvers import _GridSolver, solve
from sixlab_shared import UserError, derive_seed, make_generator

logger = logging.getLogger(__name__)

__all__ = ["EvalNoise", "quality_metrics", "student_sample", "teacher_sample"]


@dataclass
class EvalNoise:
    """Pre-generated evaluation noise.

    Attributes:
        x_T: initial noise ``(M, ...)``.
        labels: conditioning labels ``(M,)`` (balanced over classes).
        renoise: re-noising draws for the multistep sampler, ``(K_max − 1, M, ...)``.
    """

    x_T: torch.Tensor
    labels: torch.Tensor
    renoise: torch.Tensor

    @classmethod
    def generate(cls, sample_shape: tuple[int, ...], num: int, num_classes: int, seed: int, max_steps: int = 8):
        """Draw the noise from ``seed`` (balanced labels ``i mod num_classes``)."""
        gen = make_generator(derive_seed(seed, "eval-noise"))
        x_T = torch.randn((num, *sample_shape), generator=gen)
        renoise = torch.randn((max(max_steps - 1, 1), num, *sample_shape), generator=gen)
        labels = torch.arange(num, dtype=torch.int64) % num_classes
        return cls(x_T, labels, renoise)

    def state(self) -> dict[str, torch.Tensor]:
        return {"x_T": self.x_T, "labels": self.labels, "renoise": self.renoise}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> EvalNoise:
        return cls(state["x_T"], state["labels"], state["renoise"])


def teacher_sample(
    teacher: GuidedTeacher, solver: _GridSolver, x_T: torch.Tensor, labels: torch.Tensor, batch_size: int = 256
) -> torch.Tensor:
    """The teacher's N-step solve from ``x_T`` at t = T down to 0, in batches; ``(M, ...)``."""
    out = []
    for start in range(0, x_T.shape[0], batch_size):
        x = x_T[start : start + batch_size]
        t = torch.full((x.shape[0],), solver.grid.num_train_timesteps, dtype=torch.int64, device=x.device)
        with torch.inference_mode():
            out.append(solve(solver, teacher, x, t, labels[start : start + batch_size]))
    return torch.cat(out)


def student_sample(
    student_eps: EpsModel,
    scheduler: DirectCMScheduler,
    x_T: torch.Tensor,
    labels: torch.Tensor,
    num_steps: int,
    renoise: torch.Tensor,
    batch_size: int = 256,
) -> torch.Tensor:
    """K-step multistep sampling with the pre-generated re-noising draws; ``(M, ...)``.

    ``labels`` is any per-sample condition (class labels, or a :class:`~direct_cms.conditioning.TextCond`).

    Raises:
        UserError: K exceeds N or the stored re-noising draws.
    """
    if num_steps - 1 > renoise.shape[0]:
        raise UserError(
            f"K={num_steps} needs {num_steps - 1} stored re-noising draws, the noise file has {renoise.shape[0]}"
        )
    scheduler.set_timesteps(num_steps)
    out = []
    for start in range(0, x_T.shape[0], batch_size):
        x = x_T[start : start + batch_size]
        cond = labels[start : start + batch_size]
        for i, tau in enumerate(scheduler.timesteps.tolist()):
            t = torch.full((x.shape[0],), tau, dtype=torch.int64, device=x.device)
            with torch.inference_mode():
                eps = student_eps(x, t, cond)
            noise = renoise[i, start : start + batch_size].to(x.device) if i < num_steps - 1 else None
            x = scheduler.step(eps, tau, x, noise=noise).prev_sample
        out.append(x)
    return torch.cat(out)


def quality_metrics(
    samples: torch.Tensor,
    labels: torch.Tensor,
    data: Dataset,
    teacher_samples: torch.Tensor | None,
    classifier: DigitClassifier | None = None,
) -> dict[str, float]:
    """Sample quality against real data (and the teacher's samples when given).

    Digits: ``fd_real``, ``fd_teacher``, ``precision``, ``recall`` (k = 3, vs real), ``accuracy`` and
    ``confidence`` of the classifier on the conditioning labels. Ring: ``energy_real``, ``energy_teacher``,
    ``mode_precision``, ``mode_coverage``.
    """
    if data.name == "digits":
        if classifier is None:
            raise ValueError("digits quality needs the digit classifier")
        with torch.no_grad():
            feats = classifier.features(samples.float())
            real = classifier.features(data.x)
            probs = classifier(samples.float()).softmax(1)
        precision, recall = precision_recall(real, feats, k=3)
        result = {
            "fd_real": frechet_distance(feats, real),
            "precision": precision,
            "recall": recall,
            "accuracy": float((probs.argmax(1) == labels).float().mean()),
            "confidence": float(probs.max(1).values.mean()),
        }
        if teacher_samples is not None:
            with torch.no_grad():
                result["fd_teacher"] = frechet_distance(feats, classifier.features(teacher_samples.float()))
        return result
    points = samples.float()
    mode_precision, mode_coverage = mode_stats(points, ring_centres(), RING_STD)
    result = {
        "energy_real": energy_distance(points, data.x),
        "mode_precision": mode_precision,
        "mode_coverage": mode_coverage,
    }
    if teacher_samples is not None:
        result["energy_teacher"] = energy_distance(points, teacher_samples)
    return result


def sample_ode_errors(
    student_eps: EpsModel,
    scheduler: DirectCMScheduler,
    noise: EvalNoise,
    reference: torch.Tensor,
    ks: tuple[int, ...] = DEFAULT_KS,
) -> dict[int, tuple[torch.Tensor, float]]:
    """Samples and ODE error (vs ``reference``, the teacher's N-step solve) per K."""
    return {
        k: (
            s := student_sample(student_eps, scheduler, noise.x_T, noise.labels, k, noise.renoise),
            ode_error(s, reference),
        )
        for k in ks
    }
