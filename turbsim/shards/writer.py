"""Write one shard: :class:`ShardWriter` (validate, encode the flow, publish atomically), its
manifest entry :class:`ShardInfo`, and the shard file naming (:func:`shard_path`).

The schema of the file is described in :mod:`turbsim.shards`; its names and choices live in
:mod:`turbsim.shards.schema`. numpy + h5py only.
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any

import h5py
import numpy as np

from turbsim._files import (
    disk_full_error,
    fsync_dir,
    is_disk_full,
    publish,
    temporary_name,
)
from turbsim.shards.errors import ShardError
from turbsim.shards.schema import (
    COMPRESSIONS,
    DEFAULT_FLOW_SCALE,
    FLOW_RESAMPLES,
    FLOW_STORAGES,
    GZIP_LEVEL,
    IGNORE_LABEL,
    SCHEMA_VERSION,
    SHARD_INFO_KEYS,
    STRING_PARAM_KEYS,
)

_INT16_MIN, _INT16_MAX = np.iinfo(np.int16).min, np.iinfo(np.int16).max
_FLOAT16_MAX = float(np.finfo(np.float16).max)
_STR = h5py.string_dtype("utf-8")
_HASH_CHUNK = 1 << 20


# ---------------------------------------------------------------------------------- paths
def shard_path(root: str | os.PathLike[str], split: str, index: int) -> Path:
    """Path of shard ``index`` of ``split`` in the output folder ``root``.

    Args:
        root: output folder (``OUT``).
        split: split name, e.g. ``train``.
        index: shard number within the split, >= 0.

    Returns:
        ``root / split / f"shard-{index:05d}.h5"``.
    """
    if index < 0:
        raise ValueError(f"shard index must be >= 0, got {index}")
    return Path(root) / split / f"shard-{index:05d}.h5"


def sha256_file(path: str | os.PathLike[str], chunk: int = _HASH_CHUNK) -> str:
    """Hex SHA-256 of a file's bytes, read ``chunk`` bytes at a time."""
    with open(path, "rb") as stream:
        return _sha256_stream(stream, chunk)


def _sha256_stream(stream: IO[bytes], chunk: int = _HASH_CHUNK) -> str:
    """Hex SHA-256 of the rest of an open binary stream, read ``chunk`` bytes at a time."""
    digest = hashlib.sha256()
    while block := stream.read(chunk):
        digest.update(block)
    return digest.hexdigest()


# ------------------------------------------------------------------------------ ShardInfo
@dataclass(frozen=True)
class ShardInfo:
    """One published shard as recorded in the manifest.

    Attributes:
        file: path relative to the output folder, with ``/`` separators (``train/shard-00000.h5``).
        split: split name.
        index: shard number within the split.
        samples: number of samples N.
        bytes: file size [bytes].
        sha256: hex SHA-256 of the file.
    """

    file: str
    split: str
    index: int
    samples: int
    bytes: int
    sha256: str

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict with the keys file, split, index, samples, bytes, sha256."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ShardInfo:
        """Build from a manifest entry; keys other than the six fields are ignored.

        Raises:
            ValueError: a key is missing or has the wrong type.
        """
        if not isinstance(data, Mapping):
            raise ValueError(f"expected an object, got {type(data).__name__}")
        missing = [k for k in SHARD_INFO_KEYS if k not in data]
        if missing:
            raise ValueError(f"missing key {missing[0]!r}")
        for key in ("file", "split", "sha256"):
            if not isinstance(data[key], str):
                raise ValueError(f"{key!r} must be a string, got {data[key]!r}")
        for key in ("index", "samples", "bytes"):
            value = data[key]
            if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 0:
                raise ValueError(f"{key!r} must be an integer >= 0, got {value!r}")
        return cls(
            file=data["file"],
            split=data["split"],
            index=int(data["index"]),
            samples=int(data["samples"]),
            bytes=int(data["bytes"]),
            sha256=data["sha256"],
        )


