"""Shared fixtures of the fusemix tests (importlib mode: test modules cannot import each other)."""

from __future__ import annotations

import os

import pytest

# No test may reach the network: every model is built tiny, saved to tmp_path and loaded from there.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
