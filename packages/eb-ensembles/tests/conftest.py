"""Shared fixtures for the eb-ensembles tests: no network anywhere (reference §5 item 18), offline hubs."""

from __future__ import annotations

import os
import socket

import pytest
import torch


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Every test runs with outgoing connections refused: nothing may download data or weights."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

    def refuse(*args, **kwargs):
        raise OSError("network access is disabled in the eb-ensembles tests")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    yield


@pytest.fixture
def toy_classification():
    """A small 3-class problem, float64, fixed seed: ``(x (240, 5), y (240,))``."""
    g = torch.Generator().manual_seed(123)
    x = torch.randn(240, 5, generator=g, dtype=torch.float64)
    y = (x[:, 0] > 0).long() + (x[:, 1] > 0.5).long()
    return x, y


@pytest.fixture
def toy_regression():
    """A small heteroscedastic 1-D regression problem, float64: ``(x (120, 1), y (120,))``."""
    g = torch.Generator().manual_seed(7)
    x = torch.rand(120, 1, generator=g, dtype=torch.float64) * 4 - 2
    y = torch.sin(2 * x[:, 0]) + (0.1 + 0.2 * x[:, 0].abs()) * torch.randn(120, generator=g, dtype=torch.float64)
    return x, y
