"""The human text report of an output folder (``turbsim info``): per split the shards, samples,
image size and bytes on disk; compression, flow storage and parameter ranges. numpy + h5py only.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from turbsim.shards.manifest import _shard_infos, read_manifest
from turbsim.shards.reader import ShardReader


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
