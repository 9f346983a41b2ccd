"""A trained deep ensemble: member states, their reports, and predictions vectorised over members.

Training lives in :mod:`eb_ensembles.training` (:func:`~eb_ensembles.training.train.train_ensemble`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import torch
from torch import nn
from torch.func import functional_call, vmap

from eb_ensembles.checks import InvalidInputError
from eb_ensembles.eb import PointMassPrior
from eb_ensembles.training.likelihood import TASKS, regression_gaussian
from eb_ensembles.training.members import MemberReport, init_member, member_path
from sixlab_shared import load_checkpoint, save_checkpoint

__all__ = ["DeepEnsemble"]


class DeepEnsemble:
    """A trained ensemble: member states, their reports, and predictions as ``(M, N, ·)`` tensors.

    Only members with status ``"ok"`` take part in predictions and in :meth:`prior`.

    Args:
        factory: the zero-argument model factory the members were built from.
        states: one ``state_dict`` per member (failed members included).
        reports: one :class:`MemberReport` per member.
        task: ``"classification"`` or ``"regression"``.
        noise_std: the fixed noise standard deviation of a regression model with a mean-only output (None: the
            members predict their variance).
    """

    def __init__(
        self,
        factory: Callable[[], nn.Module],
        states: list[dict[str, torch.Tensor]],
        reports: list[MemberReport],
        task: str,
        *,
        noise_std: float | None = None,
    ) -> None:
        if task not in TASKS:
            raise InvalidInputError(f"unknown task {task!r}; choose one of {', '.join(TASKS)}")
        if len(states) != len(reports):
            raise InvalidInputError(f"{len(states)} member states but {len(reports)} reports")
        self.factory = factory
        self.states = states
        self.reports = reports
        self.task = task
        self.noise_std = noise_std
        if states:
            first = {k: tuple(v.shape) for k, v in states[0].items()}
            for i, state in enumerate(states):
                shapes = {k: tuple(v.shape) for k, v in state.items()}
                if shapes != first:
                    bad = sorted(k for k in set(first) | set(shapes) if first.get(k) != shapes.get(k))
                    raise InvalidInputError(
                        f"member {i} does not match member 0 in parameter(s) {', '.join(bad)}; "
                        "all members must come from the same model factory"
                    )
        self._ok = [i for i, r in enumerate(reports) if r.status == "ok"]
        if not self._ok:
            raise InvalidInputError("every member failed (NaN/inf loss); lower the learning rate or check the data")
        self._base = init_member(factory, 0, 0).to("meta")
        expected = {k: tuple(v.shape) for k, v in self._base.state_dict().items()}
        got = {k: tuple(v.shape) for k, v in states[self._ok[0]].items()}
        if expected != got:
            bad = sorted(k for k in set(expected) | set(got) if expected.get(k) != got.get(k))
            raise InvalidInputError(
                f"the member checkpoints do not fit this model factory (parameter(s) {', '.join(bad[:4])} differ); "
                "load them with the factory they were trained with"
            )
        self._stacked: dict[str, torch.Tensor] | None = None

    @property
    def num_members(self) -> int:
        """Number of usable (non-failed) members M."""
        return len(self._ok)

    @property
    def failed(self) -> list[MemberReport]:
        """Reports of the members that failed."""
        return [r for r in self.reports if r.status != "ok"]

    def subset(self, count: int) -> DeepEnsemble:
        """The ensemble of the first ``count`` usable members."""
        if not 1 <= count <= self.num_members:
            raise InvalidInputError(f"subset size must be in [1, {self.num_members}], got {count}")
        keep = self._ok[:count]
        return DeepEnsemble(
            self.factory,
            [self.states[i] for i in keep],
            [self.reports[i] for i in keep],
            self.task,
            noise_std=self.noise_std,
        )

    def modules(self) -> list[nn.Module]:
        """The usable members as ordinary modules (eval mode)."""
        out = []
        for i in self._ok:
            module = init_member(self.factory, 0, 0)
            floats = [t for t in self.states[i].values() if t.is_floating_point()]
            if floats:
                module = module.to(dtype=floats[0].dtype)
            module.load_state_dict(self.states[i])
            out.append(module.eval())
        return out

    def _stack(self, device: torch.device) -> dict[str, torch.Tensor]:
        if self._stacked is None or next(iter(self._stacked.values())).device != device:
            names = self.states[self._ok[0]].keys()
            self._stacked = {k: torch.stack([self.states[i][k] for i in self._ok]).to(device) for k in names}
        return self._stacked

    @torch.no_grad()
    def member_outputs(self, x: torch.Tensor, *, chunk: int = 8192) -> torch.Tensor:
        """Raw outputs of every usable member, vectorised over members: ``(N, D) → (M, N, O)``."""
        stacked = self._stack(x.device)
        dtype = next(iter(stacked.values())).dtype
        self._base.eval()

        def one(state: dict[str, torch.Tensor], xb: torch.Tensor) -> torch.Tensor:
            return functional_call(self._base, state, (xb,))

        outs = [vmap(one, in_dims=(0, None))(stacked, xb.to(dtype)) for xb in x.split(chunk)]
        return torch.cat(outs, 1)

    def member_log_probs(self, x: torch.Tensor) -> torch.Tensor:
        """``(M, N, K)`` log-probabilities (classification)."""
        self._require("classification")
        return torch.log_softmax(self.member_outputs(x), -1)

    def member_probs(self, x: torch.Tensor) -> torch.Tensor:
        """``(M, N, K)`` probabilities (classification)."""
        return self.member_log_probs(x).exp()

    def predict_proba(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, K)`` ensemble predictive: the probability average over members."""
        return self.member_probs(x).mean(0)

    def member_gaussians(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(M, N)`` means and variances of each member (regression)."""
        self._require("regression")
        return regression_gaussian(self.member_outputs(x), self.noise_std)

    def _require(self, task: str) -> None:
        if self.task != task:
            raise InvalidInputError(f"this ensemble was trained for {self.task}, not {task}")

    def train_loglik(self) -> torch.Tensor:
        """``(M,)`` float64 training log-likelihoods ℓ_m of the usable members."""
        return torch.tensor([self.reports[i].train_loglik for i in self._ok], dtype=torch.float64)

    def flat_parameters(self) -> torch.Tensor:
        """``(M, d)`` flattened parameters (the atoms θ_m)."""
        return torch.stack([torch.cat([t.flatten() for t in self.states[i].values()]) for i in self._ok])

    def prior(self) -> PointMassPrior:
        """The learned prior ``(1/M) Σ_m δ_{θ_m}`` as a :class:`~eb_ensembles.eb.PointMassPrior`."""
        return PointMassPrior.uniform(self.num_members, self.flat_parameters())

    def save(self, folder: str | Path) -> None:
        """Write one checkpoint per member under ``folder/members/``."""
        for state, report in zip(self.states, self.reports, strict=True):
            save_checkpoint(member_path(Path(folder), report.index), {"state": state, "report": asdict(report)})

    @classmethod
    def load(
        cls, folder: str | Path, factory: Callable[[], nn.Module], task: str, *, noise_std: float | None = None
    ) -> DeepEnsemble:
        """Load every ``folder/members/member_*.safetensors`` (sorted by index).

        Raises:
            UserError: no member checkpoints in the folder.
        """
        paths = sorted((Path(folder) / "members").glob("member_*.safetensors"))
        if not paths:
            raise InvalidInputError(f"no member checkpoints under {str(Path(folder) / 'members')!r}; train first")
        states, reports = [], []
        for path in paths:
            ckpt = load_checkpoint(path)
            states.append(ckpt["state"])
            reports.append(MemberReport(**ckpt["report"]))
        return cls(factory, states, reports, task, noise_std=noise_std)
