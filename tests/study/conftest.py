"""Fixtures shared by this folder's tests (moved from test_study_runner.py, unchanged)."""

from __future__ import annotations

from pathlib import Path

import pytest

from turbsim.pipeline.generate import generate
from turbsim.pipeline.plan import make_plan
from turbsim.pipeline.recipe import resolve_recipe
from turbsim.sources.synthetic import write_sample_tree


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> Path:
    """4 train and 2 val samples of 64 x 128 with the true displacement stored (int16)."""
    tmp = tmp_path_factory.mktemp("study-shards")
    per_split = {"train": 4, "val": 2}
    write_sample_tree(tmp / "cs", n=4, height=64, width=128, seed=0, per_split=per_split,
                      splits=tuple(per_split))  # fmt: skip
    recipe = resolve_recipe(
        None,
        {"compression": "lzf", "shard_size": 4, "cn2": 1e-12, "splits": list(per_split),
         "store_flow": "int16"},
    )  # fmt: skip
    generate(make_plan(tmp / "cs", recipe), tmp / "shards")
    return tmp / "shards"
