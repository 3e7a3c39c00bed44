"""The manifest of an output folder (``OUT/manifest.json``): write, read and validate it; the
h5py/HDF5 versions it records; the leftover temporaries of interrupted writers.

The manifest is written last, atomically, through :mod:`turbsim._files`. numpy + h5py only.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypedDict

import h5py

from turbsim._files import TMP_SUFFIX, write_text
from turbsim.shards.errors import ShardError
from turbsim.shards.schema import MANIFEST_NAME, MANIFEST_SCHEMA_VERSION
from turbsim.shards.writer import ShardInfo


class Manifest(TypedDict, total=False):
    """The keys of ``manifest.json`` (``schema_version`` :data:`MANIFEST_SCHEMA_VERSION`), in the
    order they are written; ``source`` only for an image folder (turbsim.pipeline.image_folder)."""

    schema_version: int
    tool: str
    tool_version: str
    git_commit: str | None
    created: str  # ISO 8601, UTC, seconds
    recipe: dict[str, Any]  # the resolved recipe (turbsim.pipeline.recipe.Recipe.data)
    recipe_hash: str
    root_seed: int
    seeding: str  # the seeding scheme in words (turbsim.seeding.SEEDING_SCHEME)
    libraries: dict[str, str]
    source_root: str
    input_list_hash: str
    labels: dict[str, str]  # split -> why its labels are all 255
    native_sizes: dict[str, list[int]]  # split -> [H, W] px
    stored_sizes: dict[str, list[int]]
    splits: dict[str, int]  # split -> samples
    skipped: list[dict[str, str]]  # [{path, reason}]
    shards: list[dict[str, Any]]  # ShardInfo.to_dict() entries (SHARD_INFO_KEYS)
    source: dict[str, Any]


#: The manifest's keys in file order; all but ``source`` are required.
MANIFEST_KEYS: tuple[str, ...] = tuple(Manifest.__annotations__)
_OPTIONAL_KEYS = frozenset({"source"})


def make_manifest(**values: Any) -> Manifest:
    """A manifest from its parts (every key of :class:`Manifest` but ``schema_version``, which
    is set here), with its keys in file order.

    Raises:
        TypeError: a key that is not a manifest key, or a required key missing.
    """
    values = {"schema_version": MANIFEST_SCHEMA_VERSION, **values}
    unknown = set(values) - set(MANIFEST_KEYS)
    missing = set(MANIFEST_KEYS) - _OPTIONAL_KEYS - set(values)
    if unknown or missing:
        raise TypeError(f"manifest keys: unknown {sorted(unknown)}, missing {sorted(missing)}")
    return Manifest(**{key: values[key] for key in MANIFEST_KEYS if key in values})  # type: ignore[typeddict-item]


def write_manifest(root: str | os.PathLike[str], manifest: Mapping[str, Any]) -> Path:
    """Write ``root/manifest.json`` atomically (:func:`turbsim._files.write_text`).

    Args:
        root: output folder (must exist).
        manifest: JSON-able dict with ``schema_version`` == :data:`MANIFEST_SCHEMA_VERSION` and
            ``shards``, a list of :meth:`ShardInfo.to_dict` entries.

    Returns:
        The manifest path.

    Raises:
        ValueError: wrong schema_version, a malformed shard entry, or a value JSON cannot hold
            (NaN included).
    """
    path = Path(root) / MANIFEST_NAME
    if manifest.get("schema_version") != MANIFEST_SCHEMA_VERSION:
        raise ValueError(
            f"{path}: manifest schema_version must be {MANIFEST_SCHEMA_VERSION}, "
            f"got {manifest.get('schema_version')!r}"
        )
    for i, entry in enumerate(manifest.get("shards", None) or []):
        try:
            ShardInfo.from_dict(entry)
        except ValueError as error:
            raise ValueError(f"{path}: shards[{i}]: {error}") from None
    # The bytes of _files.write_json(path, manifest), but NaN is refused (allow_nan=False).
    text = json.dumps(manifest, indent=2, allow_nan=False) + "\n"
    write_text(path, text)
    return path


def read_manifest(root: str | os.PathLike[str]) -> Manifest:
    """Read and check ``root/manifest.json``.

    Returns:
        The manifest dict; ``shards`` entries are left as dicts (use :meth:`ShardInfo.from_dict`).

    Raises:
        ShardError: the folder or manifest is missing, not JSON, of another schema version, or
            its ``shards`` list is malformed; the message names the file.
    """
    root = Path(root)
    path = root / MANIFEST_NAME
    if root.exists() and not root.is_dir():
        raise ShardError(
            f"{root}: a file, not a dataset folder (give the folder that holds {MANIFEST_NAME})"
        )
    if not root.is_dir():
        raise ShardError(f"{root}: no such folder")
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ShardError(
            f"{path}: no manifest (not a turbsim output folder, or the run has not "
            "completed every shard yet)"
        ) from None
    except (OSError, UnicodeDecodeError) as error:
        raise ShardError(f"{path}: unreadable ({error})") from None
    try:
        manifest = json.loads(text)
    except json.JSONDecodeError as error:
        raise ShardError(f"{path}: invalid JSON ({error.msg} at line {error.lineno})") from None
    if not isinstance(manifest, dict):
        raise ShardError(f"{path}: expected a JSON object, got {type(manifest).__name__}")
    version = manifest.get("schema_version")
    if version != MANIFEST_SCHEMA_VERSION:
        raise ShardError(
            f"{path}: schema_version {version!r}, this turbsim reads {MANIFEST_SCHEMA_VERSION}"
        )
    if not isinstance(manifest.get("shards"), list):
        raise ShardError(f"{path}: no 'shards' list")
    for i, entry in enumerate(manifest["shards"]):
        try:
            ShardInfo.from_dict(entry)
        except ValueError as error:
            raise ShardError(f"{path}: shards[{i}]: {error}") from None
    return manifest


def _shard_infos(manifest: Mapping[str, Any]) -> list[ShardInfo]:
    """The ``shards`` entries of a manifest checked by :func:`read_manifest`."""
    return [ShardInfo.from_dict(entry) for entry in manifest["shards"]]


def library_versions() -> dict[str, str]:
    """Versions of h5py and of the HDF5 library it was built with (for the manifest)."""
    return {"h5py": h5py.__version__, "hdf5": h5py.version.hdf5_version}


# --------------------------------------------------------------------------- temporaries
def _temporaries(root: Path) -> list[Path]:
    """Leftover temporary files where turbsim writes: ``root/*.tmp`` and ``root/*/*.tmp``."""
    if not root.is_dir():
        return []
    found = [p for p in root.glob(f"*{TMP_SUFFIX}") if p.is_file()]
    found += [p for p in root.glob(f"*/*{TMP_SUFFIX}") if p.is_file()]
    return sorted(found)


def clean_temporaries(root: str | os.PathLike[str]) -> list[Path]:
    """Delete leftover ``*.tmp`` files in ``root`` and its split folders (interrupted writers).

    Call it only when no writer is running on the folder: a live writer's temporary would go.

    Returns:
        The deleted paths.
    """
    removed = []
    for path in _temporaries(Path(root)):
        path.unlink(missing_ok=True)
        removed.append(path)
    return removed
