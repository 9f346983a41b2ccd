"""Shared fixtures for the direct-cms tests (importlib mode: test modules cannot import each other)."""

from __future__ import annotations

import os

import pytest
import torch


def pytest_configure(config: pytest.Config) -> None:
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    # tensorboard's protobuf-generated modules and accelerate's tracker touch deprecated APIs on import
    config.addinivalue_line("filterwarnings", "ignore::DeprecationWarning:google.protobuf.*")
    config.addinivalue_line("filterwarnings", "ignore::DeprecationWarning:tensorboard.*")


@pytest.fixture(scope="session")
def tiny_teacher_dir(tmp_path_factory: pytest.TempPathFactory):
    """A digits teacher (width 8, 5 steps) saved with save_pretrained: loaded through the real code path."""
    from direct_cms.teacher import TeacherConfig, save_teacher, train_teacher

    folder = tmp_path_factory.mktemp("teacher")
    teacher, _ = train_teacher(TeacherConfig(dataset="digits", steps=5, batch_size=16, width=8, device="cpu"))
    save_teacher(teacher, folder)
    return folder


@pytest.fixture(scope="session")
def ring_teacher_dir(tmp_path_factory: pytest.TempPathFactory):
    """A 2-D MLP teacher trained briefly."""
    from direct_cms.teacher import TeacherConfig, save_teacher, train_teacher

    folder = tmp_path_factory.mktemp("ring_teacher")
    teacher, _ = train_teacher(TeacherConfig(dataset="ring", steps=200, batch_size=128, width=16, device="cpu"))
    save_teacher(teacher, folder)
    return folder


@pytest.fixture()
def ddpm_scheduler():
    from diffusers import DDPMScheduler

    return DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear", beta_start=1e-4, beta_end=0.02)


@pytest.fixture()
def gen():
    return torch.Generator().manual_seed(0)


@pytest.fixture(scope="session")
def classifier_path(tmp_path_factory: pytest.TempPathFactory):
    """A briefly trained digit classifier saved to disk (shared by the metric and CLI tests)."""
    from direct_cms.classifier import save_classifier, train_classifier
    from direct_cms.data import load_dataset

    path = tmp_path_factory.mktemp("classifier") / "clf.safetensors"
    save_classifier(train_classifier(load_dataset("digits"), seed=0, steps=150), path)
    return path
