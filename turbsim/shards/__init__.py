"""HDF5 shards and their manifest: the on-disk contract between turbsim and its readers.

This is the only module of turbsim that imports h5py. feedbackseg's trainer reads shards through
:class:`ShardReader`; any other tool can read them with plain h5py (every dataset is
gzip/lzf-compressed or raw, one sample per chunk, and self-describing attributes).

Layout of an output folder ``OUT``::

    OUT/manifest.json                 written last, atomically (keys: :class:`Manifest`, built
                                      by :func:`make_manifest`, see :func:`write_manifest`)
    OUT/{split}/shard-{k:05d}.h5      one file per shard (see :func:`shard_path`)
    OUT/{split}/shard-{k:05d}.json    its sidecar, written once it is published
                                      (turbsim.shards.sidecar)

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

Modules (numpy + h5py only; each imports only modules above it in this table):

==================  ==========================================================================
``schema``          the contract's versions, names and choices, IGNORE_LABEL, the Cityscapes
                    table (numpy only, no h5py)
``errors``          :class:`ShardError`
``writer``          :class:`ShardWriter`, :class:`ShardInfo`, :func:`shard_path`,
                    :func:`sha256_file`
``manifest``        :func:`write_manifest`, :func:`read_manifest`, :func:`library_versions`,
                    :func:`clean_temporaries`
``reader``          :class:`ShardReader`, :func:`open_split`, :func:`list_splits`
``integrity``       :func:`verify`, :func:`is_published_shard_valid`
``report``          :func:`summarize` (the text of ``turbsim info``)
==================  ==========================================================================

Every public name is available here, loaded on first use (PEP 562): ``turbsim.shards.X``.
``import turbsim.shards.schema`` alone therefore loads numpy only, not h5py.
"""

from __future__ import annotations

import importlib
from typing import Any

#: Public name -> the submodule that defines it.
_EXPORTS: dict[str, str] = {
    "COMPRESSIONS": "turbsim.shards.schema",
    "DEFAULT_FLOW_SCALE": "turbsim.shards.schema",
    "FLOW_STORAGES": "turbsim.shards.schema",
    "GZIP_LEVEL": "turbsim.shards.schema",
    "IGNORE_LABEL": "turbsim.shards.schema",
    "MANIFEST_NAME": "turbsim.shards.schema",
    "MANIFEST_SCHEMA_VERSION": "turbsim.shards.schema",
    "SCHEMA_VERSION": "turbsim.shards.schema",
    "SHARD_RE": "turbsim.shards.schema",
    "STRING_PARAM_KEYS": "turbsim.shards.schema",
    "MANIFEST_KEYS": "turbsim.shards.manifest",
    "Manifest": "turbsim.shards.manifest",
    "ShardError": "turbsim.shards.errors",
    "ShardInfo": "turbsim.shards.writer",
    "ShardReader": "turbsim.shards.reader",
    "ShardWriter": "turbsim.shards.writer",
    "clean_temporaries": "turbsim.shards.manifest",
    "is_published_shard_valid": "turbsim.shards.integrity",
    "library_versions": "turbsim.shards.manifest",
    "list_splits": "turbsim.shards.reader",
    "make_manifest": "turbsim.shards.manifest",
    "read_sidecar": "turbsim.shards.sidecar",
    "sidecar_path": "turbsim.shards.sidecar",
    "sidecar_record": "turbsim.shards.sidecar",
    "write_sidecar": "turbsim.shards.sidecar",
    "open_split": "turbsim.shards.reader",
    "read_manifest": "turbsim.shards.manifest",
    "sha256_file": "turbsim.shards.writer",
    "shard_path": "turbsim.shards.writer",
    "summarize": "turbsim.shards.report",
    "verify": "turbsim.shards.integrity",
    "write_manifest": "turbsim.shards.manifest",
}

__all__ = [
    "COMPRESSIONS",
    "DEFAULT_FLOW_SCALE",
    "FLOW_STORAGES",
    "GZIP_LEVEL",
    "IGNORE_LABEL",
    "MANIFEST_NAME",
    "MANIFEST_SCHEMA_VERSION",
    "MANIFEST_KEYS",
    "SCHEMA_VERSION",
    "SHARD_RE",
    "STRING_PARAM_KEYS",
    "Manifest",
    "ShardError",
    "ShardInfo",
    "ShardReader",
    "ShardWriter",
    "clean_temporaries",
    "is_published_shard_valid",
    "library_versions",
    "list_splits",
    "make_manifest",
    "open_split",
    "read_sidecar",
    "read_manifest",
    "sha256_file",
    "shard_path",
    "sidecar_path",
    "sidecar_record",
    "summarize",
    "verify",
    "write_manifest",
    "write_sidecar",
]


def __getattr__(name: str) -> Any:
    """Import the submodule that defines ``name`` on first use (PEP 562)."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'turbsim.shards' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
