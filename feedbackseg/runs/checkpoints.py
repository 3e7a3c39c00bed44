"""This package's checkpoints: what the trainer writes (``RUN/last.pt``, ``RUN/best.pt``) and
reads back.

A checkpoint is a dict saved with ``torch.save`` and read with ``torch.load(weights_only=True)``
(plain tensors, dicts, lists, numbers and strings only): ``format`` (:data:`CHECKPOINT_FORMAT`),
``version`` (:data:`CHECKPOINT_VERSION`), ``mode``, ``num_classes``, ``small``, ``model`` (the
state dict) and the trainer's state (see :func:`save_checkpoint`). :func:`model_from_checkpoint`
rebuilds the network through :func:`feedbackseg.models.build_model`.

The import of the original releases' weight files lives in :mod:`feedbackseg.runs.original`; its
names (``import_original``, ``import_original_info``, ``load_pretrained_encoder``,
``save_imported``, ...) stay importable from here.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

import torch
from torch import nn

from feedbackseg.config import MODES
from feedbackseg.models import build_model
from feedbackseg.paths import not_found
from feedbackseg.runs.original import (
    KINDS,
    ImportedCheckpoint,
    OriginalCheckpointWarning,
    import_original,
    import_original_info,
    load_pretrained_encoder,
    save_imported,
)
from feedbackseg.runs.weights import (
    CheckpointError,
    export_state_dict,
    few,
    load_strict,
    save_atomic,
    unpickling_message,
)

__all__ = [
    "CHECKPOINT_FORMAT",
    "CHECKPOINT_VERSION",
    "KINDS",
    "CheckpointError",
    "ImportedCheckpoint",
    "OriginalCheckpointWarning",
    "export_state_dict",
    "import_original",
    "import_original_info",
    "load_checkpoint",
    "load_pretrained_encoder",
    "load_pretrained_restorer",
    "model_from_checkpoint",
    "save_checkpoint",
    "save_imported",
]


#: ``format`` value of the checkpoints written by the trainer (RUN/last.pt, RUN/best.pt).
CHECKPOINT_FORMAT = "fbseg-checkpoint"
CHECKPOINT_VERSION = 1


def save_checkpoint(path: str | os.PathLike, payload: dict[str, Any]) -> None:
    """Write a trainer checkpoint atomically (temporary file in the same folder, then rename).

    ``payload`` must hold plain tensors, dicts, lists, numbers and strings only (it is read back
    with ``weights_only=True``). Required keys: ``mode`` (a training mode of
    :func:`feedbackseg.models.build_model`), ``num_classes``, ``small``, ``model`` (state dict);
    conventional ones: ``config`` (the resolved training config), ``step``, ``epoch``,
    ``optimizers``, ``schedulers``, ``scaler``, ``rng``, ``best_miou``. ``format`` and
    ``version`` are added here.
    """
    missing = [k for k in ("mode", "num_classes", "small", "model") if k not in payload]
    if missing:
        raise ValueError(f"checkpoint payload lacks {', '.join(missing)}")
    path = Path(path)
    data = {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, **payload}
    path.parent.mkdir(parents=True, exist_ok=True)
    save_atomic(data, path)


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """Read a trainer checkpoint with ``weights_only=True``.

    Raises:
        CheckpointError: one line naming the file: missing, unreadable, needing arbitrary
            pickles, or not a trainer checkpoint (e.g. an original release file: use
            ``fbseg import-checkpoint``).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(not_found(path, "checkpoint file"))
    try:
        data = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        raise CheckpointError(unpickling_message(path, str(error))) from None
    except Exception as error:  # torch's unpickler raises many types on foreign bytes
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CheckpointError(f"{path}: not a readable torch checkpoint ({first})") from None
    if not isinstance(data, dict) or data.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(
            f"{path}: not an fbseg training checkpoint (an original release file? convert it "
            "with `fbseg import-checkpoint`)"
        )
    if int(data.get("version", 0)) > CHECKPOINT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint version {data.get('version')} is newer than this fbseg "
            f"({CHECKPOINT_VERSION})"
        )
    return data


def model_from_checkpoint(checkpoint: dict, path: str | os.PathLike = "checkpoint") -> nn.Module:
    """Rebuild the network of a trainer checkpoint and load its weights; eval mode."""
    mode = checkpoint.get("mode")
    if mode not in MODES:
        raise CheckpointError(f"{path}: unknown model mode {mode!r} (expected one of {MODES})")
    config = checkpoint.get("config") or {}
    model = build_model(
        mode,
        int(checkpoint["num_classes"]),
        bool(checkpoint["small"]),
        restorer_bn=str(config.get("restorer_bn", "running")),  # how R ran at validation
    )
    load_strict(model, checkpoint["model"], Path(path))
    return model.eval()


def _restorer_weights(path: Path) -> tuple[dict[str, torch.Tensor], str]:
    """R's state dict in a trainer checkpoint with a restorer, or in an original
    ``rmodel_best.pth``; and what the file is (for the notes)."""
    try:
        checkpoint = load_checkpoint(path)
    except CheckpointError as ours:
        try:
            info = import_original_info(path)
        except CheckpointError:
            raise ours from None
        if info.kind != "restorer":
            raise CheckpointError(f"{path}: holds a {info.kind}, not a restorer") from None
        return info.module.state_dict(), "an original restorer"
    prefix = "restorer."
    state = {
        k.removeprefix(prefix): v for k, v in checkpoint["model"].items() if k.startswith(prefix)
    }
    if not state:
        raise CheckpointError(f"{path}: a {checkpoint.get('mode')} checkpoint holds no restorer")
    return state, f"the restorer of a {checkpoint.get('mode')} run (step {checkpoint.get('step')})"


def load_pretrained_restorer(restorer: nn.Module, path: str | os.PathLike) -> list[str]:
    """Copy R's weights from a checkpoint (``--pretrained-restorer``) into ``restorer``.

    The file is a trainer checkpoint of a mode with a restorer (``restore``, ``restore-seg``,
    ``feedback``) or an original release's ``rmodel_best.pth``. The feedback block
    (``trans_block``) is copied when both have one; a restorer without it leaves the target's
    block at its initialisation (noted), and one with it into a plain R drops it (noted).

    Returns:
        Notes for the training log.

    Raises:
        CheckpointError: unreadable file, no restorer in it, or weights of another shape
            (e.g. a --small run into a full-width R).
    """
    path = Path(path)
    state, what = _restorer_weights(path)
    target = restorer.state_dict()
    notes = [f"{path}: R starts from {what}"]
    if any(k.startswith("trans_block.") for k in target) and not any(
        k.startswith("trans_block.") for k in state
    ):
        notes.append(f"{path.name}: no feedback block; R's trans_block keeps its initialisation")
    dropped = [k for k in state if k.startswith("trans_block.") and k not in target]
    if dropped:
        notes.append(f"{path.name}: dropped its feedback block (this R has none)")
        state = {k: v for k, v in state.items() if k not in dropped}
    wrong = [
        k for k, v in state.items() if k in target and tuple(v.shape) != tuple(target[k].shape)
    ]
    missing = [k for k in target if k not in state and not k.startswith("trans_block.")]
    if wrong or missing or any(k not in target for k in state):
        raise CheckpointError(
            f"{path}: its restorer does not fit this one ({few(wrong or missing or list(state))}; "
            "a --small run and a full-width one differ)"
        )
    restorer.load_state_dict(state, strict=False)
    return notes
