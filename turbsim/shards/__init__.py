"""HDF5 shards and their manifest: the on-disk contract between turbsim and its readers.

This is the only module of turbsim that imports h5py. feedbackseg's trainer reads shards through
:class:`ShardReader`; any other tool can read them with plain h5py (every dataset is
gzip/lzf-compressed or raw, one sample per chunk, and self-describing attributes).

Layout of an output folder ``OUT``::

    OUT/manifest.json                 written last, atomically (see :func:`write_manifest`)
    OUT/{split}/shard-{k:05d}.h5      one file per shard (see :func:`shard_path`)

Schema of one shard file (``schema_version`` 1), N samples of H x W pixels:

==================  ==============  ==========================================================
dataset             shape, dtype    meaning
==================  ==============  ==========================================================
``distorted``       (N,H,W,3) u1    distorted image, RGB
``clean``           (N,H,W,3) u1    the source image, RGB
``label``           (N,H,W) u1      Cityscapes trainIds, 255 = ignore
``name``            (N,) str        Cityscapes stem, e.g. ``aachen_000000_000019`` (UTF-8)
``variant``         (N,) i4         distorted version of the same source image, 0, 1, ...
``params/<key>``    (N,) f8         per-sample physical parameters (units in the key's name)
``params/wave``     (N,) str        wave model, when the writer was given the key ``wave``
``flow``            (N,2,H,W)       optional displacement [px], [:,0] row, [:,1] column;
                                    int16 with ``flow.attrs["scale"]`` px per unit (1/64 by
                                    default) or float16 (scale 1.0): px = stored * scale
==================  ==============  ==========================================================

Convention of ``flow`` (as :func:`turbsim.sample_tilt_field`): ``distorted(r, c) =
clean(r + flow[0, r, c], c + flow[1, r, c])``, so content moves by ``-flow``.

File attributes: ``schema_version``, ``split``, ``shard_index``, ``height``, ``width``,
``samples``, ``compression`` (``gzip``/``lzf``/``none``), ``compression_level`` (gzip only),
``flow_storage`` (``none``/``int16``/``float16``) and ``complete``, set True just before the file
is closed. A shard is written to a temporary name in the same folder and renamed into place only
when complete, so a file named ``shard-NNNNN.h5`` is never half-written.

Reading shards in DataLoader workers: :class:`ShardReader` opens its file on first access and
drops the handle when pickled, so it can be sent to spawned workers; h5py serialises calls under
one lock, so parallel reads need processes, not threads. On network filesystems (NFS, Lustre)
pass ``locking=False`` (or set ``HDF5_USE_FILE_LOCKING=FALSE``).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import secrets
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from turbsim.shards.schema import (  # noqa: F401  (re-exported: the contract's names)
    COMPRESSIONS,
    DEFAULT_FLOW_SCALE,
    FLOW_STORAGES,
    GZIP_LEVEL,
    IGNORE_LABEL,
    MANIFEST_NAME,
    MANIFEST_SCHEMA_VERSION,
    SCHEMA_VERSION,
    SHARD_RE,
    STRING_PARAM_KEYS,
)

_TMP_SUFFIX = ".tmp"
_SHARD_INFO_KEYS = ("file", "split", "index", "samples", "bytes", "sha256")
_INT16_MIN, _INT16_MAX = np.iinfo(np.int16).min, np.iinfo(np.int16).max
_FLOAT16_MAX = float(np.finfo(np.float16).max)
_STR = h5py.string_dtype("utf-8")


class ShardError(RuntimeError):
    """A user-facing problem with a shard folder or file; the message is one line naming it."""


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


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes, read ``chunk`` bytes at a time."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        while block := stream.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def library_versions() -> dict[str, str]:
    """Versions of h5py and of the HDF5 library it was built with (for the manifest)."""
    return {"h5py": h5py.__version__, "hdf5": h5py.version.hdf5_version}


def _temporaries(root: Path) -> list[Path]:
    """Leftover temporary files where turbsim writes: ``root/*.tmp`` and ``root/*/*.tmp``."""
    if not root.is_dir():
        return []
    found = [p for p in root.glob(f"*{_TMP_SUFFIX}") if p.is_file()]
    found += [p for p in root.glob(f"*/*{_TMP_SUFFIX}") if p.is_file()]
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


def _fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable, where the platform allows it (cheap, best effort)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _temporary_name(path: Path) -> Path:
    """A unique temporary name next to ``path`` (two writers of one shard never collide)."""
    return path.with_name(f"{path.name}.{os.getpid()}-{secrets.token_hex(4)}{_TMP_SUFFIX}")


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
        missing = [k for k in _SHARD_INFO_KEYS if k not in data]
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
    if compression == "gzip":
        return {"compression": "gzip", "compression_opts": GZIP_LEVEL, "shuffle": shuffle}
    if compression == "lzf":
        return {"compression": "lzf", "shuffle": shuffle}
    return {}


def _describe(array: Any) -> str:
    if isinstance(array, np.ndarray):
        return f"{array.dtype} {tuple(array.shape)}"
    return type(array).__name__


class ShardWriter:
    """Write one shard file, published atomically on :meth:`close`.

    Samples are appended one at a time with :meth:`add`; the file is written under a unique
    temporary name next to ``path`` and renamed to ``path`` by :meth:`close`, after the
    ``complete`` attribute is set and the bytes are hashed. An existing file at ``path`` is not
    touched until that rename. Used as a context manager, an exception inside the block deletes
    the temporary and publishes nothing.

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
        self.info: ShardInfo | None = None
        self._count = 0
        self._capacity = max(0, int(expected_count or 0))
        self._names: list[str] = []
        self._variants: list[int] = []
        self._params: dict[str, list[Any]] = {k: [] for k in self.param_keys}
        self._flow_clipped = 0
        self._closed = False

        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = _temporary_name(self.path)
        try:
            # No chunk cache: every write is a whole chunk, compressed and written at once.
            self._file = h5py.File(self._tmp, "x", rdcc_nbytes=0)
        except OSError as error:
            raise ShardError(f"{self.path}: cannot create {self._tmp.name} ({error})") from None
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
        if i >= self._capacity:
            self._capacity = max(i + 1, 2 * self._capacity)
            for dataset in self._datasets():
                dataset.resize(self._capacity, axis=0)
        self._images["distorted"][i] = distorted
        self._images["clean"][i] = clean
        self._label[i] = label
        if encoded is not None:
            self._flow[i] = encoded
            self._flow_clipped += clipped
        self._names.append(name)
        self._variants.append(int(variant))
        for key, value in values.items():
            self._params[key].append(value)
        self._count = i + 1

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
            digest = hashlib.sha256()
            with open(self._tmp, "rb") as stream:
                while block := stream.read(1 << 20):
                    digest.update(block)
                os.fsync(stream.fileno())
            os.replace(self._tmp, self.path)
        except BaseException:
            self._discard()
            raise
        _fsync_dir(self.path.parent)
        self.info = ShardInfo(
            file=f"{self.path.parent.name}/{self.path.name}",
            split=self.split,
            index=self.shard_index,
            samples=self._count,
            bytes=size,
            sha256=digest.hexdigest(),
        )
        return self.info

    def abort(self) -> None:
        """Close and delete the temporary file; nothing is published. Safe to call twice."""
        if self.info is None:
            self._closed = True
            self._discard()

    def _discard(self) -> None:
        try:
            if self._file.id.valid:
                self._file.close()
        finally:
            self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


