"""turbsim.shards, an output folder: the manifest, the CLI (verify, info), the package. Verify
itself: test_integrity.py; the summary: test_shards_report.py."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import pytest
from click.testing import CliRunner

from turbsim import shards
from turbsim.shards import MANIFEST_NAME, ShardError, ShardInfo, shard_path
from turbsim_cli.turbsim_cmd import main as turbsim_cli


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


def test_manifest_bytes_are_indented_json_with_a_newline(dataset: Path) -> None:
    manifest = shards.read_manifest(dataset)
    manifest["created"] = "zürich"  # non-ASCII is escaped (ensure_ascii), as before
    shards.write_manifest(dataset, manifest)
    assert (dataset / MANIFEST_NAME).read_bytes() == (json.dumps(manifest, indent=2) + "\n").encode(
        "ascii"
    )
    assert b'"created": "z\\u00fcrich"' in (dataset / MANIFEST_NAME).read_bytes()


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


# ------------------------------------------------------------------------------ package
def test_package_re_exports_every_submodule_name() -> None:
    from turbsim.shards import errors, manifest, reader, report, schema, sidecar, writer
    from turbsim.shards import verify as verify_function
    from turbsim.shards.integrity import is_published_shard_valid, verify

    assert verify_function is verify and shards.verify is verify
    assert shards.is_published_shard_valid is is_published_shard_valid
    modules = (errors, manifest, reader, report, schema, sidecar, writer)
    for name in shards.__all__:
        owners = [m for m in modules if getattr(m, name, None) is getattr(shards, name)]
        assert owners or name in ("verify", "is_published_shard_valid"), name
    for name in ("ShardWriter", "ShardInfo", "shard_path", "sha256_file"):
        assert getattr(shards, name) is getattr(writer, name)
    for name in ("ShardReader", "open_split", "list_splits"):
        assert getattr(shards, name) is getattr(reader, name)
    for name in ("read_manifest", "write_manifest", "library_versions", "clean_temporaries"):
        assert getattr(shards, name) is getattr(manifest, name)
    assert shards.summarize is report.summarize and shards.ShardError is errors.ShardError
    assert shards.IGNORE_LABEL == schema.IGNORE_LABEL == 255


def test_library_versions_name_h5py_and_hdf5() -> None:
    assert shards.library_versions() == {
        "h5py": h5py.__version__,
        "hdf5": h5py.version.hdf5_version,
    }
