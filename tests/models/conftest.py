"""Fixtures shared by this folder's tests (moved from test_models.py, unchanged)."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """Tiny tensors gain nothing from threads, and on shared, busy cores OpenMP threads spin
    against each other (10x slower); restored afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _seeded_torch() -> None:
    """Initial weights drawn from torch's global generator do not depend on the test order."""
    torch.manual_seed(1234)


@pytest.fixture
def gen() -> torch.Generator:
    return torch.Generator().manual_seed(20201130)
