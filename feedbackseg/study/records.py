"""What ``fbseg study`` records in a run folder, each record bound to the bytes of best.pt.

- ``RUN/study_done.json`` (:data:`DONE_NAME`), the completion marker: written by the study,
  last, once :func:`feedbackseg.training.train.train` returned (its final validation and best.pt are
  on disk): ``{"steps": N, "best_sha256": ...}``. A run is finished only while the marker is there,
  counts the steps the study asks for, and names the best.pt in the folder; a run killed in its
  final validation has none (it is resumed).
- ``RUN/study_eval.json`` (:data:`EVAL_NAME`), the cached evaluation of best.pt: it carries
  ``"checkpoint": {"best_sha256": ..., "steps": N}`` and is reused only for that checkpoint
  (a run resumed to more steps, or whose best.pt changed, is evaluated again).

Both are published atomically (a unique temporary per writer, then ``os.replace``): concurrent
``--only`` tasks never see a partial file, and an unreadable one counts as absent.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from feedbackseg.runs.rundir import BEST_NAME
from turbsim import _files

__all__ = [
    "DONE_NAME",
    "EVAL_NAME",
    "best_digest",
    "cached_evaluation",
    "checkpoint_identity",
    "clear_done",
    "read_done",
    "write_done",
    "write_evaluation",
]

#: Completion marker of a run of a study, written last.
DONE_NAME = "study_done.json"
#: Per-run evaluation file, next to best.pt.
EVAL_NAME = "study_eval.json"
#: Key of study_eval.json naming the checkpoint it was computed from.
CHECKPOINT_KEY = "checkpoint"

#: sha256 of files already hashed by this process, by (path, inode, size, mtime_ns).
_DIGESTS: dict[tuple[str, int, int, int], str] = {}


def best_digest(run: str | os.PathLike) -> str | None:
    """sha256 (hex) of ``RUN/best.pt``, or None without one (memoised while the file is
    unchanged)."""
    path = Path(run) / BEST_NAME
    try:
        stat = path.stat()
    except OSError:
        return None
    key = (str(path.resolve()), stat.st_ino, stat.st_size, stat.st_mtime_ns)
    if key not in _DIGESTS:
        digest = hashlib.sha256()
        try:
            with open(path, "rb") as stream:
                for block in iter(lambda: stream.read(1 << 20), b""):
                    digest.update(block)
        except OSError:
            return None
        _DIGESTS[key] = digest.hexdigest()
    return _DIGESTS[key]


def _read_json(path: Path) -> dict[str, Any] | None:
    """The JSON object in ``path``; None if it is missing, unreadable or not an object."""
    try:
        value = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return value if isinstance(value, dict) else None


def write_done(run: str | os.PathLike, steps: int) -> dict[str, Any]:
    """Mark RUN finished after ``steps`` steps, naming its best.pt; the marker.

    Raises:
        FileNotFoundError: RUN has no best.pt (a run of a study always validates).
    """
    digest = best_digest(run)
    if digest is None:
        path = Path(run) / BEST_NAME
        raise FileNotFoundError(2, "no such checkpoint (the run kept no best.pt)", str(path))
    marker = {"steps": int(steps), "best_sha256": digest}
    _files.write_json(Path(run) / DONE_NAME, marker, indent=2)
    return marker


def read_done(run: str | os.PathLike, target: int) -> dict[str, Any] | None:
    """RUN's marker if the run is finished: the marker is readable, counts at least ``target``
    steps and names the best.pt in RUN; else None."""
    marker = _read_json(Path(run) / DONE_NAME)
    if marker is None:
        return None
    steps = marker.get("steps")
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < target:
        return None
    if marker.get("best_sha256") != best_digest(run):
        return None
    return marker


def clear_done(run: str | os.PathLike) -> None:
    """Drop RUN's marker (before the run trains again)."""
    (Path(run) / DONE_NAME).unlink(missing_ok=True)


def checkpoint_identity(run: str | os.PathLike, steps: int) -> dict[str, Any]:
    """What a study_eval.json of RUN's current best.pt after ``steps`` steps must carry."""
    return {"best_sha256": best_digest(run), "steps": int(steps)}


def cached_evaluation(run: str | os.PathLike, identity: dict[str, Any]) -> dict[str, Any] | None:
    """RUN's study_eval.json if it was computed from the checkpoint ``identity`` names."""
    data = _read_json(Path(run) / EVAL_NAME)
    if data is None or data.get(CHECKPOINT_KEY) != identity:
        return None
    return data


def write_evaluation(
    run: str | os.PathLike, data: dict[str, Any], identity: dict[str, Any]
) -> bool:
    """Publish ``data`` as RUN's study_eval.json for the checkpoint ``identity``, unless best.pt
    changed meanwhile (then nothing is cached); whether it was written."""
    if identity["best_sha256"] is None or best_digest(run) != identity["best_sha256"]:
        return False
    _files.write_json(Path(run) / EVAL_NAME, {**data, CHECKPOINT_KEY: identity}, indent=2)
    return True
