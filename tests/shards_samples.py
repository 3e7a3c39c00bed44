"""Tiny shards for the tests of turbsim.shards (test_writer.py, test_reader.py,
test_shards_folder.py), and :func:`stored_samples`, every sample of a generated folder (the
generate tests)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from turbsim import shards
from turbsim.shards import ShardInfo, ShardWriter, shard_path

H, W = 8, 12
KEYS = ("cn2", "path_length_m", "sigma_r_px")
NAMES = ["aachen_000000_000019", "zürich_000001_000019", "bochum_000002_000019"]


def make_sample(rng: np.random.Generator, name: str, flow_std: float = 2.0) -> dict[str, Any]:
    return {
        "name": name,
        "distorted": rng.integers(0, 256, (H, W, 3), dtype=np.uint8),
        "clean": rng.integers(0, 256, (H, W, 3), dtype=np.uint8),
        "label": rng.choice(np.array([0, 1, 7, 18, 255], np.uint8), (H, W)),
        "params": {
            "cn2": float(10 ** rng.uniform(-15, -12)),
            "path_length_m": float(rng.uniform(500, 3000)),
            "sigma_r_px": float(rng.uniform(0.1, 3)),
        },
        "variant": int(rng.integers(0, 3)),
        "flow": rng.normal(0, flow_std, (2, H, W)).astype(np.float32),
    }


def write_shard(
    root: Path, split: str, index: int, samples: list[dict[str, Any]], **kwargs: Any
) -> ShardInfo:
    flow = kwargs.get("store_flow")
    with ShardWriter(shard_path(root, split, index), split, index, H, W, KEYS, **kwargs) as w:
        for s in samples:
            w.add(**{**s, "flow": s["flow"] if flow else None})
    assert w.info is not None
    return w.info


def make_dataset(root: Path, rng: np.random.Generator) -> dict[str, Any]:
    """train: shards of 3 and 2 samples; val: one of 1 sample; a hand-built manifest."""
    layout = [("train", 0, 3), ("train", 1, 2), ("val", 0, 1)]
    infos = [
        write_shard(root, split, k, [make_sample(rng, f"{split}_{k}_{i}") for i in range(n)])
        for split, k, n in layout
    ]
    manifest = {
        "schema_version": shards.MANIFEST_SCHEMA_VERSION,
        "tool_version": "0.1.0",
        "created": "2025-01-01T00:00:00+00:00",
        "skipped": [{"path": "x.png", "reason": "unreadable"}],
        "shards": [i.to_dict() for i in infos],
    }
    shards.write_manifest(root, manifest)
    return manifest


def stored_samples(root: Path) -> dict[tuple[str, str, int], dict[str, np.ndarray]]:
    """Every stored sample of the shard folder ``root``, keyed by (split, name, variant)."""
    out = {}
    for info in shards.read_manifest(root)["shards"]:
        with shards.ShardReader(root / info["file"]) as reader:
            for i in range(len(reader)):
                item = reader[i]
                out[(info["split"], item["name"], int(item["variant"]))] = item
    return out