# ---------------------------------------------------------------------------- ShardWriter
def _filters(compression: str, shuffle: bool) -> dict[str, Any]:
    """``create_dataset`` keyword arguments of one codec (``shuffle`` helps labels and flow)."""
    if compression == "gzip":
        return {"compression": "gzip", "compression_opts": GZIP_LEVEL, "shuffle": shuffle}
    if compression == "lzf":
        return {"compression": "lzf", "shuffle": shuffle}
    return {}


def _describe(array: Any) -> str:
    """``dtype (shape)`` of an array, else its type name (for error messages)."""
    if isinstance(array, np.ndarray):
        return f"{array.dtype} {tuple(array.shape)}"
    return type(array).__name__


class ShardWriter:
    """Write one shard file, published atomically on :meth:`close`.

    Samples are appended one at a time with :meth:`add`; the file is written under a unique
    temporary name next to ``path`` (:func:`turbsim._files.temporary_name`) and renamed to
    ``path`` by :meth:`close`, after the ``complete`` attribute is set and the bytes are hashed,
    with the guarantees of :func:`turbsim._files.atomic_path` (fsync, the usual permissions,
    ``os.replace``, fsync of the folder). An existing file at ``path`` is not touched until that
    rename. Used as a context manager, an exception inside the block deletes the temporary and
    publishes nothing.

    Example::

        with ShardWriter(shard_path(out, "train", 0), "train", 0, 1024, 2048, keys) as writer:
            writer.add("aachen_000000_000019", distorted, clean, label, params)
        info = writer.info  # ShardInfo for the manifest

    Args:
        path: final path, normally ``shard_path(OUT, split, shard_index)``; the manifest entry's
            ``file`` is ``"{path.parent.name}/{path.name}"``.
        split: split name (stored as an attribute).
        shard_index: shard number within the split.
        height: image height H [px].
        width: image width W [px].
        param_keys: keys of the ``params`` dict of every :meth:`add`; each becomes
            ``params/<key>``, float64, except ``wave`` (strings).
        compression: ``gzip`` (level :data:`GZIP_LEVEL`, readable everywhere), ``lzf`` (faster,
            h5py only) or ``none``.
        store_flow: None (or ``"none"``) to store no displacement, ``int16`` (fixed point,
            ``flow_scale`` px per unit, values beyond the range are clipped and counted) or
            ``float16``.
        flow_scale: fixed-point step of int16 flow [px per unit].
        flow_resample: how the caller resized the flow to the stored size, one of
            :data:`FLOW_RESAMPLES` (recorded as the flow's ``resample`` attribute unless
            ``nearest``, so that older files keep their bytes).
        expected_count: number of samples expected, to preallocate (optional; more or fewer
            are fine).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        split: str,
        shard_index: int,
        height: int,
        width: int,
        param_keys: Sequence[str],
        compression: str = "gzip",
        store_flow: str | None = None,
        flow_scale: float = DEFAULT_FLOW_SCALE,
        flow_resample: str = "nearest",
        expected_count: int | None = None,
    ) -> None:
        self.path = Path(path)
        if not isinstance(split, str) or not split or "/" in split:
            raise ValueError(f"{self.path}: split must be a non-empty name, got {split!r}")
        if int(shard_index) < 0:
            raise ValueError(f"{self.path}: shard_index must be >= 0, got {shard_index}")
        if int(height) < 1 or int(width) < 1:
            raise ValueError(f"{self.path}: height and width must be >= 1, got {height}x{width}")
        if compression not in COMPRESSIONS:
            raise ValueError(
                f"{self.path}: compression must be one of {COMPRESSIONS}, got {compression!r}"
            )
        if store_flow == "none":
            store_flow = None
        if store_flow is not None and store_flow not in FLOW_STORAGES:
            raise ValueError(
                f"{self.path}: store_flow must be None, 'int16' or 'float16', got {store_flow!r}"
            )
        if store_flow == "int16" and not (math.isfinite(flow_scale) and flow_scale > 0):
            raise ValueError(f"{self.path}: flow_scale must be > 0, got {flow_scale}")
        keys = list(param_keys)
        if len(set(keys)) != len(keys) or any(not k or "/" in k for k in keys):
            raise ValueError(f"{self.path}: param_keys must be distinct names, got {keys}")
        self.split = split
        self.shard_index = int(shard_index)
        self.height = int(height)
        self.width = int(width)
        self.param_keys = tuple(keys)
        self.compression = compression
        self.store_flow = store_flow
        self.flow_scale = float(flow_scale) if store_flow == "int16" else 1.0
        if flow_resample not in FLOW_RESAMPLES:
            raise ValueError(
                f"{self.path}: flow_resample must be one of {FLOW_RESAMPLES}, got {flow_resample!r}"
            )
        self.flow_resample = flow_resample
        self.info: ShardInfo | None = None
        self._count = 0
        self._capacity = max(0, int(expected_count or 0))
        self._names: list[str] = []
        self._variants: list[int] = []
        self._params: dict[str, list[Any]] = {k: [] for k in self.param_keys}
        self._flow_clipped = 0
        self._closed = False

        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = temporary_name(self.path)
        try:
            # No chunk cache: every write is a whole chunk, compressed and written at once.
            self._file = h5py.File(self._tmp, "x", rdcc_nbytes=0)
        except OSError as error:
            if is_disk_full(error):
                raise disk_full_error(self.path) from None
            text = " ".join(str(error).split())  # HDF5's texts may span lines
            raise ShardError(f"{self.path}: cannot create {self._tmp.name} ({text})") from None
        try:
            self._create_datasets()
        except BaseException:
            self._discard()
            raise

    def _create_datasets(self) -> None:
        h, w, n = self.height, self.width, self._capacity
        f = self._file
        f.attrs["schema_version"] = SCHEMA_VERSION
        f.attrs["split"] = self.split
        f.attrs["shard_index"] = self.shard_index
        f.attrs["height"] = h
        f.attrs["width"] = w
        f.attrs["compression"] = self.compression
        if self.compression == "gzip":
            f.attrs["compression_level"] = GZIP_LEVEL
        f.attrs["flow_storage"] = self.store_flow or "none"
        f.attrs["complete"] = False
        self._images = {}
        for key in ("distorted", "clean"):
            self._images[key] = f.create_dataset(
                key,
                shape=(n, h, w, 3),
                maxshape=(None, h, w, 3),
                chunks=(1, h, w, 3),
                dtype=np.uint8,
                **_filters(self.compression, shuffle=False),
            )
            self._images[key].attrs["layout"] = "N,H,W,RGB"
        self._label = f.create_dataset(
            "label",
            shape=(n, h, w),
            maxshape=(None, h, w),
            chunks=(1, h, w),
            dtype=np.uint8,
            **_filters(self.compression, shuffle=True),
        )
        self._label.attrs["ignore_index"] = IGNORE_LABEL
        self._label.attrs["meaning"] = "Cityscapes trainIds"
        self._flow = None
        if self.store_flow is not None:
            self._flow = f.create_dataset(
                "flow",
                shape=(n, 2, h, w),
                maxshape=(None, 2, h, w),
                chunks=(1, 2, h, w),
                dtype=np.int16 if self.store_flow == "int16" else np.float16,
                **_filters(self.compression, shuffle=True),
            )
            self._flow.attrs["scale"] = self.flow_scale
            self._flow.attrs["units"] = "px = stored * scale"
            self._flow.attrs["convention"] = (
                "[:,0] row, [:,1] column; distorted(r, c) = clean(r + flow0, c + flow1)"
            )
            if self.flow_resample != "nearest":  # absent: nearest (the first datasets)
                self._flow.attrs["resample"] = self.flow_resample

    # -- appending
    def _check_image(self, field: str, array: Any, shape: tuple[int, ...]) -> np.ndarray:
        if not isinstance(array, np.ndarray) or array.dtype != np.uint8 or array.shape != shape:
            raise ValueError(f"{self.path}: {field} must be uint8 {shape}, got {_describe(array)}")
        return array

    def _encode_flow(self, flow: Any) -> tuple[int, np.ndarray]:
        shape = (2, self.height, self.width)
        if (
            not isinstance(flow, np.ndarray)
            or flow.shape != shape
            or not np.issubdtype(flow.dtype, np.floating)
        ):
            raise ValueError(f"{self.path}: flow must be float {shape} [px], got {_describe(flow)}")
        if not np.isfinite(flow).all():
            raise ValueError(f"{self.path}: flow has NaN or infinite values")
        if self.store_flow == "int16":
            units = flow.astype(np.float64)  # a copy: the caller's array is left alone
            np.divide(units, self.flow_scale, out=units)
            np.rint(units, out=units)
            low, high = _INT16_MIN, _INT16_MAX
        else:
            units = flow
            low, high = -_FLOAT16_MAX, _FLOAT16_MAX
        clipped = 0
        if units.min() < low or units.max() > high:
            clipped = int(np.count_nonzero((units < low) | (units > high)))
            units = np.clip(units, low, high)
        return clipped, units.astype(np.int16 if self.store_flow == "int16" else np.float16)

    def _check_params(self, params: Any) -> dict[str, Any]:
        if not isinstance(params, Mapping):
            raise ValueError(f"{self.path}: params must be a dict, got {type(params).__name__}")
        missing = [k for k in self.param_keys if k not in params]
        extra = [k for k in params if k not in self._params]
        if missing or extra:
            what = f"missing key {missing[0]!r}" if missing else f"unexpected key {extra[0]!r}"
            raise ValueError(f"{self.path}: params: {what} (expected {list(self.param_keys)})")
        out: dict[str, Any] = {}
        for key in self.param_keys:
            value = params[key]
            if key in STRING_PARAM_KEYS:
                if not isinstance(value, str):
                    raise ValueError(
                        f"{self.path}: params[{key!r}] must be a string, got {value!r}"
                    )
                out[key] = value
                continue
            try:
                number = float(value)
            except (TypeError, ValueError):
                raise ValueError(
                    f"{self.path}: params[{key!r}] must be a number, got {value!r}"
                ) from None
            if isinstance(value, bool | str) or not math.isfinite(number):
                raise ValueError(
                    f"{self.path}: params[{key!r}] must be a finite number, got {value!r}"
                )
            out[key] = number
        return out

    def add(
        self,
        name: str,
        distorted: np.ndarray,
        clean: np.ndarray,
        label: np.ndarray,
        params: Mapping[str, Any],
        variant: int = 0,
        flow: np.ndarray | None = None,
    ) -> None:
        """Append one sample (everything is validated before anything is written).

        Args:
            name: Cityscapes stem, non-empty.
            distorted: uint8 (H, W, 3) RGB.
            clean: uint8 (H, W, 3) RGB.
            label: uint8 (H, W) trainIds, 255 = ignore.
            params: exactly the ``param_keys`` given at construction: finite numbers (units in
                the key names), strings for ``wave``.
            variant: distorted version of the source image, 0 <= variant < 2**31.
            flow: float (2, H, W) displacement [px], [0] row, [1] column; required when the
                writer stores flow, refused otherwise.

        Raises:
            ValueError: naming the file and the field that is wrong.
            RuntimeError: the writer is closed.
        """
        if self._closed:
            raise RuntimeError(f"{self.path}: add() after close()")
        if not isinstance(name, str) or not name:
            raise ValueError(f"{self.path}: name must be a non-empty string, got {name!r}")
        h, w = self.height, self.width
        self._check_image("distorted", distorted, (h, w, 3))
        self._check_image("clean", clean, (h, w, 3))
        self._check_image("label", label, (h, w))
        values = self._check_params(params)
        if (
            isinstance(variant, bool)
            or not isinstance(variant, int | np.integer)
            or not (0 <= variant <= np.iinfo(np.int32).max)
        ):
            raise ValueError(f"{self.path}: variant must be an int in [0, 2**31), got {variant!r}")
        encoded = None
        if self.store_flow is None:
            if flow is not None:
                raise ValueError(f"{self.path}: flow given, but the writer stores no flow")
        elif flow is None:
            raise ValueError(f"{self.path}: flow missing (the writer stores {self.store_flow})")
        else:
            clipped, encoded = self._encode_flow(flow)

        i = self._count
        try:
            self._write(i, distorted, clean, label, encoded)
        except Exception as error:
            if is_disk_full(error):  # h5py's text spans lines and may carry errno None
                raise disk_full_error(self.path) from None
            raise
        if encoded is not None:
            self._flow_clipped += clipped
        self._names.append(name)
        self._variants.append(int(variant))
        for key, value in values.items():
            self._params[key].append(value)
        self._count = i + 1

    def _write(
        self,
        i: int,
        distorted: np.ndarray,
        clean: np.ndarray,
        label: np.ndarray,
        encoded: np.ndarray | None,
    ) -> None:
        if i >= self._capacity:
            self._capacity = max(i + 1, 2 * self._capacity)
            for dataset in self._datasets():
                dataset.resize(self._capacity, axis=0)
        self._images["distorted"][i] = distorted
        self._images["clean"][i] = clean
        self._label[i] = label
        if encoded is not None:
            self._flow[i] = encoded

    def _datasets(self) -> list[h5py.Dataset]:
        found = [self._images["distorted"], self._images["clean"], self._label]
        return found + ([self._flow] if self._flow is not None else [])

    def __len__(self) -> int:
        return self._count

    # -- finishing
    def _finish_file(self) -> None:
        f, n = self._file, self._count
        for dataset in self._datasets():
            dataset.resize(n, axis=0)
        f.create_dataset("name", data=np.array(self._names, dtype=object), dtype=_STR, shape=(n,))
        f.create_dataset("variant", data=np.array(self._variants, dtype=np.int32), shape=(n,))
        group = f.create_group("params")
        for key in self.param_keys:
            if key in STRING_PARAM_KEYS:
                group.create_dataset(
                    key, data=np.array(self._params[key], dtype=object), dtype=_STR, shape=(n,)
                )
            else:
                group.create_dataset(
                    key, data=np.array(self._params[key], dtype=np.float64), shape=(n,)
                )
        if self._flow is not None:
            self._flow.attrs["clipped"] = self._flow_clipped
        f.attrs["samples"] = n
        f.attrs["complete"] = True
        f.close()

    def close(self) -> ShardInfo:
        """Finish the file and publish it at ``path``; idempotent.

        Returns:
            The :class:`ShardInfo` of the published file (also kept as ``self.info``).
        """
        if self.info is not None:
            return self.info
        if self._closed:
            raise RuntimeError(f"{self.path}: the writer was aborted; nothing was published")
        self._closed = True
        try:
            self._finish_file()
            size = self._tmp.stat().st_size
            with open(self._tmp, "rb") as stream:
                sha256 = _sha256_stream(stream)
                os.fsync(stream.fileno())  # the hash is of what is on disk
            publish(self._tmp, self.path)  # as turbsim._files.atomic_path does
        except BaseException as error:
            self._discard()
            if isinstance(error, Exception) and is_disk_full(error):
                raise disk_full_error(self.path) from None
            raise
        fsync_dir(self.path.parent)
        self.info = ShardInfo(
            file=f"{self.path.parent.name}/{self.path.name}",
            split=self.split,
            index=self.shard_index,
            samples=self._count,
            bytes=size,
            sha256=sha256,
        )
        return self.info

    def abort(self) -> None:
        """Close and delete the temporary file; nothing is published. Safe to call twice."""
        if self.info is None:
            self._closed = True
            self._discard()

    def _discard(self) -> None:
        # Runs while another error (often OSError ENOSPC) propagates: a failing close or unlink
        # of the discarded temporary must not replace that error with a second one.
        try:
            if self._file.id.valid:
                self._file.close()
        except Exception:  # noqa: BLE001 - the file is being thrown away
            pass
        try:
            self._tmp.unlink(missing_ok=True)
        except OSError:
            pass

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
