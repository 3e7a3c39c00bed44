"""Import the weight files of the original releases into this package's networks.

Four kinds of file are recognised from their keys (after stripping DataParallel's ``module.``;
a file may hold the state dict itself or a dict with it under ``"state_dict"``):

- ``erfnet_pretrained.pth`` (Eromera/erfnet_pytorch): ``encoder.initial_block``,
  ``encoder.layers.{0..14}``, ``encoder.output_conv`` (the encoder-only head), ``decoder.*``
  -> :class:`ERFNet` with ``encoder_head=True``; kind ``"erfnet"``.
- the BMVC 2020 segmentation checkpoint ``model_best.pth``: ``encoder.layers.{0..6}``,
  ``encoder.f_layers.{0..7}`` (the eight dilated blocks, our ``encoder.layers.{7..14}``),
  ``encoder.initial_block``, ``decoder.*`` and four unused ``encoder.trans_block1..4``, which are
  dropped with a warning -> :class:`ERFNet` (no encoder head); kind ``"erfnet"``.
- the BMVC 2020 restoration checkpoint ``rmodel_best.pth``: ``down_path``, ``up_path``,
  ``last``, ``trans_block.main`` -> :class:`Restorer` (depth, width, input channels and classes
  read off the shapes; the flow bound 10 px and the feedback scale 0.001 are not stored in the
  file and are the original's constants); kind ``"restorer"``.
- the ImageNet-pretrained encoder ``erfnet_encoder_pretrained.pth.tar``:
  ``features.encoder.{initial_block, layers.0..14}`` and the ImageNet classifier
  ``classifier.linear`` (dropped with a warning) -> an ERFNet :class:`Encoder` without a head
  (kind ``"erfnet-encoder"``); :func:`load_pretrained_encoder` copies it into an ERFNet. Its
  dropout rates (0.1 in the ImageNet network) are not stored; ours are ERFNet's.

The files of the original (PyTorch 0.3) have no BatchNorm ``num_batches_tracked`` buffers; those
are filled with 0 (they only matter with ``momentum=None``). Everything else loads strictly.
Files are read with ``torch.load(weights_only=True)``: a file that needs arbitrary code to
unpickle is refused.
"""

from __future__ import annotations

import os
import pickle
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from feedbackseg.models.erfnet import Encoder, ERFNet
from feedbackseg.models.restorer import FEEDBACK_SCALE, MAX_FLOW_PX, Restorer
from feedbackseg.paths import not_found
from feedbackseg.runs.weights import (
    CheckpointError,
    export_state_dict,
    few,
    load_strict,
    save_atomic,
    unpickling_message,
)
from turbsim.shards.schema import NUM_CLASSES

__all__ = [
    "KINDS",
    "ImportedCheckpoint",
    "OriginalCheckpointWarning",
    "import_original",
    "import_original_info",
    "load_pretrained_encoder",
    "save_imported",
]

#: Checkpoint kinds written by :func:`save_imported`.
KINDS = ("erfnet", "restorer", "erfnet-encoder")

#: Index of the first dilated block in our ``encoder.layers`` (BMVC ``f_layers.0``).
_FIRST_DILATED = 7


class OriginalCheckpointWarning(UserWarning):
    """Parts of an original checkpoint that are not imported (unused modules)."""


@dataclass
class ImportedCheckpoint:
    """An imported original checkpoint.

    Attributes:
        kind: one of :data:`KINDS`.
        module: our network holding the weights, in eval mode.
        num_classes: C of the segmenter or of the feedback block; None where there is none.
        config: constructor keyword arguments that rebuild ``module``.
        notes: what was dropped or filled in (also issued as warnings).
        source: the file read.
    """

    kind: str
    module: nn.Module
    num_classes: int | None
    config: dict[str, Any]
    notes: list[str] = field(default_factory=list)
    source: str = ""


def _read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The tensors of a weights file, unwrapped from ``"state_dict"`` and ``module.``."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(not_found(path, "file"))
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise CheckpointError(unpickling_message(path, str(error))) from None
    except Exception as error:  # noqa: BLE001 - any reader failure is a bad file for the user
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise CheckpointError(
            f"{path}: not a readable torch file ({type(error).__name__}: {first_line})"
        ) from None
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not obj:
        raise CheckpointError(f"{path}: holds no state dict (got {type(obj).__name__})")
    state = {}
    for key, value in obj.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise CheckpointError(
                f"{path}: not a state dict (entry {key!r} is a {type(value).__name__})"
            )
        state[key.removeprefix("module.")] = value
    return state


def _note(notes: list[str], message: str) -> None:
    notes.append(message)
    warnings.warn(message, OriginalCheckpointWarning, stacklevel=3)


def _import_erfnet(state: dict, path: Path, notes: list[str]) -> ImportedCheckpoint:
    if any(k.startswith("encoder.f_layers.") for k in state):  # BMVC 2020 layout
        dropped = sorted({k.split(".")[1] for k in state if k.startswith("encoder.trans_block")})
        if dropped:
            _note(notes, f"{path.name}: ignored the unused modules encoder.{{{','.join(dropped)}}}")
        renamed = {}
        for key, value in state.items():
            if key.startswith("encoder.trans_block"):
                continue
            match = re.match(r"encoder\.f_layers\.(\d+)\.(.*)", key)
            if match:
                key = f"encoder.layers.{_FIRST_DILATED + int(match.group(1))}.{match.group(2)}"
            renamed[key] = value
        state = renamed
    weight = state.get("decoder.output_conv.weight")
    if weight is None or weight.dim() != 4:
        raise CheckpointError(f"{path}: ERFNet layout without decoder.output_conv.weight")
    num_classes = int(weight.shape[1])  # ConvTranspose2d weight: (in, out, kH, kW)
    config = {"num_classes": num_classes, "encoder_head": "encoder.output_conv.weight" in state}
    module = ERFNet(**config)
    load_strict(module, state, path)
    return ImportedCheckpoint("erfnet", module, num_classes, config, notes)


