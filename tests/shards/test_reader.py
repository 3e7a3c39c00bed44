"""turbsim.shards.reader, one shard read back: ShardReader pickles before and after access and works
in a spawned process, errors name the file, is_published_shard, read_one."""

from __future__ import annotations

import multiprocessing
import pickle
from pathlib import Path

import h5py
import numpy as np
import pytest
from shards_samples import make_sample, write_shard

from turbsim import shards
from turbsim.shards import ShardError, ShardReader, ShardWriter, shard_path


# -------------------------------------------------------------------------------- reader
def _names_and_checksum(reader: ShardReader) -> tuple[list[str], int]:
    return reader.names, int(sum(int(reader[i]["distorted"].sum()) for i in range(len(reader))))


def test_reader_pickles_before_and_after_access(dataset: Path) -> None:
    path = shard_path(dataset, "train", 0)
    reader = ShardReader(path, locking=False)
    fresh = pickle.loads(pickle.dumps(reader))
    expected = _names_and_checksum(reader)  # opens the file
    assert reader._file is not None
    state = pickle.dumps(reader)
    assert b"HDF5" not in state and len(state) < 500  # the handle and caches were dropped
    opened = pickle.loads(state)
    assert opened._file is None and opened.locking is False
    assert _names_and_checksum(opened) == _names_and_checksum(fresh) == expected
    reader.close()
    assert _names_and_checksum(reader) == expected  # reopens after close


def test_reader_works_in_a_spawned_process(dataset: Path) -> None:
    reader = ShardReader(shard_path(dataset, "train", 0))
    expected = _names_and_checksum(reader)
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        assert pool.apply(_names_and_checksum, (reader,)) == expected


def test_reader_errors_name_the_file(tmp_path: Path, rng: np.random.Generator) -> None:
    missing = tmp_path / "nope.h5"
    reader = ShardReader(missing)  # lazy: no error yet
    with pytest.raises(ShardError, match=f"{missing}: no such file"):
        len(reader)
    junk = tmp_path / "junk.h5"
    junk.write_bytes(b"not hdf5" * 10)
    with pytest.raises(ShardError, match=f"{junk}: not a readable HDF5 file"):
        _ = ShardReader(junk).names
    write_shard(tmp_path, "train", 0, [make_sample(rng, "a")])
    path = shard_path(tmp_path, "train", 0)
    with h5py.File(path, "a") as f:
        f.attrs["complete"] = False
    with pytest.raises(ShardError, match=f"{path}: incomplete shard"):
        ShardReader(path)[0]


def test_is_published_shard_valid(dataset: Path, tmp_path: Path) -> None:
    path = shard_path(dataset, "train", 1)
    assert shards.is_published_shard_valid(path, ["train_1_0", "train_1_1"])
    assert not shards.is_published_shard_valid(path, ["train_1_1", "train_1_0"])
    assert not shards.is_published_shard_valid(path, ["train_1_0"])
    assert not shards.is_published_shard_valid(tmp_path / "missing.h5", [])
    junk = tmp_path / "junk.h5"
    junk.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 100)
    assert not shards.is_published_shard_valid(junk, [])
    with h5py.File(path, "a") as f:
        f.attrs["complete"] = False
    assert not shards.is_published_shard_valid(path, ["train_1_0", "train_1_1"])


def test_read_one_dataset_equals_the_sample(tmp_path) -> None:
    """ShardReader.read serves one dataset of one sample, equal to __getitem__'s."""
    import numpy as np

    from turbsim.shards import ShardReader

    rng = np.random.default_rng(3)
    path = tmp_path / "s.h5"
    with ShardWriter(path, "val", 0, 6, 8, ("cn2",), store_flow="int16") as writer:
        for k in range(2):
            writer.add(
                name=f"aachen_000000_00001{k}",
                distorted=rng.integers(0, 256, (6, 8, 3), dtype=np.uint8),
                clean=rng.integers(0, 256, (6, 8, 3), dtype=np.uint8),
                label=rng.integers(0, 19, (6, 8), dtype=np.uint8),
                flow=rng.normal(0, 2, (2, 6, 8)).astype(np.float32),
                params={"cn2": 1e-13},
            )
    with ShardReader(path) as reader:
        for k in range(2):
            sample = reader[k]
            for field in ("distorted", "clean", "label", "flow"):
                np.testing.assert_array_equal(reader.read(field, k), sample[field])
        with pytest.raises(KeyError, match="nope"):
            reader.read("nope", 0)
        with pytest.raises(IndexError, match="out of range"):
            reader.read("label", 2)
