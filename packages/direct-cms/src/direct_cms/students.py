"""Students initialised from the teacher: LoRA adapters through peft (the paper's choice) or full fine-tuning.

With LoRA the teacher *is* the student's network with the adapters switched off (as in the paper's scripts): the
base weights are frozen and shared, and :meth:`StudentTeacher.teacher_eps` runs with adapters disabled. LoRA's B
matrices start at zero, so the student starts equal to the teacher. With full fine-tuning the teacher is a frozen
deep copy.
"""

from __future__ import annotations

import contextlib
import copy
import logging
from collections.abc import Iterator, Sequence

import torch
from torch import nn

from direct_cms.config import DEFAULT_LORA_TARGETS, STUDENT_KINDS
from direct_cms.guidance import UNetEps
from sixlab_shared import UserError

logger = logging.getLogger(__name__)

__all__ = ["DEFAULT_LORA_TARGETS", "STUDENT_KINDS", "StudentTeacher"]


def _lora_layers(module: nn.Module) -> list[nn.Module]:
    from peft.tuners.tuners_utils import BaseTunerLayer

    return [m for m in module.modules() if isinstance(m, BaseTunerLayer)]


class StudentTeacher(nn.Module):
    """A student network and its teacher view, both as ε-models ``(x, t, cond) -> ε̂``.

    Args:
        network: the teacher network (e.g. ``UNet2DModel``); with ``kind="lora"`` it is modified in place.
        kind: ``"lora"`` (peft adapters on ``target_modules``) or ``"full"`` (all weights trained).
        rank: LoRA rank.
        alpha: LoRA α (scaling α/rank); defaults to ``rank``.
        target_modules: module-name suffixes to adapt; names absent from the network are skipped.
        cond_kwarg: keyword under which the network takes ``cond`` (``class_labels`` for UNet2DModel).

    Raises:
        UserError: unknown ``kind``, rank < 1, or no target module matches the network.
    """

    def __init__(
        self,
        network: nn.Module,
        kind: str = "lora",
        rank: int = 8,
        alpha: float | None = None,
        target_modules: Sequence[str] = DEFAULT_LORA_TARGETS,
        cond_kwarg: str = "class_labels",
    ) -> None:
        super().__init__()
        if kind not in STUDENT_KINDS:
            raise UserError(f"student kind must be one of {', '.join(STUDENT_KINDS)}, got {kind!r}")
        self.kind = kind
        self.cond_kwarg = cond_kwarg
        if kind == "lora":
            if rank < 1:
                raise UserError(f"LoRA rank must be >= 1, got {rank}")
            from peft import LoraConfig, inject_adapter_in_model

            names = {name.rsplit(".", 1)[-1] for name, _ in network.named_modules()}
            full_names = [name for name, _ in network.named_modules()]
            present = [
                target for target in target_modules if target in names or any(n.endswith(target) for n in full_names)
            ]
            if not present:
                raise UserError(
                    f"none of the LoRA target modules {list(target_modules)} exist in {type(network).__name__}; "
                    "pass --lora-targets with names of its Linear/Conv layers"
                )
            network.requires_grad_(False)
            config = LoraConfig(r=rank, lora_alpha=alpha or rank, target_modules=present, init_lora_weights=True)
            self.network = inject_adapter_in_model(config, network)
            self.lora_config = {"rank": rank, "alpha": alpha or rank, "target_modules": present}
            self.peft_config = config
            self._teacher_network = None
        else:
            self._teacher_network = copy.deepcopy(network).requires_grad_(False).eval()
            self.network = network.requires_grad_(True)
            self.lora_config = None
            self.peft_config = None
        self.student_eps = UNetEps(self.network, cond_kwarg)

    @contextlib.contextmanager
    def adapters_disabled(self) -> Iterator[None]:
        """Within the block, LoRA layers are bypassed (the network is the teacher)."""
        layers = _lora_layers(self.network) if self.kind == "lora" else []
        for layer in layers:
            layer.enable_adapters(False)
        try:
            yield
        finally:
            for layer in layers:
                layer.enable_adapters(True)

    def teacher_eps(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        """The frozen teacher's ε̂ (no gradient; inference mode)."""
        with torch.inference_mode():
            if self._teacher_network is not None:
                return UNetEps(self._teacher_network, self.cond_kwarg)(x, t, cond)
            with self.adapters_disabled():
                return self.student_eps(x, t, cond)

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        """The student's ε̂ (with gradient)."""
        return self.student_eps(x, t, cond)

    def trainable_parameters(self) -> list[nn.Parameter]:
        """The parameters the optimiser updates (LoRA A/B, or every network weight)."""
        return [p for p in self.network.parameters() if p.requires_grad]

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        """Only the trained tensors, keyed by their names in the network (what a checkpoint stores)."""
        return {name: p.detach() for name, p in self.network.named_parameters() if p.requires_grad}

    def load_trainable_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Load tensors saved by :meth:`trainable_state_dict`.

        Raises:
            UserError: the keys or shapes differ (a checkpoint from another configuration), naming them.
        """
        own = dict(self.network.named_parameters())
        expected = {name for name, p in own.items() if p.requires_grad}
        missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
        if missing or unexpected:
            raise UserError(
                f"student checkpoint does not match this configuration: missing {missing[:3]}"
                f"{'…' if len(missing) > 3 else ''}, unexpected {unexpected[:3]}{'…' if len(unexpected) > 3 else ''}"
            )
        with torch.no_grad():
            for name, value in state.items():
                if own[name].shape != value.shape:
                    raise UserError(
                        f"student checkpoint tensor {name} has shape {tuple(value.shape)}, "
                        f"expected {tuple(own[name].shape)}; it comes from a different configuration"
                    )
                own[name].copy_(value)
