"""LoRA presets and the diffusers LoRA file format for students of Stable Diffusion teachers.

The paper's student (reference §2, the target list of diffusers' ``train_lcm_distill_lora_sdxl.py``): rank 64,
α 64, adapters on 14 module groups of the UNet. Students are saved as diffusers saves LoRA
(``get_peft_model_state_dict(unet)`` through ``save_lora_weights``, the adapter config as metadata), so
``pipe.load_lora_weights(folder)`` loads them into the UNet (no "No LoRA keys" warning for the UNet). A network
saved as a pipeline or teacher never carries peft-injected keys (``base_layer``/``lora_``): :func:`without_lora`
returns a plain copy, with the adapters merged into the weights or dropped.
"""

from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import Any

from torch import nn

from direct_cms.config import PAPER_LORA_TARGETS
from sixlab_shared import UserError

logger = logging.getLogger(__name__)

__all__ = [
    "LORA_PRESETS",
    "LORA_WEIGHT_NAME",
    "PAPER_LORA_TARGETS",
    "has_lora",
    "load_lora_into",
    "save_lora",
    "without_lora",
]

#: Named LoRA settings: ``rank``, ``alpha`` and ``targets``.
LORA_PRESETS: dict[str, dict[str, Any]] = {"paper": {"rank": 64, "alpha": 64.0, "targets": list(PAPER_LORA_TARGETS)}}

#: File name diffusers' ``load_lora_weights`` looks for.
LORA_WEIGHT_NAME = "pytorch_lora_weights.safetensors"


def has_lora(network: nn.Module) -> bool:
    """True when peft adapters are injected in ``network``."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    return any(isinstance(m, BaseTunerLayer) for m in network.modules())


def without_lora(network: nn.Module, merge: bool, inplace: bool = False) -> nn.Module:
    """A copy of ``network`` (or ``network`` itself with ``inplace``) with every peft LoRA layer replaced by its
    base layer.

    Args:
        network: a network with (or without) injected adapters; not modified unless ``inplace``.
        merge: fold the adapters into the base weights (W + (α/r)·B·A: the student) or drop them (the teacher).
        inplace: unwrap ``network`` itself (no copy of a large UNet).

    Returns:
        A plain module whose ``state_dict`` has the keys of the network before injection.
    """
    from peft.tuners.tuners_utils import BaseTunerLayer

    clean = network if inplace else copy.deepcopy(network)
    if hasattr(clean, "peft_config"):
        del clean.peft_config
    for name, module in list(clean.named_modules()):
        if isinstance(module, BaseTunerLayer):
            if merge:
                module.merge()
            parent_name, _, child = name.rpartition(".")
            parent = clean.get_submodule(parent_name) if parent_name else clean
            setattr(parent, child, module.get_base_layer())
    return clean


def _pipeline_class(kind: str) -> Any:
    from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline

    return StableDiffusionXLPipeline if kind == "sdxl" else StableDiffusionPipeline


def save_lora(network: nn.Module, lora_config: Any, folder: str | Path, kind: str) -> Path:
    """Save the adapters of ``network`` in diffusers' LoRA format (``folder/pytorch_lora_weights.safetensors``).

    Args:
        network: the student UNet with peft adapters (adapter ``default``).
        lora_config: the ``peft.LoraConfig`` used (stored as metadata so α survives the round trip).
        folder: output folder (created).
        kind: ``"sd"`` or ``"sdxl"`` (the pipeline class whose ``save_lora_weights`` writes the file).

    Returns:
        The weight file's path.
    """
    from peft.utils import get_peft_model_state_dict

    # peft-format keys (``…to_q.lora_A.weight``), which diffusers' loaders read as they are; the older
    # ``convert_state_dict_to_diffusers`` (``lora.down``) keys lose the attention layers on load in diffusers 0.42
    state = get_peft_model_state_dict(network)
    state = {k: v.detach().float().cpu().contiguous() for k, v in state.items()}
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    metadata = lora_config.to_dict()
    metadata["target_modules"] = sorted(metadata["target_modules"])
    _pipeline_class(kind).save_lora_weights(
        folder, unet_lora_layers=state, unet_lora_adapter_metadata=metadata, weight_name=LORA_WEIGHT_NAME
    )
    return folder / LORA_WEIGHT_NAME


def load_lora_into(pipe: Any, folder: str | Path, adapter_name: str = "student") -> None:
    """``pipe.load_lora_weights(folder)``, refusing a folder without a LoRA file in one line.

    Raises:
        UserError: no ``pytorch_lora_weights.safetensors`` in ``folder``.
    """
    path = Path(folder) / LORA_WEIGHT_NAME
    if not path.is_file():
        raise UserError(f"{str(folder)!r} holds no {LORA_WEIGHT_NAME}; pass the lora/ folder of a `distill` run")
    from safetensors import SafetensorError

    try:
        pipe.load_lora_weights(str(folder), weight_name=LORA_WEIGHT_NAME, adapter_name=adapter_name)
    except (SafetensorError, OSError, ValueError, KeyError) as err:
        raise UserError(
            f"{str(path)!r} could not be loaded as a LoRA for this pipeline ({type(err).__name__})"
        ) from err
