"""Restore and segment image files with a trained model (``fbseg predict``).

Each image (PNG or JPEG; OpenCV reads BGR, converted to RGB once, here at the boundary) is
resized to a size the networks accept: the checkpoint's training height (or the image's own
height rounded to a multiple of 16) and the width that keeps the aspect, rounded to a multiple
of 16, bilinear, scaled to [0, 1] like the training data (SPEC 1). The model runs the inference
loop (SPEC 2.4) and, for each input ``NAME.ext``, these PNGs are written atomically at that
processing size (H x W):

- ``NAME_seg.png``: the segmentation of the last iteration in the Cityscapes palette, (H, W, 3);
  with ``output_format="labelids"`` instead ``NAME_labelIds.png``: single-channel uint8 with the
  official Cityscapes labelIds (trainId -> id, :data:`TRAIN_ID_TO_LABEL_ID`), nearest-resized
  to the *input* image's size, the format the Cityscapes benchmark's scripts evaluate;
- ``NAME_restored.png``: the restored image of the last iteration (restoration modes only);
- ``NAME_sheet.png``: input | restored | segmentation side by side under a title strip of
  :data:`TITLE_PX` rows, (H + TITLE_PX, k W, 3) with k = 3 panels (2 without a restorer).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch import nn

from feedbackseg.data.cityscapes_labels import colorize_train_ids, train_ids_to_label_ids
from feedbackseg.devices.distributed import resolve_device
from feedbackseg.devices.memory import inference_too_large, is_out_of_memory, out_of_memory_detail
from feedbackseg.evaluation.evaluate import write_gray_png, write_png
from feedbackseg.evaluation.inference import (
    DEFAULT_ITERATIONS,
    EvalError,
    checkpoint_height,
    checkpoint_iterations,
    load_model,
    predicted_ids,
    size_multiple,
)
from feedbackseg.models import infer
from feedbackseg.paths import not_found

__all__ = [
    "IMAGE_SUFFIXES",
    "OUTPUT_FORMATS",
    "TITLE_PX",
    "collect_images",
    "network_size",
    "predict_checkpoint",
    "predict_paths",
    "read_rgb",
    "sheet",
]

#: File name endings read as images (case-insensitive).
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
#: Height of the title strip above the panels of a sheet [px].
TITLE_PX = 20
#: ``fbseg predict --format``: the palette PNG, or the official labelIds of the benchmark.
OUTPUT_FORMATS = ("palette", "labelids")


def collect_images(inputs: Sequence[str | os.PathLike]) -> list[Path]:
    """The image files named by ``inputs``: files as given, folders expanded to their PNG/JPEG
    files (sorted, not recursive).

    Raises:
        EvalError: a path that does not exist, is not a PNG/JPEG file, or a folder holding no
            image; two inputs whose outputs would have the same name (one line naming them).
    """
    found: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            images = sorted(
                p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
            )
            if not images:
                raise EvalError(f"{path}: folder holds no PNG/JPEG image")
            found.extend(images)
        elif not path.exists():
            raise EvalError(not_found(path, "file or folder"))
        elif path.suffix.lower() not in IMAGE_SUFFIXES:
            raise EvalError(f"{path}: not a PNG/JPEG image (expected {', '.join(IMAGE_SUFFIXES)})")
        else:
            found.append(path)
    seen: dict[str, Path] = {}
    for path in found:
        other = seen.setdefault(path.stem, path)
        if other != path:
            raise EvalError(
                f"{other} and {path}: both would write {path.stem}_seg.png; pass one of them"
            )
    return found


def read_rgb(path: str | os.PathLike) -> np.ndarray:
    """An image file as (H, W, 3) uint8 RGB (grey images are expanded, alpha dropped).

    Raises:
        EvalError: the file is not a readable image.
    """
    path = Path(path)
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise EvalError(f"{path}: not a readable image")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def network_size(
    image_size: tuple[int, int], height: int | None = None, multiple: int = 16
) -> tuple[int, int]:
    """(H, W) [px] to process an image of ``image_size`` (H, W) at.

    H is ``height`` (None: the image's height rounded to a multiple of ``multiple``); W keeps
    the aspect, rounded to a multiple of ``multiple``; both at least ``multiple``.

    Raises:
        EvalError: ``height`` is not a positive multiple of ``multiple``.
    """
    h, w = int(image_size[0]), int(image_size[1])
    if height is None:
        height = max(multiple, int(round(h / multiple)) * multiple)
    elif height < multiple or height % multiple:
        raise EvalError(f"height {height} is not a positive multiple of {multiple}", key="height")
    width = max(multiple, int(round(w * height / h / multiple)) * multiple)
    return int(height), width


def _titled(panel: np.ndarray, title: str) -> np.ndarray:
    """``panel`` (H, W, 3) under a black strip of TITLE_PX rows holding ``title`` in white."""
    strip = np.zeros((TITLE_PX, panel.shape[1], 3), np.uint8)
    cv2.putText(
        strip, title, (4, TITLE_PX - 6), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1,
        cv2.LINE_AA,
    )  # fmt: skip
    return np.concatenate([strip, panel], axis=0)


def sheet(panels: Sequence[tuple[str, np.ndarray]]) -> np.ndarray:
    """Panels side by side, each under its title.

    Args:
        panels: (title, (H, W, 3) uint8 RGB) pairs, all of the same size.

    Returns:
        (H + TITLE_PX, k W, 3) uint8 RGB for k panels.
    """
    return np.concatenate([_titled(image, title) for title, image in panels], axis=1)


def _to_uint8(image: torch.Tensor) -> np.ndarray:
    """(3, H, W) float in [0, 1] -> (H, W, 3) uint8."""
    array = image.detach().float().clamp(0.0, 1.0).mul(255.0).round().byte().cpu().numpy()
    return np.ascontiguousarray(array.transpose(1, 2, 0))


def _check_sizes(
    model: nn.Module,
    images: Sequence[Path],
    height: int | None,
    multiple: int,
    device: torch.device,
) -> None:
    """Refuse, before anything is written, an image whose processing size cannot fit in memory
    (:func:`feedbackseg.devices.memory.inference_too_large`); each image is read once for its size.

    Raises:
        EvalError: naming the image, its processing size, the estimate and the limit.
    """
    for path in images:
        size = network_size(read_rgb(path).shape[:2], height, multiple)
        reason = inference_too_large(model, size, 1, device)
        if reason is not None:
            raise EvalError(
                f"{path}: processing at {size[0]}x{size[1]} px {reason}; use a smaller "
                "--height or a smaller image"
            )


def _infer(model: nn.Module, x: torch.Tensor, iterations: int, path: Path) -> Any:
    """:func:`feedbackseg.models.infer`; out of memory is an EvalError naming the image."""
    try:
        return infer(model, x, iterations)
    except Exception as error:
        if not is_out_of_memory(error):
            raise
        detail = out_of_memory_detail(error)
        raise EvalError(
            f"out of memory processing {path} at {x.shape[-2]}x{x.shape[-1]} px"
            f"{f' ({detail})' if detail else ''}; try a smaller --height"
        ) from None


@torch.no_grad()
def predict_paths(
    model: nn.Module,
    inputs: Sequence[str | os.PathLike],
    out_dir: str | os.PathLike,
    height: int | None = None,
    iterations: int = DEFAULT_ITERATIONS,
    device: str | torch.device = "cpu",
    output_format: str = "palette",
) -> list[Path]:
    """Restore and segment image files; see the module docstring for what is written.

    Args:
        model: a network of :func:`feedbackseg.models.build_model`; moved to ``device``, eval
            mode.
        inputs: PNG/JPEG files and folders of them (see :func:`collect_images`).
        out_dir: output folder (created if needed).
        height: processing height [px] (a multiple of 16); None: each image's own height
            rounded to a multiple of 16.
        iterations: feedback iterations T (feedback models).
        device: "cpu", "cuda", "auto" or a torch.device.
        output_format: "palette" (``NAME_seg.png``) or "labelids" (``NAME_labelIds.png``).

    Returns:
        The files written, in input order (seg or labelIds, restored if any, sheet per image).

    Raises:
        EvalError: a bad input path or height, an image too large for this machine's memory
            (refused before anything is written), out of memory (one line naming it).
    """
    if output_format not in OUTPUT_FORMATS:
        raise EvalError(
            f"unknown output format {output_format!r} (one of {', '.join(OUTPUT_FORMATS)})",
            key="output_format",
        )
    images = collect_images(inputs)
    multiple = max(16, size_multiple(model))
    if height is not None:
        network_size((height, height), height, multiple)  # validate once, before any work
    device = resolve_device(device)
    _check_sizes(model, images, height, multiple, device)
    model = model.to(device).eval()
    out_dir = Path(out_dir)
    written: list[Path] = []
    for path in images:
        rgb = read_rgb(path)
        h, w = network_size(rgb.shape[:2], height, multiple)
        resized = cv2.resize(rgb, (w, h), interpolation=cv2.INTER_LINEAR)
        x = torch.from_numpy(resized.transpose(2, 0, 1).copy()).float().div_(255.0)
        out = _infer(model, x[None].to(device), iterations, path)
        ids = predicted_ids(out.logits[-1])[0].cpu().numpy()
        seg = colorize_train_ids(ids)
        if output_format == "labelids":
            full = cv2.resize(
                ids.astype(np.uint8), rgb.shape[1::-1], interpolation=cv2.INTER_NEAREST
            )
            target = out_dir / f"{path.stem}_labelIds.png"
            written.append(write_gray_png(target, train_ids_to_label_ids(full)))
        else:
            written.append(write_png(out_dir / f"{path.stem}_seg.png", seg))
        panels = [("input", resized)]
        if out.restored:
            restored_rgb = _to_uint8(out.restored[-1][0])
            written.append(write_png(out_dir / f"{path.stem}_restored.png", restored_rgb))
            panels.append(("restored", restored_rgb))
        panels.append(("segmentation", seg))
        written.append(write_png(out_dir / f"{path.stem}_sheet.png", sheet(panels)))
    return written


def predict_checkpoint(
    checkpoint_path: str | os.PathLike,
    inputs: Sequence[str | os.PathLike],
    out_dir: str | os.PathLike,
    height: int | None = None,
    iterations: int | None = None,
    device: str | torch.device = "auto",
    output_format: str = "palette",
) -> list[Path]:
    """Load a trainer checkpoint and restore and segment image files with it (``fbseg
    predict``); bad input paths fail before the model loads.

    Args:
        checkpoint_path: a checkpoint written by the trainer (``RUN/best.pt``).
        inputs, out_dir: as for :func:`predict_paths`.
        height: processing height [px] (a multiple of 16); None: the checkpoint's training
            height, or each image's own height if it names none.
        iterations: feedback iterations T; None: the checkpoint's (3 if it does not say).
        device: "cpu", "cuda", "auto" or a torch.device.
        output_format: as for :func:`predict_paths`.

    Returns:
        The files written, as :func:`predict_paths`.

    Raises:
        EvalError: a bad input path or height. CheckpointError: a missing, unreadable or
            foreign checkpoint. DeviceError: the device does not exist on this machine.
    """
    images = collect_images(inputs)
    device = resolve_device(device)
    model, checkpoint = load_model(checkpoint_path, device)
    return predict_paths(
        model,
        images,
        out_dir,
        height=height or checkpoint_height(checkpoint),
        iterations=iterations or checkpoint_iterations(checkpoint),
        device=device,
        output_format=output_format,
    )
