"""Read shards: :class:`ShardReader` (lazy, picklable random access to one shard file) and the
helpers that open the shards of an output folder through its manifest (:func:`open_split`,
:func:`list_splits`).

numpy + h5py only: every DataLoader worker imports this module.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from turbsim.shards.errors import ShardError
from turbsim.shards.manifest import _shard_infos, read_manifest
from turbsim.shards.schema import MANIFEST_NAME, SCHEMA_VERSION


def _attr(value: Any) -> Any:
    """An HDF5 attribute as a plain Python value."""
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, np.generic):
        return value.item()
    return value


def _open_h5(path: Path, locking: bool | None) -> h5py.File:
    """Open a shard read-only without a chunk cache; a failure is a one-line ShardError."""
    try:
        return h5py.File(path, "r", locking=locking, rdcc_nbytes=0)
    except FileNotFoundError:
        raise ShardError(f"{path}: no such file") from None
    except OSError as error:
        raise ShardError(f"{path}: not a readable HDF5 file ({error})") from None


class ShardReader:
    """Lazy, picklable random access to the samples of one shard file.

    The file is opened on first access (``len``, indexing, ``names``, ...), once per process:
    pickling drops the handle, and a reader inherited through ``fork`` reopens its file.

    Args:
        path: a shard file.
        locking: h5py file locking; False for network filesystems (NFS, Lustre) that reject
            locks, None for the HDF5 default.

    Raises:
        ShardError: on first access, if the file is missing, not HDF5, not a complete shard or
            of another schema version.
    """

    def __init__(self, path: str | os.PathLike[str], locking: bool | None = None) -> None:
        self.path = Path(path)
        self.locking = locking
        self._reset()

    def _reset(self) -> None:
        self._file: h5py.File | None = None
        self._pid: int | None = None
        self._names: list[str] | None = None
        self._variants: np.ndarray | None = None
        self._params: dict[str, np.ndarray] | None = None
        self._attrs: dict[str, Any] | None = None
        self._flow_scale = 1.0
        self._flow_resample: str | None = None

    def _handle(self) -> h5py.File:
        if self._file is not None and self._pid == os.getpid():
            return self._file
        self._reset()  # a handle inherited through fork is not used (nor closed) here
        f = _open_h5(self.path, self.locking)
        try:
            attrs = {k: _attr(v) for k, v in f.attrs.items()}
            if attrs.get("schema_version") != SCHEMA_VERSION:
                raise ShardError(
                    f"{self.path}: schema_version {attrs.get('schema_version')!r}, "
                    f"expected {SCHEMA_VERSION}"
                )
            if attrs.get("complete") is not True:
                raise ShardError(f"{self.path}: incomplete shard (attribute complete is not True)")
            for key in ("distorted", "clean", "label", "name", "variant", "params"):
                if key not in f:
                    raise ShardError(f"{self.path}: no {key!r} dataset")
            self._names = list(f["name"].asstr()[()])
            self._variants = f["variant"][()]
            self._params = {
                k: (v.asstr()[()] if h5py.check_string_dtype(v.dtype) else v[()])
                for k, v in f["params"].items()
            }
            if "flow" in f:
                self._flow_scale = float(f["flow"].attrs.get("scale", 1.0))
                self._flow_resample = str(_attr(f["flow"].attrs.get("resample", "nearest")))
        except BaseException:
            f.close()
            self._reset()
            raise
        self._attrs = attrs
        self._file, self._pid = f, os.getpid()
        return f

    def __len__(self) -> int:
        self._handle()
        assert self._names is not None
        return len(self._names)

    def __getitem__(self, index: int) -> dict[str, Any]:
        """Sample ``index`` (negative counts from the end).

        Returns:
            A dict: ``distorted``, ``clean`` uint8 (H, W, 3) RGB; ``label`` uint8 (H, W);
            ``name`` str; ``variant`` int; ``params`` dict of float (str for ``wave``);
            ``flow`` float32 (2, H, W) [px] if the shard stores flow; ``index`` int.
        """
        f = self._handle()
        n = len(self)
        if isinstance(index, bool) or not isinstance(index, int | np.integer):
            raise TypeError(f"shard index must be an integer, got {type(index).__name__}")
        i = int(index) + n if index < 0 else int(index)
        if not 0 <= i < n:
            raise IndexError(f"{self.path}: sample {index} out of range (N = {n})")
        assert self._names is not None and self._variants is not None and self._params
        sample: dict[str, Any] = {
            "distorted": f["distorted"][i],
            "clean": f["clean"][i],
            "label": f["label"][i],
            "name": self._names[i],
            "variant": int(self._variants[i]),
            "params": {k: _attr(v[i]) for k, v in self._params.items()},
            "index": i,
        }
        if "flow" in f:
            sample["flow"] = f["flow"][i].astype(np.float32) * np.float32(self._flow_scale)
        return sample

    #: Per-sample image datasets that :meth:`read` serves.
    ARRAY_FIELDS = ("distorted", "clean", "label", "flow")

    def read(self, field: str, index: int) -> np.ndarray:
        """One dataset of one sample, without decoding the others (e.g. labels for statistics).

        Args:
            field: ``distorted``/``clean`` (uint8 (H, W, 3)), ``label`` (uint8 (H, W)) or
                ``flow`` (float32 (2, H, W) [px], scaled as in :meth:`__getitem__`).
            index: sample number in [0, N).
        """
        f = self._handle()
        if field not in self.ARRAY_FIELDS or field not in f:
            raise KeyError(f"{self.path}: no per-sample dataset {field!r}")
        n = len(self)
        if isinstance(index, bool) or not isinstance(index, int | np.integer) or not 0 <= index < n:
            raise IndexError(f"{self.path}: sample {index} out of range (N = {n})")
        value = f[field][int(index)]
        if field == "flow":
            value = value.astype(np.float32) * np.float32(self._flow_scale)
        return value

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for i in range(len(self)):
            yield self[i]

    @property
    def flow_resample(self) -> str | None:
        """How the stored flow was resized from the native size: ``"nearest"`` (also every
        file written before the attribute existed) or ``"area"``; None without a flow."""
        self._handle()
        return self._flow_resample

    @property
    def names(self) -> list[str]:
        """Cityscapes stems of the N samples, in file order."""
        self._handle()
        assert self._names is not None
        return list(self._names)

    @property
    def variants(self) -> np.ndarray:
        """int32 (N,) variant numbers."""
        self._handle()
        assert self._variants is not None
        return self._variants.copy()

    @property
    def params(self) -> dict[str, np.ndarray]:
        """Per-sample parameters: key -> float64 (N,) array (object array of str for ``wave``)."""
        self._handle()
        assert self._params is not None
        return {k: v.copy() for k, v in self._params.items()}

    @property
    def attrs(self) -> dict[str, Any]:
        """The file attributes as plain Python values (schema_version, split, height, ...)."""
        self._handle()
        assert self._attrs is not None
        return dict(self._attrs)

    def close(self) -> None:
        """Close the file (it reopens on the next access)."""
        if self._file is not None and self._pid == os.getpid():
            self._file.close()
        self._reset()

    def __enter__(self) -> ShardReader:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path, "locking": self.locking}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.path = state["path"]
        self.locking = state["locking"]
        self._reset()

    def __repr__(self) -> str:
        return f"ShardReader({str(self.path)!r})"


# ------------------------------------------------------------------- folders (through the manifest)
def list_splits(root: str | os.PathLike[str]) -> list[str]:
    """Split names in the manifest of ``root``, in order of first appearance."""
    return list(dict.fromkeys(info.split for info in _shard_infos(read_manifest(root))))


def open_split(
    root: str | os.PathLike[str], split: str, locking: bool | None = None
) -> list[ShardReader]:
    """Lazy readers of every shard of ``split``, in manifest order (nothing is opened yet).

    Raises:
        ShardError: no manifest, or the split is not in it.
    """
    root = Path(root)
    infos = _shard_infos(read_manifest(root))
    readers = [ShardReader(root / i.file, locking=locking) for i in infos if i.split == split]
    if not readers:
        splits = sorted({i.split for i in infos})
        raise ShardError(f"{root / MANIFEST_NAME}: no split {split!r} (has {', '.join(splits)})")
    return readers
