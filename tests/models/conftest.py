"""Fixtures shared by this folder's tests (moved from test_models.py)."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread(torch_one_thread: None) -> None:
    """Tiny tensors gain nothing from threads, and on shared, busy cores OpenMP threads spin
    against each other (10x slower): every module of this folder runs on one torch thread
    (tests/conftest.py's ``torch_one_thread``), restored afterwards."""


@pytest.fixture(autouse=True)
def _seeded_torch() -> None:
    """Initial weights drawn from torch's global generator do not depend on the test order."""
    torch.manual_seed(1234)


@pytest.fixture
def gen() -> torch.Generator:
    return torch.Generator().manual_seed(20201130)
