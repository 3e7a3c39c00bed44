"""Shared fixtures: a private correlation-table cache, seeded generators, reference parameters."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))


_made_cache: str | None = None


def pytest_configure(config: pytest.Config) -> None:
    """Tests never read or pollute the user's table cache: a fresh folder per session, unless
    TURBSIM_TEST_CACHE_DIR names one to reuse (handy while developing)."""
    global _made_cache
    reuse = os.environ.get("TURBSIM_TEST_CACHE_DIR")
    if reuse:
        os.environ["TURBSIM_CACHE_DIR"] = reuse
    else:
        _made_cache = tempfile.mkdtemp(prefix="turbsim-test-cache-")
        os.environ["TURBSIM_CACHE_DIR"] = _made_cache


def pytest_unconfigure(config: pytest.Config) -> None:
    if _made_cache:
        shutil.rmtree(_made_cache, ignore_errors=True)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20201130)


@pytest.fixture(scope="session")
def reference_params():
    """The reference camera of the Matlab original: 300 mm f/5.6, 4 um pixels, 2 km, h = 4 m."""
    from turbsim import TurbulenceParams

    return TurbulenceParams(cn2=1e-12, path_length_m=2000.0, aperture_m=0.3 / 5.6)


@pytest.fixture(scope="module")
def torch_one_thread():
    """torch on one thread for a test module (tiny tensors: threads only cost), then restored.

    torch is imported here, not at the top, so turbsim's tests run without it.
    """
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
