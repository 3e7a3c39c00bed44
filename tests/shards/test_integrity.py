"""Verify an output folder against its manifest (turbsim/shards/integrity.py): a good folder
passes; a flipped byte, missing, unlisted and temporary files, wrong counts and sizes, and an
incomplete shard are each named."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
from shards_samples import H, W, make_sample, write_shard

from turbsim import shards
from turbsim.shards import ShardInfo, shard_path


# -------------------------------------------------------------------------------- verify
def test_verify_good_folder(dataset: Path) -> None:
    assert shards.verify(dataset) == []


def test_verify_catches_a_flipped_byte(dataset: Path) -> None:
    path = shard_path(dataset, "train", 1)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    problems = shards.verify(dataset)
    assert any(p.startswith(f"{path}: sha256 mismatch") for p in problems), problems
    assert all(p.startswith(str(path)) for p in problems)


def test_verify_catches_missing_unlisted_and_tmp(dataset: Path, rng: np.random.Generator):
    missing = shard_path(dataset, "val", 0)
    missing.unlink()
    extra = shard_path(dataset, "train", 7)
    write_shard(dataset, "train", 7, [make_sample(rng, "x")])
    tmp = dataset / "train" / "shard-00002.h5.99-00.tmp"
    tmp.write_bytes(b"")
    assert shards.verify(dataset) == [
        f"{missing}: missing (listed in the manifest)",
        f"{extra}: shard file not listed in the manifest",
        f"{tmp}: leftover temporary file (interrupted write; delete it)",
    ]


def test_verify_catches_a_wrong_count_and_size(dataset: Path) -> None:
    manifest = shards.read_manifest(dataset)
    manifest["shards"][0]["samples"] = 4
    manifest["shards"][2]["bytes"] += 1
    shards.write_manifest(dataset, manifest)
    problems = shards.verify(dataset)
    first, val = shard_path(dataset, "train", 0), shard_path(dataset, "val", 0)
    assert f"{first}: attribute samples = 3, the manifest 4" in problems
    assert any(p.startswith(f"{first}: distorted is uint8 (3, {H}, {W}, 3)") for p in problems)
    assert any(p.startswith(f"{val}: size ") for p in problems)
    assert all(p.startswith((str(first), str(val))) for p in problems)


def test_verify_catches_an_incomplete_shard(dataset: Path) -> None:
    path = shard_path(dataset, "val", 0)
    with h5py.File(path, "a") as f:
        f.attrs["complete"] = False
    info = ShardInfo.from_dict(shards.read_manifest(dataset)["shards"][2])
    manifest = shards.read_manifest(dataset)
    manifest["shards"][2] = {
        **info.to_dict(),
        "bytes": path.stat().st_size,
        "sha256": shards.sha256_file(path),
    }
    shards.write_manifest(dataset, manifest)
    assert shards.verify(dataset) == [
        f"{path}: attribute complete is not True (an interrupted write)"
    ]
