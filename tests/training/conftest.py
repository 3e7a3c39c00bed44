"""Fixtures shared by this folder's tests (moved from test_train.py, unchanged)."""

from __future__ import annotations

from pathlib import Path

import pytest
from train_helpers import _make_shards


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> Path:
    """4 train samples (2 steps per epoch at batch 2), 3 val samples, 64 x 128."""
    return _make_shards(tmp_path_factory.mktemp("train-shards"), train=4, val=3)
