"""Interoperability with torch-uncertainty: its per-member checkpoint layout and its metric conventions.

torch-uncertainty's deep ensemble (``torch_uncertainty.models.deep_ensembles``) is an ``nn.Module`` holding the
members in ``core_models = nn.ModuleList([...])``, so its ``state_dict`` keys are ``core_models.<m>.<name>``.
:func:`to_torch_uncertainty_state_dict` writes a :class:`~eb_ensembles.ensemble.DeepEnsemble` in that layout
(``load_state_dict`` on ``deep_ensembles([factory() for _ in range(M)], reset_model_parameters=False)`` accepts
it), and :func:`from_torch_uncertainty_state_dict` reads one back.

Metric conventions that differ (this package → torch-uncertainty):

* member predictions are ``(M, N, K)`` here, ``(B, N_estimators, C)`` there (:func:`to_torch_uncertainty_probs`);
* ``entropy`` here is the entropy of the averaged predictive ``H[p̄]`` (total uncertainty); torch-uncertainty's
  ``Entropy`` metric on ``(B, N, C)`` input is the *mean member entropy* ``mean_m H[p_m]`` (our
  ``expected_entropy``, the aleatoric part); its ``MutualInformation`` equals our ``mutual_information``;
* torch-uncertainty's deep ensemble forward returns the members' logits concatenated along the batch
  (``(N·B, C)``); the predictive is formed downstream, by averaging probabilities, as here;
* Brier here is summed over classes (range [0, 2]); ECE uses torchmetrics' binning in float32 in both.
"""

from __future__ import annotations

import re

import torch

from eb_ensembles.checks import InvalidInputError, check_ndim
from eb_ensembles.ensemble import DeepEnsemble

__all__ = ["from_torch_uncertainty_state_dict", "to_torch_uncertainty_probs", "to_torch_uncertainty_state_dict"]

_KEY = re.compile(r"^core_models\.(\d+)\.(.+)$")


def to_torch_uncertainty_state_dict(ensemble: DeepEnsemble) -> dict[str, torch.Tensor]:
    """The usable members' states under ``core_models.<m>.<name>`` (m counts usable members from 0)."""
    out: dict[str, torch.Tensor] = {}
    for m, module in enumerate(ensemble.modules()):
        for name, tensor in module.state_dict().items():
            out[f"core_models.{m}.{name}"] = tensor.detach().clone()
    return out


def from_torch_uncertainty_state_dict(state: dict[str, torch.Tensor]) -> list[dict[str, torch.Tensor]]:
    """Split a torch-uncertainty deep-ensemble ``state_dict`` into one state per member (in member order).

    Raises:
        InvalidInputError: a key outside ``core_models.<m>.<name>``, or member indices with gaps.
    """
    members: dict[int, dict[str, torch.Tensor]] = {}
    for key, tensor in state.items():
        match = _KEY.match(key)
        if match is None:
            raise InvalidInputError(f"key {key!r} is not in torch-uncertainty's 'core_models.<m>.<name>' layout")
        members.setdefault(int(match.group(1)), {})[match.group(2)] = tensor
    if sorted(members) != list(range(len(members))):
        raise InvalidInputError(f"member indices {sorted(members)} are not 0..{len(members) - 1}")
    return [members[m] for m in range(len(members))]


def to_torch_uncertainty_probs(member_probs: torch.Tensor) -> torch.Tensor:
    """``(M, N, K)`` member probabilities → torch-uncertainty's ``(N, M, K)`` (batch first)."""
    check_ndim("member_probs", member_probs, 3, "(M, N, K)")
    return member_probs.transpose(0, 1)
