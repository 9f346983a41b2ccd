"""Reference §7 item 9: LoRA zero-init, gradients only on LoRA, no gradient into the teacher or targets."""

from __future__ import annotations

import pytest
import torch

from direct_cms.grid import TimeGrid
from direct_cms.guidance import GuidedTeacher
from direct_cms.networks import MLPDenoiser, build_digits_unet
from direct_cms.objectives import cd_target, l2_loss, student_output
from direct_cms.solvers import DDIMSolver
from direct_cms.students import StudentTeacher
from sixlab_shared import UserError


def _inputs(gen):
    return torch.randn(3, 1, 8, 8, generator=gen), torch.tensor([1000, 500, 10]), torch.tensor([1, 2, 10])


def test_lora_student_starts_equal_and_trains_only_lora(ddpm_scheduler, gen):
    torch.manual_seed(0)
    unet = build_digits_unet(10, 8)
    base = {k: v.clone() for k, v in unet.state_dict().items()}
    with torch.no_grad():
        reference = unet(*_inputs(gen)[:2], class_labels=_inputs(gen)[2]).sample
    models = StudentTeacher(unet, "lora", rank=4, target_modules=["to_q", "to_k", "to_v", "conv1", "time_emb_proj"])
    x, t, y = _inputs(torch.Generator().manual_seed(0))
    torch.testing.assert_close(models(x, t, y), models.teacher_eps(x, t, y), atol=0, rtol=0)
    torch.testing.assert_close(models.teacher_eps(x, t, y), reference, atol=1e-6, rtol=1e-6)
    trainable = [n for n, p in models.network.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    grid = TimeGrid.from_scheduler(ddpm_scheduler, 10)
    teacher = GuidedTeacher(models.teacher_eps, 3.0, torch.tensor(10))
    t = torch.tensor([1000, 500, 100])
    target = cd_target(teacher, DDIMSolver(grid), models.student_eps, x, t, y)
    assert not target.requires_grad
    loss = l2_loss(student_output(models, grid, x, t, y), target)
    loss.backward()
    for name, p in models.network.named_parameters():
        if "lora_" not in name:
            assert p.grad is None, name
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in models.trainable_parameters())
    # the teacher's weights are untouched (base weights of the wrapped layers unchanged)
    after = {k.replace(".base_layer", ""): v for k, v in models.network.state_dict().items() if "lora_" not in k}
    for key, value in base.items():
        torch.testing.assert_close(after[key], value, atol=0, rtol=0)


def test_lora_adapters_change_student_not_teacher(gen):
    torch.manual_seed(0)
    models = StudentTeacher(MLPDenoiser(hidden=16, depth=2), "lora", rank=2)
    x, t, y = torch.randn(4, 2, generator=gen), torch.tensor([1, 10, 100, 1000]), torch.tensor([0, 1, 2, 8])
    before = models.teacher_eps(x, t, y).clone()
    with torch.no_grad():
        for p in models.trainable_parameters():
            p.add_(0.1)
    assert not torch.allclose(models(x, t, y), before)
    torch.testing.assert_close(models.teacher_eps(x, t, y), before, atol=0, rtol=0)


def test_full_student_and_state_roundtrip(gen):
    torch.manual_seed(0)
    models = StudentTeacher(MLPDenoiser(hidden=16, depth=2), "full")
    assert all(p.requires_grad for p in models.network.parameters())
    state = {k: v.clone() + 1 for k, v in models.trainable_state_dict().items()}
    models.load_trainable_state_dict(state)
    assert all(torch.equal(models.trainable_state_dict()[k], v) for k, v in state.items())
    with pytest.raises(UserError, match="does not match"):
        models.load_trainable_state_dict({"nope": torch.zeros(1)})


def test_unknown_lora_targets_is_user_error():
    with pytest.raises(UserError, match="none of the LoRA target modules"):
        StudentTeacher(MLPDenoiser(hidden=8, depth=1), "lora", target_modules=["does_not_exist"])
