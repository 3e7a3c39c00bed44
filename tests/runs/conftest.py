"""Fixtures shared by this folder's tests (moved from test_original.py)."""

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
    torch.manual_seed(4321)
