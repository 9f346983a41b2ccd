"""Fixtures for the cross-package tests."""

from __future__ import annotations

import shutil

import pytest


@pytest.fixture(scope="session")
def uv() -> str:
    exe = shutil.which("uv")
    if exe is None:
        pytest.fail("uv is not on PATH; the workspace tests build wheels with it (pip install uv)")
    return exe
