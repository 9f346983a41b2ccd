"""The encoder registry, load_encoder's validation and the base-class contract."""

from __future__ import annotations

import pytest
import torch

from dgm_eval.encoders import ENCODER_NAMES, REGISTRY, EncoderInfo, list_encoders, load_encoder
from dgm_eval.encoders.registry import EncoderRegistry
from sixlab_shared import UserError


def _info(name: str = "toy", **kwargs) -> EncoderInfo:
    return EncoderInfo(name=name, dim=4, weight_source="none", preprocessing="none", **kwargs)


def _builder(arch, *, weights, depth, clean_resize, seed):  # pragma: no cover - never called
    raise AssertionError


def test_registry_refuses_duplicates_and_bad_names():
    registry = EncoderRegistry()
    registry.register(_info(), _builder)
    with pytest.raises(ValueError, match="already registered"):
        registry.register(_info(), _builder)
    for bad in (" toy2", "toy2 ", "Toy2", "toy-2", "2toy", ""):
        with pytest.raises(ValueError, match="lower-case identifier"):
            registry.register(_info(bad), _builder)
    with pytest.raises(ValueError, match="default arch"):
        registry.register(_info("archy", archs=("a", "b"), default_arch="c"), _builder)
    with pytest.raises(ValueError, match="default arch"):
        registry.register(_info("archless", default_arch="c"), _builder)
    with pytest.raises(TypeError, match="callable builder"):
        registry.register(_info("nobuilder"), None)
    with pytest.raises(ValueError, match="must say why"):
        registry.register(_info("noreason", supported=False), None)
    with pytest.raises(TypeError, match="EncoderInfo"):
        registry.register({"name": "dict"}, _builder)
    assert registry.names() == ("toy",)


def test_names_and_infos_agree():
    infos = list_encoders()
    assert tuple(info.name for info in infos) == ENCODER_NAMES
    assert {"pixel", "random"} <= set(ENCODER_NAMES)
    for info in infos:
        data = info.as_dict()
        assert data["name"] == info.name
        assert info.supported == (info.reason is None)
        assert info.weight_source and info.preprocessing
        if info.supported:
            assert info.dim_for(None) and info.dim_for(None) > 0


def test_load_encoder_rejects_unknown_names_and_options():
    with pytest.raises(UserError, match="unknown encoder 'dinov3'; choose one of: .*pixel, random"):
        load_encoder("dinov3", device="cpu")
    with pytest.raises(UserError, match="no architecture choice"):
        load_encoder("pixel", "vitl14", device="cpu")
    with pytest.raises(UserError, match="has no pretrained weights"):
        load_encoder("random", weights="/tmp/x.pt", device="cpu")
    with pytest.raises(UserError, match="one feature layer"):
        load_encoder("pixel", depth=-1, device="cpu")


@pytest.mark.parametrize("name", ["pixel", "random"])
def test_encoders_are_frozen_and_stay_in_eval_mode(name):
    encoder = load_encoder(name, device="cpu")
    assert not encoder.training
    assert all(not p.requires_grad for p in encoder.parameters())
    encoder.train()
    assert not encoder.training
    assert encoder.preprocess_id().startswith(f"{name}|")
    with pytest.raises(ValueError, match=r"expected a \(N, 3, H, W\) tensor"):
        encoder(torch.zeros(3, 32, 32))
    with pytest.raises(ValueError, match="expected a floating tensor"):
        encoder(torch.zeros(1, 3, *encoder.input_size, dtype=torch.uint8))
    with pytest.raises(ValueError, match="inputs from transform"):
        encoder(torch.zeros(1, 3, 7, 7))
    with pytest.raises(NotImplementedError, match="no classifier head"):
        encoder.logits(torch.zeros(1, 3, *encoder.input_size))


def test_registry_entries_are_consistent():
    for name in ENCODER_NAMES:
        entry = REGISTRY[name]
        assert entry.info.name == name
        assert (entry.builder is not None) == entry.info.supported


def test_default_device_is_the_local_gpu_only_under_several_cuda_processes(monkeypatch):
    from dgm_eval.encoders import default_process_device

    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_RANK", "3")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert default_process_device() == "cuda:3"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert default_process_device() is None
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert default_process_device() is None


def test_any_corrupt_weights_file_is_a_user_error(tmp_path):
    # torch.load on random bytes raises UnpicklingError most of the time, but also IndexError, KeyError and
    # UnicodeDecodeError (about 1 file in 11); each must be the same one-line error, never a traceback.
    import random

    from dgm_eval.encoders.weights import _torch_load

    rng = random.Random(0)
    path = tmp_path / "bad.pth"
    for _ in range(300):
        path.write_bytes(rng.randbytes(rng.choice([1, 40, 300])))
        with pytest.raises(UserError, match="not a PyTorch state-dict file"):
            _torch_load("dinov2", path)
