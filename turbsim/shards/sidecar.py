"""The JSON sidecar of a published shard (part of the on-disk contract).

``OUT/{split}/shard-{k:05d}.json`` is written next to each shard once the shard itself is
published, atomically (turbsim._files): a shard without its sidecar is not yet published. It
holds the shard's manifest entry (:data:`turbsim.shards.schema.SHARD_INFO_KEYS`: ``file``,
``split``, ``index``, ``samples``, ``bytes``, ``sha256``) and::

    names         the stems stored, in order
    variants      the variant of each
    skipped       the inputs left out (--skip-bad), [{path, reason}]
    global_index  the shard's number over all splits
    recipe_hash   the digest of the recipe it was made with (turbsim.pipeline.recipe.Recipe.digest)

``turbsim generate --resume`` keeps a shard only when its sidecar matches it (size, SHA-256,
recipe); the manifest's ``shards`` list is built from the sidecars.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from turbsim import _files
from turbsim.shards.writer import shard_path

__all__ = ["SIDECAR_KEYS", "read_sidecar", "sidecar_path", "sidecar_record", "write_sidecar"]

#: Keys a sidecar adds to the shard's manifest entry.
SIDECAR_KEYS: tuple[str, ...] = ("names", "variants", "skipped", "global_index", "recipe_hash")


def sidecar_path(root: str | os.PathLike[str], split: str, index: int) -> Path:
    """``root/{split}/shard-{index:05d}.json``: the record written next to a published shard."""
    return shard_path(root, split, index).with_suffix(".json")


def sidecar_record(
    info: Mapping[str, Any],
    names: Sequence[str],
    variants: Sequence[int],
    skipped: Sequence[Mapping[str, str]],
    global_index: int,
    recipe_hash: str,
) -> dict[str, Any]:
    """The sidecar of a shard: its manifest entry ``info`` plus the keys of :data:`SIDECAR_KEYS`."""
    return {
        **info,
        "names": list(names),
        "variants": list(variants),
        "skipped": list(skipped),
        "global_index": global_index,
        "recipe_hash": recipe_hash,
    }


def write_sidecar(
    root: str | os.PathLike[str], split: str, index: int, record: Mapping[str, Any]
) -> Path:
    """Publish a shard's sidecar atomically (keys sorted); its path."""
    path = sidecar_path(root, split, index)
    _files.write_json(path, dict(record), sort_keys=True)
    return path


def read_sidecar(root: str | os.PathLike[str], split: str, index: int) -> dict[str, Any]:
    """The sidecar of shard ``index`` of ``split``.

    Raises:
        OSError: it cannot be read (FileNotFoundError: there is none).
        ValueError: it is not JSON, or not a JSON object.
    """
    path = sidecar_path(root, split, index)
    try:
        record = json.loads(path.read_text())
    except UnicodeDecodeError as error:
        raise ValueError(f"{path}: not UTF-8") from error
    if not isinstance(record, dict):
        raise ValueError(f"{path}: not a JSON object")
    return record
