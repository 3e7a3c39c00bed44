"""Fixtures shared by this folder's tests (moved from test_shards_folder.py, unchanged)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from shards_samples import make_dataset


@pytest.fixture
def dataset(tmp_path: Path, rng: np.random.Generator) -> Path:
    """An output folder made by :func:`make_dataset`: train 3 + 2 samples, val 1."""
    root = tmp_path / "out"
    make_dataset(root, rng)
    return root
