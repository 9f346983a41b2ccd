"""Device choice, autocast dtype rule and batch moving."""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import pytest
import torch

import sixlab_shared.device as device_mod
from sixlab_shared import DEVICE_ENV_VAR, UserError, choose_autocast_dtype, get_device, move_to_device


@pytest.fixture
def no_accelerators(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(device_mod, "_mps_available", lambda: False)
    monkeypatch.delenv(DEVICE_ENV_VAR, raising=False)


def test_automatic_choice_prefers_cuda_then_mps_then_cpu(monkeypatch, no_accelerators):
    assert get_device() == torch.device("cpu")
    monkeypatch.setattr(device_mod, "_mps_available", lambda: True)
    assert get_device() == torch.device("mps")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert get_device() == torch.device("cuda")


def test_env_var_overrides_automatic_choice_and_argument_overrides_env(monkeypatch, no_accelerators):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setenv(DEVICE_ENV_VAR, "cpu")
    assert get_device() == torch.device("cpu")  # env beats the automatic cuda
    monkeypatch.setenv(DEVICE_ENV_VAR, "cuda")
    assert get_device("cpu") == torch.device("cpu")  # argument beats env


def test_unavailable_or_unknown_device_is_a_one_line_user_error(monkeypatch, no_accelerators):
    with pytest.raises(UserError, match="CUDA is not available"):
        get_device("cuda")
    with pytest.raises(UserError, match="MPS is not available"):
        get_device("mps")
    with pytest.raises(UserError, match="not a device"):
        get_device("gpu0")
    monkeypatch.setenv(DEVICE_ENV_VAR, "tpu")
    with pytest.raises(UserError, match=DEVICE_ENV_VAR):
        get_device()


@pytest.mark.parametrize(
    ("device_type", "bf16", "expected"),
    [
        ("cuda", True, torch.bfloat16),
        ("cuda", False, torch.float16),
        ("mps", False, torch.float16),
        ("mps", True, torch.float16),
        ("cpu", True, torch.float32),
        ("cpu", False, torch.float32),
    ],
)
def test_autocast_dtype_rule_with_faked_capabilities(device_type, bf16, expected):
    assert choose_autocast_dtype(device_type, bf16_supported=bf16) is expected


def test_autocast_dtype_queries_cuda_bf16_support(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert device_mod.autocast_dtype("cuda") is torch.float16
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert device_mod.autocast_dtype("cuda") is torch.bfloat16
    assert device_mod.autocast_dtype("cpu") is torch.float32


class Pair(NamedTuple):
    a: torch.Tensor
    b: int


@dataclasses.dataclass
class Batch:
    x: torch.Tensor
    label: str


def test_move_to_device_keeps_structure_and_non_tensors():
    t = torch.arange(3)
    batch = {"pair": Pair(t, 1), "items": [t, (t, "s")], "dc": Batch(t, "y"), "n": None}
    moved = move_to_device(batch, "cpu")
    assert isinstance(moved["pair"], Pair) and moved["pair"].b == 1
    assert isinstance(moved["items"], list) and isinstance(moved["items"][1], tuple)
    assert moved["items"][1][1] == "s" and moved["n"] is None
    assert isinstance(moved["dc"], Batch) and moved["dc"].label == "y"
    assert torch.equal(moved["dc"].x, t)


def test_move_to_device_passes_device_and_non_blocking_to_every_tensor(monkeypatch):
    calls = []

    def fake_to(self, device, non_blocking=False):
        calls.append((str(device), non_blocking))
        return self

    monkeypatch.setattr(torch.Tensor, "to", fake_to)
    move_to_device({"a": torch.zeros(1), "b": [torch.ones(1)]}, "meta", non_blocking=True)
    assert calls == [("meta", True), ("meta", True)]