# ---------------------------------------------------------------------------- ShardReader
def _attr(value: Any) -> Any:
    """An HDF5 attribute as a plain Python value."""
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, np.generic):
        return value.item()
    return value


def _open_h5(path: Path, locking: bool | None) -> h5py.File:
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

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for i in range(len(self)):
            yield self[i]

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


# ------------------------------------------------------------------------------- manifest
def _write_text_atomic(path: Path, text: str) -> None:
    tmp = _temporary_name(path)
    try:
        with open(tmp, "x", encoding="utf-8") as stream:
            stream.write(text)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def write_manifest(root: str | os.PathLike[str], manifest: Mapping[str, Any]) -> Path:
    """Write ``root/manifest.json`` atomically (temporary file + rename).

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
    text = json.dumps(manifest, indent=2, allow_nan=False) + "\n"
    _write_text_atomic(path, text)
    return path


def read_manifest(root: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and check ``root/manifest.json``.

    Returns:
        The manifest dict; ``shards`` entries are left as dicts (use :meth:`ShardInfo.from_dict`).

    Raises:
        ShardError: the folder or manifest is missing, not JSON, of another schema version, or
            its ``shards`` list is malformed; the message names the file.
    """
    root = Path(root)
    path = root / MANIFEST_NAME
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
    return [ShardInfo.from_dict(entry) for entry in manifest["shards"]]


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


