"""turbsim.shards: the HDF5 shard schema, atomic writer, lazy reader, manifest and verify."""

from __future__ import annotations

import json
import multiprocessing
import pickle
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from cli.turbsim_cmd import main as turbsim_cli
from turbsim import shards
from turbsim.shards import (
    MANIFEST_NAME,
    ShardError,
    ShardInfo,
    ShardReader,
    ShardWriter,
    shard_path,
)

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


@pytest.fixture
def dataset(tmp_path: Path, rng: np.random.Generator) -> Path:
    root = tmp_path / "out"
    make_dataset(root, rng)
    return root


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


# ------------------------------------------------------------------------------ manifest
def test_shard_info_dict_round_trip() -> None:
    info = ShardInfo("val/shard-00002.h5", "val", 2, 7, 1234, "ab" * 32)
    assert ShardInfo.from_dict(info.to_dict()) == info
    assert ShardInfo.from_dict({**info.to_dict(), "names": ["x"], "skipped": []}) == info
    with pytest.raises(ValueError, match="missing key 'sha256'"):
        ShardInfo.from_dict({k: v for k, v in info.to_dict().items() if k != "sha256"})
    with pytest.raises(ValueError, match="'samples' must be an integer"):
        ShardInfo.from_dict({**info.to_dict(), "samples": "7"})


def test_manifest_round_trip_is_atomic(tmp_path: Path) -> None:
    manifest = {
        "schema_version": 1,
        "created": "now",
        "shards": [],
        "skipped": [],
        "recipe": {"cn2": [1e-14, 1e-13]},
        "git_commit": None,
    }
    path = shards.write_manifest(tmp_path, manifest)
    assert path == tmp_path / MANIFEST_NAME
    assert shards.read_manifest(tmp_path) == manifest
    assert sorted(p.name for p in tmp_path.iterdir()) == [MANIFEST_NAME]
    with pytest.raises(ValueError):
        shards.write_manifest(tmp_path, {**manifest, "created": float("nan")})
    with pytest.raises(ValueError, match="schema_version"):
        shards.write_manifest(tmp_path, {**manifest, "schema_version": 2})
    assert shards.read_manifest(tmp_path) == manifest  # failed writes left it alone
    assert sorted(p.name for p in tmp_path.iterdir()) == [MANIFEST_NAME]


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (None, "no manifest"),
        ("{not json", "invalid JSON"),
        ("[1, 2]", "expected a JSON object"),
        ('{"schema_version": 2, "shards": []}', "schema_version 2"),
        ('{"schema_version": 1}', "no 'shards' list"),
        ('{"schema_version": 1, "shards": [{"file": "a"}]}', r"shards\[0\]: missing key"),
    ],
)
def test_read_manifest_errors_name_the_file(tmp_path: Path, content: str | None, match: str):
    if content is not None:
        (tmp_path / MANIFEST_NAME).write_text(content)
    with pytest.raises(ShardError, match=match) as caught:
        shards.read_manifest(tmp_path)
    message = str(caught.value)
    assert message.startswith(str(tmp_path / MANIFEST_NAME)) and "\n" not in message


def test_read_manifest_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(ShardError, match=f"{tmp_path / 'nope'}: no such folder"):
        shards.read_manifest(tmp_path / "nope")


def test_open_split_and_list_splits(dataset: Path) -> None:
    assert shards.list_splits(dataset) == ["train", "val"]
    readers = shards.open_split(dataset, "train")
    assert [r.path for r in readers] == [shard_path(dataset, "train", k) for k in (0, 1)]
    assert [len(r) for r in readers] == [3, 2]
    with pytest.raises(ShardError, match="no split 'test' \\(has train, val\\)"):
        shards.open_split(dataset, "test")


def test_clean_temporaries(dataset: Path) -> None:
    leftovers = [dataset / "train" / "shard-00002.h5.123-ab.tmp", dataset / ".manifest.json.tmp"]
    for p in leftovers:
        p.write_bytes(b"x")
    assert shards.clean_temporaries(dataset) == sorted(leftovers)
    assert not any(p.exists() for p in leftovers)
    assert shard_path(dataset, "train", 0).exists()
    assert shards.clean_temporaries(dataset / "missing") == []


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


# ---------------------------------------------------------------------------- summarize
def test_summarize(dataset: Path) -> None:
    text = shards.summarize(dataset)
    lines = text.splitlines()
    assert any(line.split()[:3] == ["train", "2", "5"] and f"{H}x{W}" in line for line in lines)
    assert any(line.split()[:3] == ["val", "1", "1"] for line in lines)
    assert any(line.split()[:3] == ["total", "3", "6"] for line in lines)
    assert f"compression  gzip (level {shards.GZIP_LEVEL})" in lines
    assert "flow stored  none" in lines
    assert "skipped inputs: 1" in lines
    sigma = np.concatenate(
        [r.params["sigma_r_px"] for s in ("train", "val") for r in shards.open_split(dataset, s)]
    )
    [row] = [line.split() for line in lines if line.startswith("sigma_r_px ")]
    assert row[1:] == [f"{sigma.min():.6g}", f"{sigma.max():.6g}"]


# ---------------------------------------------------------------------------------- CLI
def test_cli_verify_and_info(dataset: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(turbsim_cli, ["verify", str(dataset)])
    assert result.exit_code == 0, result.output
    assert result.output == "OK: 3 shards, 6 samples verified\n"
    result = runner.invoke(turbsim_cli, ["info", str(dataset)])
    assert result.exit_code == 0
    assert result.output == shards.summarize(dataset) + "\n"

    shard_path(dataset, "val", 0).unlink()
    result = runner.invoke(turbsim_cli, ["verify", str(dataset)])
    assert result.exit_code == 1
    assert result.output == f"{shard_path(dataset, 'val', 0)}: missing (listed in the manifest)\n"


@pytest.mark.parametrize("command", ["verify", "info"])
def test_cli_missing_folder_or_manifest(tmp_path: Path, command: str) -> None:
    runner = CliRunner()
    for target, message in [(tmp_path / "nope", "no such folder"), (tmp_path, "no manifest")]:
        result = runner.invoke(turbsim_cli, [command, str(target)])
        assert result.exit_code == 1
        assert isinstance(result.exception, SystemExit)  # a clean exit, not a crash
        assert "Traceback" not in result.output
        [line] = result.output.strip().splitlines()
        assert line.startswith("Error: ") and message in line and str(target) in line


def test_manifest_on_disk_is_plain_json(dataset: Path) -> None:
    data = json.loads((dataset / MANIFEST_NAME).read_text())
    assert [s["file"] for s in data["shards"]] == [
        "train/shard-00000.h5",
        "train/shard-00001.h5",
        "val/shard-00000.h5",
    ]
