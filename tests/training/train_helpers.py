"""Helpers shared by this folder's tests (moved from test_train.py, unchanged)."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from feedbackseg.config import TrainConfig, resolve_config
from turbsim.pipeline.generate import generate
from turbsim.pipeline.plan import make_plan
from turbsim.pipeline.recipe import resolve_recipe
from turbsim.sources.synthetic import write_sample_tree
from turbsim_cli.fbseg_cmd import main

FAST = ["--small", "--height", "32", "--batch-size", "2", "--workers", "0", "--device", "cpu"]


def _make_shards(tmp: Path, train: int, val: int | None) -> Path:
    src = tmp / "cs"
    per_split = {"train": train} if val is None else {"train": train, "val": val}
    write_sample_tree(src, n=train, height=64, width=128, seed=0, per_split=per_split,
                      splits=tuple(per_split))  # fmt: skip
    recipe = resolve_recipe(
        None,
        {"compression": "lzf", "shard_size": 4, "cn2": 1e-13, "splits": list(per_split)},
    )
    out = tmp / "shards"
    generate(make_plan(src, recipe), out)
    return out


def _cli(*args: str):
    return CliRunner().invoke(main, ["train", *args])


def _records(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def _config(shards: Path, out: Path, **overrides) -> TrainConfig:
    base = {"small": True, "height": 32, "batch_size": 2, "workers": 0, "device": "cpu"}
    return resolve_config(shards, out, overrides={**base, **overrides})


def _quiet(_: str) -> None:
    pass
