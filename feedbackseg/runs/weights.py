"""What both checkpoint readers share: the error type, one-line messages for files the
weights-only unpickler refuses, strict state-dict loading that names every mismatch, and the
export of a module's weights as plain CPU tensors, and the atomic torch.save of both writers.

:mod:`feedbackseg.runs.checkpoints` (this package's format) and :mod:`feedbackseg.runs.original`
(the original releases' files) both build on this module; it imports neither.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

from feedbackseg.errors import CheckpointError
from turbsim._files import atomic_path

__all__ = ["CheckpointError", "export_state_dict", "load_strict", "save_atomic"]


def unpickling_message(path: Path, error: str) -> str:
    """One line for a file the weights-only unpickler rejected (``error``: its message)."""
    found = re.search(r"Unsupported global: GLOBAL (\S+)", error)
    if found or "global" in error:
        what = f" (it pickles {found.group(1)})" if found else ""
        return f"{path}: needs arbitrary code to unpickle{what}, not a plain weights file; refused"
    reason = re.search(r"WeightsUnpickler error:\s*(.+)", error) or re.search(r"(.+)", error)
    detail = reason.group(1).strip() if reason else "unpickling failed"
    return f"{path}: not a readable torch weights file ({detail}); refused"


def few(keys: set[str] | list[str], limit: int = 4) -> str:
    """The first ``limit`` of the sorted ``keys``, comma-separated, with a "(+N more)" tail."""
    keys = sorted(keys)
    more = f" (+{len(keys) - limit} more)" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more


def load_strict(module: nn.Module, state: dict[str, torch.Tensor], path: Path) -> None:
    """Load ``state`` into ``module``; every key must match in name and shape, except BN
    ``num_batches_tracked`` buffers absent from pre-0.4 files (filled with 0).

    Raises:
        CheckpointError: missing, unexpected or misshapen keys, named (a few of each).
    """
    expected = module.state_dict()
    missing = {k for k in expected.keys() - state.keys() if not k.endswith(".num_batches_tracked")}
    unexpected = state.keys() - expected.keys()
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} keys: {few(missing)}")
        if unexpected:
            parts.append(f"unexpected {len(unexpected)} keys: {few(unexpected)}")
        raise CheckpointError(f"{path}: does not fit the network: " + "; ".join(parts))
    wrong = [
        f"{k} {tuple(state[k].shape)} != {tuple(expected[k].shape)}"
        for k in sorted(state)
        if state[k].shape != expected[k].shape
    ]
    if wrong:
        raise CheckpointError(f"{path}: shapes do not fit the network: {few(wrong, 3)}")
    full = dict(state)
    for key in expected.keys() - state.keys():  # num_batches_tracked of pre-0.4 files
        full[key] = torch.zeros_like(expected[key])
    module.load_state_dict(full, strict=True)


def export_state_dict(module: nn.Module) -> dict[str, torch.Tensor]:
    """The module's state dict as plain, contiguous CPU tensors (no views of live parameters)."""
    return {k: v.detach().to("cpu", copy=True).contiguous() for k, v in module.state_dict().items()}


class _RecordingStream:
    """A write-only file object that keeps the first OSError of its stream's ``write``.

    torch.save swallows the OSError of a failed write (disk full, quota) and raises
    ``RuntimeError("... unexpected pos ...")`` instead; this keeps the real cause.
    """

    def __init__(self, stream: Any) -> None:
        self.stream = stream
        self.error: OSError | None = None

    def write(self, data: Any) -> int:
        try:
            return self.stream.write(data)
        except OSError as error:
            self.error = self.error or error
            raise

    def flush(self) -> None:
        self.stream.flush()


def save_atomic(obj: Any, path: str | os.PathLike) -> None:
    """torch.save through the project's atomic writer (:func:`turbsim._files.atomic_path`).

    Saved through a file object, so the archive's record names do not depend on the temporary
    file's name (the same payload gives the same bytes).

    Raises:
        OSError: the file cannot be written (disk full, read-only folder, ...); ``filename`` is
            ``path`` (not the temporary), and torch's "unexpected pos" error becomes the OS error
            that caused it. ``path`` keeps its old content.
    """
    path = Path(path)
    try:
        with atomic_path(path) as temporary, open(temporary, "xb") as stream:
            recorder = _RecordingStream(stream)
            try:
                torch.save(obj, recorder)
            except RuntimeError:
                if recorder.error is None:
                    raise
                raise recorder.error from None
    except OSError as error:
        if error.filename == str(path):
            raise
        raise OSError(error.errno, error.strerror or str(error), str(path)) from None
