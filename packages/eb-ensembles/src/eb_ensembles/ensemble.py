"""Deep ensembles of any ``nn.Module`` factory, trained member by member or all at once (stacked parameters).

Each member m has its own random streams, derived from the run seed with :func:`sixlab_shared.derive_seed`:

* initialisation: the factory is called under a forked torch RNG seeded with ``derive_seed(seed, "init", m)``;
* data order: epoch e visits the training set in ``randperm(N)`` drawn from ``derive_seed(seed, "order", m, e)``.

Both training paths use these same streams, the same Adam update (elementwise, so Adam on stacked ``(M, ...)``
parameters is M independent Adams) and the same per-member loss, so the loop and the vectorised path compute the
same numbers up to float round-off (batched and unbatched matmuls may sum in different orders).

The vectorised path keeps every member's parameters in one flat buffer and runs ``torch.optim.Adam``'s arithmetic
once over it (:class:`_StackedAdam`). Plain MLPs get their per-member gradients in closed form from batched
matmuls (:func:`_stacked_mlp_value_and_grad`, no autograd graph); any other module goes through
``torch.func.vmap(grad_and_value(...))`` over ``functional_call``.

Per-member checkpoints: every finished member is saved to ``<checkpoint_dir>/members/member_XXX.safetensors``,
and the work in progress to ``<checkpoint_dir>/partial_{loop,vmap}.safetensors`` every ``checkpoint_every``
epochs, so a killed run resumes at the last saved epoch. A member whose loss turns NaN/inf is stopped, recorded
as failed with the epoch and step, and excluded from the ensemble; the other members carry on.
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.func import functional_call, grad_and_value, stack_module_state, vmap

from eb_ensembles.checks import InvalidInputError
from eb_ensembles.eb import PointMassPrior
from eb_ensembles.models import MIN_VARIANCE, gaussian_head
from sixlab_shared import derive_seed, load_checkpoint, make_generator, progress, save_checkpoint

logger = logging.getLogger(__name__)

__all__ = [
    "DeepEnsemble",
    "EnsembleConfig",
    "MemberReport",
    "TASKS",
    "init_member",
    "member_log_likelihood",
    "member_loss",
    "train_ensemble",
]

TASKS = ("classification", "regression")
_DTYPES = {"float32": torch.float32, "float64": torch.float64}


@dataclass
class EnsembleConfig:
    """How to train an ensemble.

    Attributes:
        members: M, the number of members (≥ 1).
        epochs: passes over the training set per member.
        batch_size: minibatch size (the last batch of an epoch may be smaller).
        lr: Adam learning rate.
        weight_decay: L2 coefficient in Adam. 0 is the faithful mode (members maximise the likelihood); > 0 makes
            each member a MAP estimate under a Gaussian prior, outside the paper's assumption.
        vectorise: train all members at once on stacked parameters (True) or one after another (False).
        seed: run seed; member streams are derived from it.
        task: ``"classification"`` (cross-entropy, probability averaging) or ``"regression"`` (Gaussian NLL with
            mean and variance heads, Gaussian-mixture predictive).
        checkpoint_every: save the work in progress every this many epochs (when a checkpoint folder is given).
        dtype: ``"float32"`` or ``"float64"``.
    """

    members: int = 5
    epochs: int = 30
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.0
    vectorise: bool = True
    seed: int = 0
    task: str = "classification"
    checkpoint_every: int = 5
    dtype: str = "float32"

    def validate(self) -> None:
        """Raise :class:`InvalidInputError` on any out-of-range field."""
        if self.members < 1:
            raise InvalidInputError(f"an ensemble needs M >= 1 members, got members={self.members}")
        if self.epochs < 1 or self.batch_size < 1:
            raise InvalidInputError(f"epochs and batch_size must be >= 1, got {self.epochs} and {self.batch_size}")
        if self.task not in TASKS:
            raise InvalidInputError(f"unknown task {self.task!r}; choose one of {', '.join(TASKS)}")
        if self.dtype not in _DTYPES:
            raise InvalidInputError(f"unknown dtype {self.dtype!r}; choose one of {', '.join(_DTYPES)}")
        if self.lr <= 0 or self.weight_decay < 0:
            raise InvalidInputError(f"lr must be > 0 and weight_decay >= 0, got {self.lr} and {self.weight_decay}")
        if self.checkpoint_every < 1:
            raise InvalidInputError(f"checkpoint_every must be >= 1, got {self.checkpoint_every}")


@dataclass
class MemberReport:
    """What happened to one member.

    Attributes:
        index: member index m.
        status: ``"ok"`` or ``"failed"``.
        epochs: epochs completed.
        train_loglik: ``ℓ_m = Σ_i log p(y_i | x_i, θ_m)`` on the training set (nats), None if failed.
        train_nll: ``-ℓ_m / N``.
        message: why the member failed (None if ok).
    """

    index: int
    status: str = "ok"
    epochs: int = 0
    train_loglik: float | None = None
    train_nll: float | None = None
    message: str | None = None


# ------------------------------------------------------------------------------------------------ per-member math
def member_loss(task: str, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean negative log-likelihood of one member on a batch (cross-entropy, or Gaussian NLL incl. ½log 2π)."""
    return -member_log_likelihood(task, output, target).mean()