def _import_restorer(state: dict, path: Path, notes: list[str]) -> ImportedCheckpoint:
    first = state.get("down_path.0.block.0.weight")
    if first is None:
        raise CheckpointError(f"{path}: U-Net layout without down_path.0.block.0.weight")
    depth = 1 + max(int(k.split(".")[1]) for k in state if k.startswith("down_path."))
    base_width, in_channels = int(first.shape[0]), int(first.shape[1])
    feedback = "trans_block.main.1.weight" in state
    num_classes = None
    if feedback:
        channels = int(state["trans_block.main.1.weight"].shape[0])
        if channels % in_channels:
            raise CheckpointError(
                f"{path}: feedback block has {channels} input channels, not a multiple of the "
                f"{in_channels} image channels"
            )
        num_classes = channels // in_channels
    config = {
        "in_channels": in_channels,
        "base_width": base_width,
        "depth": depth,
        "num_classes": num_classes if num_classes is not None else NUM_CLASSES,
        "feedback": feedback,
        "feedback_scale": FEEDBACK_SCALE,
        "max_flow_px": MAX_FLOW_PX,
    }
    module = Restorer(**config)
    load_strict(module, state, path)
    return ImportedCheckpoint("restorer", module, num_classes, config, notes)


def _import_encoder(state: dict, path: Path, notes: list[str]) -> ImportedCheckpoint:
    prefix = "features.encoder."
    dropped = sorted({k.rsplit(".", 1)[0] for k in state if not k.startswith(prefix)})
    if dropped:
        _note(notes, f"{path.name}: ignored the ImageNet classifier ({', '.join(dropped)})")
    encoder_state = {k.removeprefix(prefix): v for k, v in state.items() if k.startswith(prefix)}
    module = Encoder(num_classes=None)
    load_strict(module, encoder_state, path)
    return ImportedCheckpoint("erfnet-encoder", module, None, {"num_classes": None}, notes)


def import_original_info(path: str | os.PathLike) -> ImportedCheckpoint:
    """Read an original release's weight file and say what it is; see the module docstring.

    Raises:
        CheckpointError: unreadable, refused (arbitrary pickles), unrecognised or not fitting.
    """
    path = Path(path)
    state = _read_state_dict(path)
    notes: list[str] = []
    keys = state.keys()
    if any(k.startswith("features.encoder.") for k in keys):
        result = _import_encoder(state, path, notes)
    elif any(k.startswith("down_path.") for k in keys):
        result = _import_restorer(state, path, notes)
    elif any(k.startswith("decoder.") for k in keys):
        result = _import_erfnet(state, path, notes)
    else:
        raise CheckpointError(
            f"{path}: unrecognised layout (not ERFNet, U-Net restorer or ImageNet encoder); "
            f"first keys: {few(list(keys)[:3], 3)}"
        )
    result.module.eval()
    result.source = str(path)
    return result


def import_original(path: str | os.PathLike) -> nn.Module:
    """Our network loaded with an original release's weights, in eval mode.

    Returns an :class:`ERFNet`, a :class:`Restorer` or, for the ImageNet encoder, an ERFNet
    :class:`Encoder` (see the module docstring and :func:`import_original_info`).
    """
    return import_original_info(path).module


def load_pretrained_encoder(model: ERFNet, path: str | os.PathLike) -> list[str]:
    """Copy the encoder weights of an original file (ImageNet encoder or full ERFNet) into
    ``model.encoder``, leaving its encoder head and decoder as they are.

    Returns:
        The notes of the import (dropped modules).
    """
    info = import_original_info(path)
    if info.kind not in ("erfnet-encoder", "erfnet"):
        raise CheckpointError(f"{path}: holds a {info.kind}, not an ERFNet encoder")
    source = info.module if info.kind == "erfnet-encoder" else info.module.encoder
    weights = {k: v for k, v in source.state_dict().items() if not k.startswith("output_conv.")}
    result = model.encoder.load_state_dict(weights, strict=False)
    if result.unexpected_keys or any(not k.startswith("output_conv.") for k in result.missing_keys):
        raise CheckpointError(f"{path}: encoder does not fit: {few(result.missing_keys)}")
    return info.notes


def save_imported(info: ImportedCheckpoint, path: str | os.PathLike) -> dict[str, Any]:
    """Write ``{"kind", "num_classes", "config", "state_dict", "source"}`` with torch.save,
    atomically (:func:`turbsim._files.atomic_path`). Returns the dict written.

    Raises:
        CheckpointError: the destination folder does not exist.
        OSError: the file cannot be written (disk full, read-only folder), naming ``path``;
            ``path`` keeps its old content.
    """
    path = Path(path)
    payload = {
        "kind": info.kind,
        "num_classes": info.num_classes,
        "config": dict(info.config),
        "state_dict": export_state_dict(info.module),
        "source": Path(info.source).name,
    }
    if not path.parent.is_dir():
        raise CheckpointError(f"{path}: folder {path.parent} does not exist")
    save_atomic(payload, path)
    return payload
