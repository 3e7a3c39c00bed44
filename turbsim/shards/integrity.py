"""Verify shards: a whole output folder against its manifest (:func:`verify`, used by
``turbsim verify``), and the cheap check of one published shard that ``generate --resume`` uses
(:func:`is_published_shard_valid`). numpy + h5py only.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from turbsim.shards.manifest import _shard_infos, _temporaries, read_manifest
from turbsim.shards.reader import _attr
from turbsim.shards.schema import MANIFEST_NAME, SCHEMA_VERSION, SHARD_RE
from turbsim.shards.writer import ShardInfo, sha256_file


def is_published_shard_valid(path: str | os.PathLike[str], expected_names: Sequence[str]) -> bool:
    """Cheap check used by ``generate --resume``: the file opens as a complete shard of this
    schema, every per-sample dataset has ``len(expected_names)`` rows and the names equal
    ``expected_names`` in order. (Not a checksum: see :func:`verify`.)"""
    try:
        with h5py.File(path, "r") as f:
            if _attr(f.attrs.get("complete")) is not True:
                return False
            if _attr(f.attrs.get("schema_version")) != SCHEMA_VERSION:
                return False
            names = list(f["name"].asstr()[()])
            if names != list(expected_names):
                return False
            n = len(names)
            return all(f[k].shape[0] == n for k in ("distorted", "clean", "label", "variant"))
    except (OSError, KeyError, ValueError, TypeError):
        return False


def _check_shard_file(path: Path, info: ShardInfo, locking: bool | None) -> list[str]:
    """Structural problems of one shard file against its manifest entry."""
    problems: list[str] = []

    def problem(message: str) -> None:
        problems.append(f"{path}: {message}")

    try:
        f = h5py.File(path, "r", locking=locking)
    except OSError as error:
        return [f"{path}: not a readable HDF5 file ({error})"]
    with f:
        attrs = {k: _attr(v) for k, v in f.attrs.items()}
        if attrs.get("schema_version") != SCHEMA_VERSION:
            problem(f"schema_version {attrs.get('schema_version')!r}, expected {SCHEMA_VERSION}")
        if attrs.get("complete") is not True:
            problem("attribute complete is not True (an interrupted write)")
        if attrs.get("split") != info.split or attrs.get("shard_index") != info.index:
            problem(
                f"attributes say split {attrs.get('split')!r} shard "
                f"{attrs.get('shard_index')!r}, the manifest {info.split!r} {info.index}"
            )
        h, w, n = attrs.get("height"), attrs.get("width"), info.samples
        expected: dict[str, tuple[tuple[Any, ...], Any]] = {
            "distorted": ((n, h, w, 3), np.uint8),
            "clean": ((n, h, w, 3), np.uint8),
            "label": ((n, h, w), np.uint8),
            "variant": ((n,), np.int32),
        }
        if "flow" in f:
            storage = attrs.get("flow_storage")
            expected["flow"] = ((n, 2, h, w), np.int16 if storage == "int16" else np.float16)
        for key, (shape, dtype) in expected.items():
            if key not in f:
                problem(f"no {key!r} dataset")
            elif f[key].shape != shape or f[key].dtype != dtype:
                problem(
                    f"{key} is {f[key].dtype} {f[key].shape}, expected "
                    f"{np.dtype(dtype)} {shape} (manifest: {n} samples)"
                )
        if "name" not in f:
            problem("no 'name' dataset")
        elif f["name"].shape != (n,):
            problem(
                f"name has {f['name'].shape[0] if f['name'].shape else '?'} entries, "
                f"the manifest {n} samples"
            )
        if attrs.get("samples") != n:
            problem(f"attribute samples = {attrs.get('samples')!r}, the manifest {n}")
        if "params" not in f:
            problem("no 'params' group")
        else:
            for key, dataset in f["params"].items():
                if dataset.shape != (n,):
                    problem(f"params/{key} has shape {dataset.shape}, expected ({n},)")
    return problems


def _check_split_totals(root: Path, manifest: dict[str, Any]) -> list[str]:
    """The manifest's per-split sample totals (``splits``) against the sum of its shards."""
    totals = manifest.get("splits")
    if totals is None:
        return []
    path = root / MANIFEST_NAME
    if not isinstance(totals, dict):
        return [f"{path}: 'splits' is not an object of per-split sample totals"]
    counted: dict[str, int] = {}
    for info in _shard_infos(manifest):
        counted[info.split] = counted.get(info.split, 0) + info.samples
    problems = []
    for split in sorted(set(totals) | set(counted)):
        claimed, found = totals.get(split), counted.get(split, 0)
        if claimed != found:
            problems.append(
                f"{path}: splits[{split!r}] says {claimed!r} samples, its shards hold {found}"
            )
    return problems


def verify(root: str | os.PathLike[str], locking: bool | None = None) -> list[str]:
    """Check an output folder against its manifest; every problem is one line naming a file.

    Checks: each listed shard exists with the recorded size and SHA-256, is a complete shard
    whose attributes, sample count and dataset shapes/dtypes agree with its manifest entry;
    the per-split sample totals (``splits``) equal the sums over the shards; no shard is listed
    twice; no ``shard-*.h5`` on disk is missing from the manifest; no
    leftover ``*.tmp`` file.

    Returns:
        The problems; empty when everything checks out.

    Raises:
        ShardError: the folder or its manifest is missing or invalid.
    """
    root = Path(root)
    manifest = read_manifest(root)
    problems: list[str] = []
    listed: set[Path] = set()
    for info in _shard_infos(manifest):
        path = root / info.file
        relative = Path(info.file)
        if relative.is_absolute() or ".." in relative.parts:
            problems.append(f"{path}: the manifest entry points outside {root}")
            continue
        resolved = path.resolve()
        if resolved in listed:
            problems.append(f"{path}: listed more than once in the manifest")
            continue
        listed.add(resolved)
        if not path.is_file():
            problems.append(f"{path}: missing (listed in the manifest)")
            continue
        size = path.stat().st_size
        if size != info.bytes:
            problems.append(f"{path}: size {size} bytes, the manifest says {info.bytes}")
        digest = sha256_file(path)
        if digest != info.sha256:
            problems.append(
                f"{path}: sha256 mismatch (file {digest[:16]}..., manifest {info.sha256[:16]}...)"
            )
        problems += _check_shard_file(path, info, locking)
    problems += _check_split_totals(root, manifest)
    for path in sorted(root.glob("*/shard-*.h5")):
        if SHARD_RE.match(path.name) and path.resolve() not in listed:
            problems.append(f"{path}: shard file not listed in the manifest")
    for path in _temporaries(root):
        problems.append(f"{path}: leftover temporary file (interrupted write; delete it)")
    return problems