def member_log_likelihood(task: str, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-point log-likelihood ``log p(y_i | x_i, θ)``: ``(N,)`` from outputs ``(N, K)`` or ``(N, 2)``."""
    if task == "classification":
        return -nn.functional.cross_entropy(output, target, reduction="none")
    mean, var = gaussian_head(output)
    return -0.5 * (torch.log(2 * math.pi * var) + (target - mean) ** 2 / var)


def init_member(factory: Callable[[], nn.Module], seed: int, index: int) -> nn.Module:
    """Build member ``index`` with its own initialisation stream (torch's global RNG is forked, not touched)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(seed, "init", index))
        module = factory()
    if not isinstance(module, nn.Module):
        raise InvalidInputError(f"the model factory must return an nn.Module, got {type(module).__name__}")
    return module


def _epoch_order(seed: int, index: int, epoch: int, n: int, device: torch.device) -> torch.Tensor:
    return torch.randperm(n, generator=make_generator(derive_seed(seed, "order", index, epoch))).to(device)


def _member_path(folder: Path, index: int) -> Path:
    return folder / "members" / f"member_{index:03d}.safetensors"


# --------------------------------------------------------------------------------------------------- the ensemble
class DeepEnsemble:
    """A trained ensemble: member states, their reports, and predictions as ``(M, N, ·)`` tensors.

    Only members with status ``"ok"`` take part in predictions and in :meth:`prior`.

    Args:
        factory: the zero-argument model factory the members were built from.
        states: one ``state_dict`` per member (failed members included).
        reports: one :class:`MemberReport` per member.
        task: ``"classification"`` or ``"regression"``.
    """

    def __init__(
        self,
        factory: Callable[[], nn.Module],
        states: list[dict[str, torch.Tensor]],
        reports: list[MemberReport],
        task: str,
    ) -> None:
        if task not in TASKS:
            raise InvalidInputError(f"unknown task {task!r}; choose one of {', '.join(TASKS)}")
        if len(states) != len(reports):
            raise InvalidInputError(f"{len(states)} member states but {len(reports)} reports")
        self.factory = factory
        self.states = states
        self.reports = reports
        self.task = task
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
        return DeepEnsemble(self.factory, [self.states[i] for i in keep], [self.reports[i] for i in keep], self.task)

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
        return gaussian_head(self.member_outputs(x))

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
            save_checkpoint(_member_path(Path(folder), report.index), {"state": state, "report": asdict(report)})

    @classmethod
    def load(cls, folder: str | Path, factory: Callable[[], nn.Module], task: str) -> DeepEnsemble:
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
        return cls(factory, states, reports, task)


# ------------------------------------------------------------------------------------------------------ training
@dataclass
class _Data:
    x: torch.Tensor
    y: torch.Tensor
    n: int = field(init=False)

    def __post_init__(self) -> None:
        self.n = int(self.x.shape[0])


def _check_data(x: torch.Tensor, y: torch.Tensor, task: str) -> None:
    if not isinstance(x, torch.Tensor) or not isinstance(y, torch.Tensor):
        raise InvalidInputError("training inputs and targets must be torch tensors")
    if x.shape[0] != y.shape[0] or x.shape[0] == 0:
        raise InvalidInputError(f"inputs have {x.shape[0]} rows but targets have {y.shape[0]}; need equal, non-zero")
    if task == "classification" and (y.dtype.is_floating_point or y.ndim != 1):
        raise InvalidInputError(
            f"classification targets must be an integer vector (N,), got {y.dtype} {tuple(y.shape)}"
        )
    if task == "regression" and (not y.dtype.is_floating_point or y.ndim != 1):
        raise InvalidInputError(f"regression targets must be a float vector (N,), got {y.dtype} {tuple(y.shape)}")


def train_ensemble(
    factory: Callable[[], nn.Module],
    x: torch.Tensor,
    y: torch.Tensor,
    config: EnsembleConfig,
    *,
    checkpoint_dir: str | Path | None = None,
    resume: bool = False,
    device: str | torch.device | None = None,
    on_epoch_end: Callable[[list[int], int], None] | None = None,
) -> DeepEnsemble:
    """Train M members of ``factory`` on ``(x, y)`` by minibatch Adam, looped or vectorised.

    Args:
        factory: zero-argument callable returning a fresh ``nn.Module`` (outputs ``(N, K)`` logits or ``(N, 2)``).
        x: ``(N, D)`` inputs.
        y: ``(N,)`` int64 classes or float targets.
        config: the :class:`EnsembleConfig`.
        checkpoint_dir: where per-member and in-progress checkpoints go (None: no checkpoints).
        resume: reuse finished members and the in-progress checkpoint found in ``checkpoint_dir``.
        device: where to train (default: the device of ``x``).
        on_epoch_end: called as ``on_epoch_end(member_indices, epoch)`` after each epoch and its checkpoint;
            raising from it stops training (that is how tests simulate a killed run).

    Returns:
        The :class:`DeepEnsemble` (failed members are reported in ``.failed`` and excluded from predictions).

    Raises:
        InvalidInputError: bad config or data; the model has random layers and ``vectorise=True``; every
            member failed.
    """
    config.validate()
    _check_data(x, y, config.task)
    device = torch.device(device) if device is not None else x.device
    dtype = _DTYPES[config.dtype]
    data = _Data(
        x.to(device=device, dtype=dtype), y.to(device=device, dtype=dtype if config.task == "regression" else y.dtype)
    )
    folder = Path(checkpoint_dir) if checkpoint_dir is not None else None

    states: dict[int, dict[str, torch.Tensor]] = {}
    reports: dict[int, MemberReport] = {}
    if resume and folder is not None:
        for m in range(config.members):
            path = _member_path(folder, m)
            if path.is_file():
                ckpt = load_checkpoint(path, device=device)
                states[m], reports[m] = ckpt["state"], MemberReport(**ckpt["report"])
        if states:
            logger.info("resume: %d finished member(s) loaded from %s", len(states), folder)
    todo = [m for m in range(config.members) if m not in states]
    if todo:
        trainer = _train_vectorised if config.vectorise else _train_loop
        trainer(factory, data, config, todo, states, reports, folder, resume, device, dtype, on_epoch_end)
    for report in reports.values():
        if report.status != "ok":
            logger.warning("member %d failed: %s", report.index, report.message)
    order = sorted(states)
    return DeepEnsemble(factory, [states[m] for m in order], [reports[m] for m in order], config.task)


def _finish(
    index: int,
    state: dict[str, torch.Tensor],
    report: MemberReport,
    loglik: float | None,
    n: int,
    folder: Path | None,
    states: dict[int, dict[str, torch.Tensor]],
    reports: dict[int, MemberReport],
) -> None:
    if report.status == "ok":
        if loglik is None or not math.isfinite(loglik):
            report.status, report.message = "failed", f"training log-likelihood is {loglik}"
        else:
            report.train_loglik, report.train_nll = loglik, -loglik / n
    state = {k: v.detach().cpu().clone() for k, v in state.items()}
    states[index], reports[index] = state, report
    if folder is not None:
        save_checkpoint(_member_path(folder, index), {"state": state, "report": asdict(report)})


def _train_loop(factory, data, config, todo, states, reports, folder, resume, device, dtype, on_epoch_end) -> None:
    """Members one after another: the plain PyTorch loop (the reference the vectorised path must match)."""
    partial = folder / "partial_loop.safetensors" if folder is not None else None
    steps = math.ceil(data.n / config.batch_size)
    for m in todo:
        model = init_member(factory, config.seed, m).to(device=device, dtype=dtype).train()
        optimiser = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        report, start = MemberReport(index=m), 0
        if resume and partial is not None and partial.is_file():
            ckpt = load_checkpoint(partial, device=device)
            if ckpt["member"] == m:
                model.load_state_dict(ckpt["model"])
                optimiser.load_state_dict(ckpt["optimizer"])
                start = int(ckpt["epoch"])
                logger.info("resume: member %d from epoch %d", m, start)
        for epoch in progress(range(start, config.epochs), desc=f"member {m}", leave=False):
            order = _epoch_order(config.seed, m, epoch, data.n, device)
            for step in range(steps):
                idx = order[step * config.batch_size : (step + 1) * config.batch_size]
                loss = member_loss(config.task, model(data.x[idx]), data.y[idx])
                if not bool(torch.isfinite(loss)):
                    report.status = "failed"
                    report.message = f"loss became {float(loss.detach())} at epoch {epoch}, step {step}"
                    break
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
            if report.status != "ok":
                break
            report.epochs = epoch + 1
            if partial is not None and (epoch + 1) % config.checkpoint_every == 0 and epoch + 1 < config.epochs:
                save_checkpoint(
                    partial,
                    {"member": m, "epoch": epoch + 1, "model": model.state_dict(), "optimizer": optimiser.state_dict()},
                )
            if on_epoch_end is not None:
                on_epoch_end([m], epoch)
        loglik = None
        if report.status == "ok":
            with torch.no_grad():
                model.eval()
                loglik = float(member_log_likelihood(config.task, model(data.x), data.y).to(torch.float64).sum())
        _finish(m, model.state_dict(), report, loglik, data.n, folder, states, reports)
        if partial is not None:
            partial.unlink(missing_ok=True)


def _train_vectorised(
    factory, data, config, todo, states, reports, folder, resume, device, dtype, on_epoch_end
) -> None:
    """All remaining members at once: parameters stacked to ``(T, ...)`` in one flat buffer, gradients batched."""
    partial = folder / "partial_vmap.safetensors" if folder is not None else None
    models = [init_member(factory, config.seed, m).to(device=device, dtype=dtype).train() for m in todo]
    stacked, buffers = stack_module_state(models)
    base = copy.deepcopy(models[0]).to("meta")
    optimiser = _StackedAdam(
        {k: v.detach() for k, v in stacked.items()}, lr=config.lr, weight_decay=config.weight_decay
    )
    params, grads = optimiser.params, optimiser.grads
    member_reports = {m: MemberReport(index=m) for m in todo}
    start = 0
    if resume and partial is not None and partial.is_file():
        ckpt = load_checkpoint(partial, device=device)
        if list(ckpt["members"]) == todo:
            with torch.no_grad():
                for name, tensor in params.items():
                    tensor.copy_(ckpt["params"][name])
            optimiser.load_state_dict(ckpt["optimizer"])
            member_reports = {r["index"]: MemberReport(**r) for r in ckpt["reports"]}
            start = int(ckpt["epoch"])
            logger.info("resume: members %s from epoch %d", todo, start)
    alive = torch.tensor([member_reports[m].status == "ok" for m in todo], device=device)

    value_and_grad = _stacked_mlp_value_and_grad(base, config.task) or _vmapped_value_and_grad(base, config.task)
    steps = math.ceil(data.n / config.batch_size)
    for epoch in progress(range(start, config.epochs), desc=f"{len(todo)} members", leave=False):
        orders = torch.stack([_epoch_order(config.seed, m, epoch, data.n, device) for m in todo])  # T x N
        for step in range(steps):
            idx = orders[:, step * config.batch_size : (step + 1) * config.batch_size]  # T x B
            try:
                flat_idx = idx.reshape(-1)  # one gather for every member's minibatch
                xb = data.x.index_select(0, flat_idx).view(*idx.shape, *data.x.shape[1:])
                yb = data.y.index_select(0, flat_idx).view(idx.shape)
                losses = value_and_grad(params, buffers, xb, yb, grads)  # T; grads filled in
            except RuntimeError as err:
                if "randomness" in str(err):
                    raise InvalidInputError(
                        "vectorised training needs members without random layers (e.g. dropout); "
                        "train them one after another instead (vectorise=False / --no-vectorise)"
                    ) from err
                raise
            finite = torch.isfinite(losses)
            if bool(finite.all()):  # the common case: one check, no masking
                optimiser.step()
                continue
            newly = alive & ~finite
            for t in torch.nonzero(newly).flatten().tolist():
                member_reports[todo[t]].status = "failed"
                member_reports[todo[t]].message = f"loss became {float(losses[t])} at epoch {epoch}, step {step}"
            alive = alive & finite
            if not bool(alive.any()):
                break
            for grad in grads.values():
                grad[~alive] = 0.0  # a failed member's NaNs never reach the optimiser state
            optimiser.step()
        for t, m in enumerate(todo):
            if bool(alive[t]):
                member_reports[m].epochs = epoch + 1
        if not bool(alive.any()):
            break
        if partial is not None and (epoch + 1) % config.checkpoint_every == 0 and epoch + 1 < config.epochs:
            save_checkpoint(
                partial,
                {
                    "members": todo,
                    "epoch": epoch + 1,
                    "params": {k: v.clone() for k, v in params.items()},  # views of one buffer: copy them out
                    "optimizer": optimiser.state_dict(),
                    "reports": [asdict(member_reports[m]) for m in todo],
                },
            )
        if on_epoch_end is not None:
            on_epoch_end(list(todo), epoch)

    with torch.no_grad():
        base.eval()

        def loglik_one(p, b):
            return member_log_likelihood(config.task, functional_call(base, (p, b), (data.x,)), data.y).sum()

        logliks = vmap(loglik_one, in_dims=(0, 0))(params, buffers).to(torch.float64)
    for t, m in enumerate(todo):
        state = {name: tensor[t] for name, tensor in {**params, **buffers}.items()}
        state = {k: state[k] for k in models[0].state_dict()}  # the module's own key order
        loglik = float(logliks[t]) if member_reports[m].status == "ok" else None
        _finish(m, state, member_reports[m], loglik, data.n, folder, states, reports)
    if partial is not None:
        partial.unlink(missing_ok=True)


class _StackedAdam:
    """``torch.optim.Adam`` (single-tensor arithmetic, L2 ``weight_decay``) on one flat buffer of stacked parameters.

    Adam is elementwise, so running it once over the concatenation of every ``(T, ...)`` parameter performs the
    same arithmetic as ``torch.optim.Adam`` on each member's parameters, operation for operation (``lerp_``,
    ``mul_().addcmul_()``, ``sqrt() / √bc2 + eps``, ``addcdiv_``, bias corrections in Python floats), with a
    handful of tensor operations per step instead of a dozen per parameter tensor.

    Args:
        params: name → ``(T, ...)`` tensors; copied into the flat buffer (``.params`` holds views of it).
        lr: learning rate.
        weight_decay: L2 coefficient added to the gradient (``torch.optim.Adam``'s coupled weight decay).
        betas: ``(β1, β2)``.
        eps: added to the denominator.

    Attributes:
        params: name → view of the flat parameter buffer (same shapes as given).
        grads: name → view of the flat gradient buffer; fill these before :meth:`step`.
    """

    def __init__(
        self,
        params: dict[str, torch.Tensor],
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
    ) -> None:
        if not params:
            raise InvalidInputError("_StackedAdam needs at least one parameter tensor")
        first = next(iter(params.values()))
        total = sum(p.numel() for p in params.values())
        self.lr, self.weight_decay, self.betas, self.eps = lr, weight_decay, betas, eps
        self.flat = torch.empty(total, dtype=first.dtype, device=first.device)
        self.grad = torch.zeros_like(self.flat)
        self.exp_avg = torch.zeros_like(self.flat)
        self.exp_avg_sq = torch.zeros_like(self.flat)
        self._denom = torch.empty_like(self.flat)
        self._decayed = torch.empty_like(self.flat) if weight_decay != 0 else None
        self.step_count = 0
        self.params: dict[str, torch.Tensor] = {}
        self.grads: dict[str, torch.Tensor] = {}
        offset = 0
        with torch.no_grad():
            for name, tensor in params.items():
                n = tensor.numel()
                self.flat[offset : offset + n].copy_(tensor.reshape(-1))
                self.params[name] = self.flat[offset : offset + n].view(tensor.shape)
                self.grads[name] = self.grad[offset : offset + n].view(tensor.shape)
                offset += n

    @torch.no_grad()
    def step(self) -> None:
        """One Adam update of every parameter from the gradients in :attr:`grads`."""
        beta1, beta2 = self.betas
        self.step_count += 1
        grad = self.grad
        if self._decayed is not None:
            grad = torch.add(grad, self.flat, alpha=self.weight_decay, out=self._decayed)
        self.exp_avg.lerp_(grad, 1 - beta1)
        self.exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        step = float(self.step_count)
        bias_correction1 = 1 - beta1**step
        bias_correction2 = 1 - beta2**step
        step_size = self.lr / bias_correction1
        bias_correction2_sqrt = bias_correction2**0.5
        denom = torch.sqrt(self.exp_avg_sq, out=self._denom).div_(bias_correction2_sqrt).add_(self.eps)
        self.flat.addcdiv_(self.exp_avg, denom, value=-step_size)

    def state_dict(self) -> dict[str, Any]:
        """Step count and moment buffers (for checkpoints)."""
        return {"step": self.step_count, "exp_avg": self.exp_avg.clone(), "exp_avg_sq": self.exp_avg_sq.clone()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        self.step_count = int(state["step"])
        self.exp_avg.copy_(state["exp_avg"])
        self.exp_avg_sq.copy_(state["exp_avg_sq"])


def _vmapped_value_and_grad(base: nn.Module, task: str):
    """Any module: per-member loss and gradients with ``vmap(grad_and_value(...))`` over ``functional_call``."""

    def loss_one(p: dict[str, torch.Tensor], b: dict[str, torch.Tensor], xb: torch.Tensor, yb: torch.Tensor):
        return member_loss(task, functional_call(base, (p, b), (xb,)), yb)

    batched = vmap(grad_and_value(loss_one), in_dims=(0, 0, 0, 0), randomness="error")

    def value_and_grad(params, buffers, xb, yb, grads):
        member_grads, losses = batched(params, buffers, xb, yb)
        torch._foreach_copy_([grads[k] for k in member_grads], list(member_grads.values()))
        return losses

    return value_and_grad


_ELEMENTWISE = (nn.ReLU, nn.Tanh, nn.GELU, nn.Identity)


def _activation_backward(layer: nn.Module, grad: torch.Tensor, pre: torch.Tensor, post: torch.Tensor) -> torch.Tensor:
    """``grad · act'(pre)`` with the same ATen backward kernels autograd uses."""
    if type(layer) is nn.ReLU:
        return torch.ops.aten.threshold_backward(grad, post, 0)
    if type(layer) is nn.Tanh:
        return torch.ops.aten.tanh_backward(grad, post)
    if type(layer) is nn.GELU:
        return torch.ops.aten.gelu_backward(grad, pre, approximate=layer.approximate)
    return grad  # Identity


def _stacked_mlp_value_and_grad(base: nn.Module, task: str):
    """Closed-form batched loss and gradients for plain MLPs (``MLP`` or ``nn.Sequential`` of Linear + activations).

    For T members with stacked weights ``W_l: (T, out, in)`` and biases ``b_l: (T, out)``, the forward pass is
    ``z_l = baddbmm(b_l, h_{l-1}, W_lᵀ)``, ``h_l = act(z_l)``, and backpropagation is written out by hand:
    ``∂W_l = gᵀ h_{l-1}`` (``bmm``), ``∂b_l = Σ_batch g``, ``g ← (g W_l) · act'(z_{l-1})``, starting from the
    gradient of the mean per-member negative log-likelihood with respect to the outputs:
    ``(softmax − onehot) / B`` for classification, and for regression ``−(y − μ)/(σ² B)`` on the mean and
    ``½(1/σ² − (y − μ)²/σ⁴) · softplus'(raw) / B`` on the raw variance. No autograd graph is built.
    Same math as the loop (round-off aside; checked against autograd in the tests).

    Returns:
        ``value_and_grad(params, buffers, xb, yb, grads) -> losses``: ``xb (T, B, D)``, ``yb (T, B)``, losses
        ``(T,)``; the gradients of ``losses.sum()`` are written into ``grads`` (name → ``(T, ...)`` tensors).
        ``None`` for any other module, which then goes through the generic vmap path.
    """
    from eb_ensembles.models import MLP  # local: models imports nothing from here, but keep the graph obvious

    if isinstance(base, MLP):
        seq, prefix = base.net, "net."
    elif type(base) is nn.Sequential:
        seq, prefix = base, ""
    else:
        return None
    # layers: (weight name, bias name, activations applied after this Linear)
    layers: list[tuple[str, str, list[nn.Module]]] = []
    for name, layer in seq.named_children():
        if type(layer) is nn.Linear and layer.bias is not None:
            layers.append((f"{prefix}{name}.weight", f"{prefix}{name}.bias", []))
        elif type(layer) in _ELEMENTWISE and layers:
            layers[-1][2].append(layer)
        else:
            return None
    if not layers or layers[-1][2]:
        return None  # an activation on the output layer: leave it to the generic path

    def value_and_grad(params, buffers, xb, yb, grads):
        h = xb  # T x B x D
        saved: list[tuple[torch.Tensor, list[tuple[torch.Tensor, torch.Tensor]]]] = []  # input, (pre, post) per act
        for weight, bias, acts in layers:
            layer_in = h
            h = torch.baddbmm(params[bias].unsqueeze(1), h, params[weight].transpose(1, 2))
            trail = []
            for act in acts:
                out = act(h)
                trail.append((h, out))
                h = out
            saved.append((layer_in, trail))
        batch = h.shape[1]
        if task == "classification":
            target = yb.unsqueeze(-1).long()
            # log-softmax by hand: aten's log_softmax is ~3x slower than these few ops on a short class axis
            shifted = h - h.amax(-1, keepdim=True)
            exp = shifted.exp()
            total = exp.sum(-1, keepdim=True)
            losses = (total.log() - shifted.gather(-1, target)).squeeze(-1).mean(1)
            g = exp.div_(total).scatter_add_(-1, target, torch.full_like(target, -1, dtype=h.dtype)).div_(batch)
        else:
            mean, raw = h[..., 0], h[..., 1]
            var = nn.functional.softplus(raw) + MIN_VARIANCE
            resid = yb - mean
            losses = (0.5 * (torch.log(2 * math.pi * var) + resid**2 / var)).mean(1)
            g_mean = -resid / var / batch
            g_var = 0.5 * (1 / var - resid**2 / var**2) / batch
            g_raw = torch.ops.aten.softplus_backward(g_var, raw, 1.0, 20.0)
            g = torch.stack([g_mean, g_raw], -1)
        for i in range(len(layers) - 1, -1, -1):
            weight, bias, _ = layers[i]
            layer_in = saved[i][0]
            torch.bmm(g.transpose(1, 2), layer_in, out=grads[weight])
            torch.sum(g, 1, out=grads[bias])
            if i > 0:
                g = torch.bmm(g, params[weight])
                for act, (pre, post) in zip(reversed(layers[i - 1][2]), reversed(saved[i - 1][1]), strict=True):
                    g = _activation_backward(act, g, pre, post)
        return losses

    return value_and_grad