# ------------------------------------------------------------------------- verify, summary
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


def verify(root: str | os.PathLike[str], locking: bool | None = None) -> list[str]:
    """Check an output folder against its manifest; every problem is one line naming a file.

    Checks: each listed shard exists with the recorded size and SHA-256, is a complete shard
    whose attributes, sample count and dataset shapes/dtypes agree with its manifest entry;
    no shard is listed twice; no ``shard-*.h5`` on disk is missing from the manifest; no
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
    for path in sorted(root.glob("*/shard-*.h5")):
        if SHARD_RE.match(path.name) and path.resolve() not in listed:
            problems.append(f"{path}: shard file not listed in the manifest")
    for path in _temporaries(root):
        problems.append(f"{path}: leftover temporary file (interrupted write; delete it)")
    return problems


def _format_bytes(size: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def _table(rows: list[list[str]], right: set[int]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for row in rows:
        cells = [
            c.rjust(widths[i]) if i in right else c.ljust(widths[i]) for i, c in enumerate(row)
        ]
        lines.append("  ".join(cells).rstrip())
    return lines


def summarize(root: str | os.PathLike[str], locking: bool | None = None) -> str:
    """A plain-text summary of an output folder: per split the shards, samples, image size and
    bytes on disk; compression and flow storage; min/max of every per-sample parameter; the
    number of skipped inputs.

    Raises:
        ShardError: no valid manifest, or a listed shard cannot be read.
    """
    root = Path(root)
    manifest = read_manifest(root)
    infos = _shard_infos(manifest)
    per_split: dict[str, dict[str, Any]] = {}
    ranges: dict[str, list[float]] = {}
    waves: set[str] = set()
    codecs: set[str] = set()
    flows: set[str] = set()
    for info in infos:
        row = per_split.setdefault(
            info.split, {"shards": 0, "samples": 0, "bytes": 0, "sizes": set()}
        )
        row["shards"] += 1
        row["samples"] += info.samples
        row["bytes"] += info.bytes
        with ShardReader(root / info.file, locking=locking) as reader:
            attrs = reader.attrs
            row["sizes"].add(f"{attrs['height']}x{attrs['width']}")
            level = attrs.get("compression_level")
            codecs.add(f"{attrs['compression']}" + (f" (level {level})" if level else ""))
            flow = attrs.get("flow_storage", "none")
            flows.add(flow)
            for key, values in reader.params.items():
                if values.size == 0:
                    continue
                if values.dtype == object:
                    waves.update(str(v) for v in values)
                    continue
                low, high = float(values.min()), float(values.max())
                bounds = ranges.setdefault(key, [low, high])
                bounds[0], bounds[1] = min(bounds[0], low), max(bounds[1], high)

    lines = [f"dataset      {root}"]
    for key in ("tool_version", "created", "recipe_hash", "root_seed", "git_commit"):
        if manifest.get(key) is not None:
            lines.append(f"{key:<12} {manifest[key]}")
    lines.append("")
    rows = [["split", "shards", "samples", "size HxW", "on disk"]]
    for split, row in per_split.items():
        rows.append(
            [
                split,
                str(row["shards"]),
                str(row["samples"]),
                ",".join(sorted(row["sizes"])),
                _format_bytes(row["bytes"]),
            ]
        )
    rows.append(
        [
            "total",
            str(len(infos)),
            str(sum(i.samples for i in infos)),
            "",
            _format_bytes(sum(i.bytes for i in infos)),
        ]
    )
    lines += _table(rows, right={1, 2, 4})
    lines.append("")
    lines.append(f"compression  {', '.join(sorted(codecs)) or '-'}")
    lines.append(f"flow stored  {', '.join(sorted(flows)) or '-'}")
    if waves:
        lines.append(f"wave         {', '.join(sorted(waves))}")
    if ranges:
        lines.append("")
        rows = [["parameter", "min", "max"]]
        rows += [[k, f"{lo:.6g}", f"{hi:.6g}"] for k, (lo, hi) in ranges.items()]
        lines += _table(rows, right={1, 2})
    skipped = manifest.get("skipped") or []
    lines.append("")
    lines.append(f"skipped inputs: {len(skipped)}")
    return "\n".join(lines)
