"""turbsim.shards.manifest and .sidecar: the typed manifest builder and the shard sidecars."""

from __future__ import annotations

import json

import pytest

from turbsim import shards
from turbsim.shards.manifest import MANIFEST_KEYS, make_manifest
from turbsim.shards.sidecar import read_sidecar, sidecar_path, sidecar_record, write_sidecar

PARTS = {key: f"<{key}>" for key in MANIFEST_KEYS if key not in ("schema_version", "source")}


def test_make_manifest_orders_the_keys_and_sets_the_version() -> None:
    manifest = make_manifest(**dict(reversed(list(PARTS.items()))))
    assert list(manifest) == [k for k in MANIFEST_KEYS if k != "source"]
    assert manifest["schema_version"] == shards.MANIFEST_SCHEMA_VERSION
    with_source = make_manifest(**PARTS, source={"layout": "image-folder"})
    assert list(with_source)[-1] == "source"
    with pytest.raises(TypeError, match="unknown \\['bogus'\\]"):
        make_manifest(**PARTS, bogus=1)
    with pytest.raises(TypeError, match="missing \\['shards'\\]"):
        make_manifest(**{k: v for k, v in PARTS.items() if k != "shards"})


def test_sidecar_round_trip(tmp_path) -> None:
    (tmp_path / "val").mkdir()
    info = {"file": "val/shard-00003.h5", "split": "val", "index": 3, "samples": 2,
            "bytes": 10, "sha256": "0" * 64}  # fmt: skip
    record = sidecar_record(info, ["a", "b"], [0, 1], [], 7, "f" * 64)
    path = write_sidecar(tmp_path, "val", 3, record)
    assert path == sidecar_path(tmp_path, "val", 3) == tmp_path / "val" / "shard-00003.json"
    assert read_sidecar(tmp_path, "val", 3) == record
    assert list(json.loads(path.read_text())) == sorted(record)  # keys sorted on disk
    path.write_text("[1, 2]")
    with pytest.raises(ValueError, match="not a JSON object"):
        read_sidecar(tmp_path, "val", 3)
    path.write_text("{")
    with pytest.raises(ValueError):
        read_sidecar(tmp_path, "val", 3)
