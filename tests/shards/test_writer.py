"""turbsim.shards.writer, one shard: the HDF5 schema, the atomic writer, and the round trip
through the reader.

Reading one shard back: test_reader.py; the folder-level parts (manifest, verify, summary, CLI,
package): test_shards_folder.py.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
from shards_samples import KEYS, NAMES, H, W, make_sample, write_shard

from turbsim import _files, shards
from turbsim.shards import ShardInfo, ShardReader, ShardWriter, shard_path


# ---------------------------------------------------------------------------- round trip
@pytest.mark.parametrize("compression", ["gzip", "lzf", "none"])
@pytest.mark.parametrize("store_flow", [None, "int16", "float16"])
def test_round_trip_is_bit_exact(
    tmp_path: Path, rng: np.random.Generator, compression: str, store_flow: str | None
) -> None:
    samples = [make_sample(rng, n) for n in NAMES]
    info = write_shard(
        tmp_path, "train", 3, samples, compression=compression, store_flow=store_flow
    )
    path = shard_path(tmp_path, "train", 3)
    assert info == ShardInfo(
        "train/shard-00003.h5", "train", 3, 3, path.stat().st_size, shards.sha256_file(path)
    )
    with ShardReader(path) as reader:
        assert len(reader) == 3
        assert reader.names == NAMES
        np.testing.assert_array_equal(reader.variants, [s["variant"] for s in samples])
        for key in KEYS:
            np.testing.assert_array_equal(reader.params[key], [s["params"][key] for s in samples])
        for i, s in enumerate(samples):
            got = reader[i]
            for key in ("distorted", "clean", "label"):
                assert got[key].dtype == np.uint8
                np.testing.assert_array_equal(got[key], s[key])
            assert got["name"] == s["name"] and got["variant"] == s["variant"]
            assert got["params"] == s["params"]  # float64: exact
            if store_flow is None:
                assert "flow" not in got
            else:
                assert got["flow"].dtype == np.float32 and got["flow"].shape == (2, H, W)
                error = np.abs(got["flow"] - s["flow"]).max()
                # int16: rounding to 1/64 px; float16: 11-bit mantissa, |flow| < 16 here.
                assert error <= (1 / 128 if store_flow == "int16" else 16 * 2.0**-11)
                assert error > 0  # really quantised, not stored as float32
        assert reader[-1]["name"] == NAMES[-1]
        with pytest.raises(IndexError):
            reader[3]

    # The schema as any h5py user sees it.
    with h5py.File(path, "r") as f:
        assert isinstance(f.attrs["complete"], np.bool_) and f.attrs["complete"]
        assert f.attrs["schema_version"] == 1 and f.attrs["samples"] == 3
        assert (f.attrs["split"], f.attrs["shard_index"]) == ("train", 3)
        assert (f.attrs["height"], f.attrs["width"]) == (H, W)
        assert f.attrs["compression"] == compression
        assert f.attrs["flow_storage"] == (store_flow or "none")
        assert f["distorted"].chunks == (1, H, W, 3) and f["label"].chunks == (1, H, W)
        assert f["name"].asstr()[()].tolist() == NAMES
        assert f["variant"].dtype == np.int32
        assert sorted(f["params"]) == sorted(KEYS)
        assert f["params/cn2"].dtype == np.float64
        expected_filter = {"gzip": "gzip", "lzf": "lzf", "none": None}[compression]
        assert f["distorted"].compression == expected_filter
        if compression == "gzip":
            assert f.attrs["compression_level"] == shards.GZIP_LEVEL
            assert f["distorted"].compression_opts == shards.GZIP_LEVEL
            assert f["label"].shuffle and not f["distorted"].shuffle
        if store_flow is not None:
            assert f["flow"].chunks == (1, 2, H, W)
            assert f["flow"].dtype == (np.int16 if store_flow == "int16" else np.float16)
            assert f["flow"].attrs["clipped"] == 0


def test_int16_flow_clips_and_counts(tmp_path: Path, rng: np.random.Generator) -> None:
    sample = make_sample(rng, "a")
    sample["flow"][0, 0, :3] = [600.0, -700.0, 511.0]  # range is +-512 px at 1/64 px
    write_shard(tmp_path, "train", 0, [sample, make_sample(rng, "b")], store_flow="int16")
    path = shard_path(tmp_path, "train", 0)
    with ShardReader(path) as reader:
        row = reader[0]["flow"][0, 0, :3]
    np.testing.assert_array_equal(row, [32767 / 64, -32768 / 64, 511.0])
    with h5py.File(path) as f:
        assert f["flow"].attrs["clipped"] == 2
        assert f["flow"].attrs["scale"] == 1 / 64


def test_custom_flow_scale_and_float16_clipping(tmp_path: Path, rng: np.random.Generator) -> None:
    sample = make_sample(rng, "a")
    write_shard(tmp_path, "train", 0, [sample], store_flow="int16", flow_scale=0.1)
    decoded = ShardReader(shard_path(tmp_path, "train", 0))[0]["flow"]
    assert np.abs(decoded - sample["flow"]).max() <= 0.05 + 1e-6
    sample["flow"][1, 2, 3] = 1e6
    write_shard(tmp_path, "train", 1, [sample], store_flow="float16")
    with ShardReader(shard_path(tmp_path, "train", 1)) as reader:
        assert reader[0]["flow"][1, 2, 3] == np.finfo(np.float16).max
        assert reader.attrs["flow_storage"] == "float16"
    with h5py.File(shard_path(tmp_path, "train", 1)) as f:
        assert f["flow"].attrs["clipped"] == 1 and f["flow"].attrs["scale"] == 1.0


def test_wave_param_is_stored_as_strings(tmp_path: Path, rng: np.random.Generator) -> None:
    path = shard_path(tmp_path, "val", 0)
    with ShardWriter(path, "val", 0, H, W, (*KEYS, "wave"), compression="lzf") as writer:
        for wave in ("plane", "spherical"):
            s = make_sample(rng, wave)
            writer.add(
                s["name"], s["distorted"], s["clean"], s["label"], {**s["params"], "wave": wave}
            )
    reader = ShardReader(path)
    assert reader.params["wave"].tolist() == ["plane", "spherical"]
    assert reader[1]["params"]["wave"] == "spherical"


@pytest.mark.parametrize("expected_count", [None, 1, 2, 5])
def test_capacity_hint_does_not_change_the_result(
    tmp_path: Path, rng: np.random.Generator, expected_count: int | None
) -> None:
    samples = [make_sample(rng, n) for n in NAMES[:2]]
    write_shard(tmp_path, "train", 0, samples, expected_count=expected_count)
    with h5py.File(shard_path(tmp_path, "train", 0)) as f:
        assert f["distorted"].shape == (2, H, W, 3) and f["label"].shape == (2, H, W)
        np.testing.assert_array_equal(f["clean"][1], samples[1]["clean"])


def test_empty_shard(tmp_path: Path) -> None:
    info = write_shard(tmp_path, "test", 0, [])
    assert info.samples == 0
    reader = ShardReader(shard_path(tmp_path, "test", 0))
    assert len(reader) == 0 and reader.names == [] and reader.params["cn2"].shape == (0,)


# ------------------------------------------------------------------------------ atomicity
def test_final_path_appears_only_at_close(tmp_path: Path, rng: np.random.Generator) -> None:
    path = shard_path(tmp_path, "train", 0)
    writer = ShardWriter(path, "train", 0, H, W, KEYS)
    s = make_sample(rng, "a")
    writer.add(s["name"], s["distorted"], s["clean"], s["label"], s["params"])
    assert not path.exists()
    [tmp] = path.parent.iterdir()
    assert tmp.name.startswith(path.name) and tmp.name.endswith(".tmp")
    assert _files.is_temporary(tmp) and _files.temporary_owner(tmp) == os.getpid()
    assert not shards.SHARD_RE.match(tmp.name)
    info = writer.close()
    assert sorted(path.parent.iterdir()) == [path]
    assert writer.close() is info  # idempotent
    with pytest.raises(RuntimeError, match="after close"):
        writer.add(s["name"], s["distorted"], s["clean"], s["label"], s["params"])


def test_exception_in_with_publishes_nothing(tmp_path: Path, rng: np.random.Generator) -> None:
    path = shard_path(tmp_path, "train", 0)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"previous version")
    with pytest.raises(KeyError), ShardWriter(path, "train", 0, H, W, KEYS) as writer:
        s = make_sample(rng, "a")
        writer.add(s["name"], s["distorted"], s["clean"], s["label"], s["params"])
        raise KeyError("boom")
    assert writer.info is None
    assert sorted(path.parent.iterdir()) == [path]  # no tmp left
    assert path.read_bytes() == b"previous version"  # the existing file was not touched
    # A successful write then replaces it.
    write_shard(tmp_path, "train", 0, [make_sample(rng, "b")])
    assert ShardReader(path).names == ["b"]


def test_published_files_get_the_usual_permissions(tmp_path: Path, rng: np.random.Generator):
    """Shard and manifest are published 0o666 & ~umask (as ``open`` would), not mkstemp's 0600."""
    old = os.umask(0o027)
    try:
        info = write_shard(tmp_path, "train", 0, [make_sample(rng, "a")])
        manifest = shards.write_manifest(
            tmp_path, {"schema_version": 1, "shards": [info.to_dict()]}
        )
    finally:
        os.umask(old)
    for path in (shard_path(tmp_path, "train", 0), manifest):
        assert os.stat(path).st_mode & 0o777 == 0o640, path


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"distorted": np.zeros((H, W, 3), np.float32)}, "distorted must be uint8"),
        ({"clean": np.zeros((H, W + 1, 3), np.uint8)}, "clean must be uint8"),
        ({"label": np.zeros((H, W, 1), np.uint8)}, "label must be uint8"),
        ({"name": ""}, "name must be"),
        ({"variant": -1}, "variant must be"),
        ({"params": {"cn2": 1e-13, "path_length_m": 1.0}}, "missing key 'sigma_r_px'"),
        (
            {"params": {"cn2": 1e-13, "path_length_m": 1.0, "sigma_r_px": 1.0, "x": 2.0}},
            "unexpected key 'x'",
        ),
        (
            {"params": {"cn2": float("nan"), "path_length_m": 1.0, "sigma_r_px": 1.0}},
            r"params\['cn2'\] must be a finite number",
        ),
        ({"flow": None}, "flow missing"),
        ({"flow": np.zeros((2, H, W), np.int16)}, "flow must be float"),
        ({"flow": np.full((2, H, W), np.nan, np.float32)}, "flow has NaN"),
    ],
)
def test_add_rejects_bad_input_naming_file_and_field(
    tmp_path: Path, rng: np.random.Generator, change: dict[str, Any], match: str
) -> None:
    path = shard_path(tmp_path, "train", 0)
    with (
        pytest.raises(ValueError, match=match) as caught,
        ShardWriter(path, "train", 0, H, W, KEYS, store_flow="int16") as writer,
    ):
        writer.add(**{**make_sample(rng, "a"), **change})
    assert str(path) in str(caught.value)
    assert list(path.parent.iterdir()) == []


def test_flow_refused_when_not_stored(tmp_path: Path, rng: np.random.Generator) -> None:
    with (
        pytest.raises(ValueError, match="stores no flow"),
        ShardWriter(
            shard_path(tmp_path, "train", 0), "train", 0, H, W, KEYS, store_flow="none"
        ) as writer,
    ):
        writer.add(**make_sample(rng, "a"))


def test_bad_writer_arguments(tmp_path: Path) -> None:
    path = shard_path(tmp_path, "train", 0)
    for kwargs, match in [
        ({"compression": "zstd"}, "compression must be"),
        ({"store_flow": "float32"}, "store_flow must be"),
        ({"store_flow": "int16", "flow_scale": 0.0}, "flow_scale"),
        ({"param_keys": ("a", "a")}, "param_keys"),
    ]:
        args = {"param_keys": KEYS, **kwargs}
        with pytest.raises(ValueError, match=match):
            ShardWriter(path, "train", 0, H, W, **args)
    assert not path.parent.exists() or list(path.parent.iterdir()) == []
