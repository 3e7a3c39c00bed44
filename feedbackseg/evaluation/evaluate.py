"""Evaluation of a trained model on a shard split (SPEC-feedbackseg section 5).

:func:`evaluate` runs a model over a dataset (the inference loop of SPEC 2.4 through
:func:`feedbackseg.models.infer`: the last feedback iteration is the prediction) and accumulates a
19 x 19 confusion matrix per feedback iteration over the pixels whose label is not ignored. The
reported IoU is the official Cityscapes one (NOTES-ecosystem.md): per class TP / (TP + FP + FN),
classes absent from both the ground truth and the prediction excluded from the mean
(:class:`ConfusionMatrix`). Every report states the evaluation resolution.
:func:`evaluate_checkpoint` is ``fbseg eval``: load a trainer checkpoint, open the split at the
checkpoint's height and evaluate, in one call.

Under ``torch.distributed`` (if a process group is initialised) each rank evaluates
``indices[rank::world]``, with no padded duplicates, and the confusion matrices are summed, so
every pixel counts exactly once whatever the world size.

The 20-class layout of the original (19 classes + a void class 19 carrying weight 0) is evaluated
on the 19 real classes: the void logit is never predicted, and a void label (the dataset maps 255
to 19 in that layout) is ignored, as in the trainer's validation.

Model loading lives in :mod:`feedbackseg.evaluation.inference`, the comparison of results in
:mod:`feedbackseg.evaluation.compare`, the device and world helpers in
:mod:`feedbackseg.devices.distributed`; their names stay importable from here.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from feedbackseg.config import INPUTS
from feedbackseg.data.cityscapes_labels import colorize_train_ids
from feedbackseg.data.dataset import ShardDataset
from feedbackseg.data.workers import start_iterator, worker_init
from feedbackseg.devices.distributed import (
    ShardedEvalSampler,
    all_reduce_count,
    resolve_device,
    world,
)
from feedbackseg.devices.memory import is_out_of_memory, out_of_memory_detail
from feedbackseg.evaluation.compare import (
    EVAL_JSON_NAME,
    comparison_markdown,
    format_percent,
    load_result,
    result_label,
)
from feedbackseg.evaluation.inference import (
    DEFAULT_ITERATIONS,
    EvalError,
    check_inference_memory,
    checkpoint_height,
    checkpoint_iterations,
    load_model,
    predicted_ids,
    run_model,
    size_multiple,
)
from feedbackseg.evaluation.metrics import ConfusionMatrix
from feedbackseg.json_values import json_safe
from feedbackseg.label_layout import label_layout
from feedbackseg.models import infer, iterations_run
from feedbackseg.paths import named_os_errors
from turbsim import _files
from turbsim.shards.schema import NUM_CLASSES

__all__ = [
    "DEFAULT_ITERATIONS",
    "EVAL_CLASSES",
    "EVAL_JSON_NAME",
    "CheckpointEvaluation",
    "EvalError",
    "EvalResult",
    "checkpoint_height",
    "checkpoint_iterations",
    "comparison_markdown",
    "evaluate",
    "evaluate_checkpoint",
    "load_model",
    "load_result",
    "predicted_ids",
    "resolve_device",
    "run_model",
    "size_multiple",
    "result_label",
    "write_json",
    "write_png",
    "write_text",
]

#: Evaluated classes: the 19 Cityscapes trainIds (a 20-class model's void class is not).
EVAL_CLASSES = NUM_CLASSES


# ------------------------------------------------------------------------------ file output
def write_png(path: str | os.PathLike, rgb: np.ndarray) -> Path:
    """Write an RGB image as PNG atomically (:func:`turbsim._files.write_bytes`).

    Args:
        path: output file; its folder is created if needed.
        rgb: (H, W, 3) uint8 RGB (converted to OpenCV's BGR here, at the boundary).
    """
    rgb = np.asarray(rgb)
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected (H, W, 3) uint8 RGB, got {rgb.shape} {rgb.dtype}")
    return _write_encoded(path, np.ascontiguousarray(rgb[:, :, ::-1]))


def write_gray_png(path: str | os.PathLike, image: np.ndarray) -> Path:
    """Write a single-channel (H, W) uint8 image (e.g. a labelIds map) as PNG atomically."""
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 2:
        raise ValueError(f"expected (H, W) uint8, got {image.shape} {image.dtype}")
    return _write_encoded(path, np.ascontiguousarray(image))


def _write_encoded(path: str | os.PathLike, pixels: np.ndarray) -> Path:
    path = Path(path)
    ok, encoded = cv2.imencode(".png", pixels)
    if not ok:
        raise OSError(f"{path}: PNG encoding failed")
    path.parent.mkdir(parents=True, exist_ok=True)
    with named_os_errors(path):  # a full disk's error names no file
        _files.write_bytes(path, encoded.tobytes())
    return path


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write UTF-8 text atomically; the folder is created if needed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with named_os_errors(path):
        _files.write_text(path, text)
    return path


def write_json(path: str | os.PathLike, data: Any) -> Path:
    """Write ``data`` as indented JSON (indent 2, trailing newline) atomically; NaN and infinities
    are written as null; the folder is created if needed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with named_os_errors(path):
        _files.write_json(path, json_safe(data), indent=2)
    return path


# ------------------------------------------------------------------------------ results
@dataclass
class EvalResult:
    """What :func:`evaluate` measured.

    Attributes:
        confusion: the confusion matrix of the prediction (last feedback iteration).
        iteration_confusions: one matrix per feedback iteration t = 1..T (one entry for the
            modes without feedback); the last one is ``confusion``.
        resolution: (H, W) [px] of the evaluated label maps.
        samples: images evaluated (over all ranks).
        split: the split's name, if known.
        checkpoint: the checkpoint file, if known.
    """

    confusion: ConfusionMatrix
    iteration_confusions: list[ConfusionMatrix] = field(default_factory=list)
    resolution: tuple[int, int] = (0, 0)
    samples: int = 0
    split: str | None = None
    checkpoint: str | None = None

    @property
    def miou(self) -> float:
        """mIoU of the prediction, a fraction (NaN if nothing was counted)."""
        return self.confusion.miou()

    @property
    def pixel_accuracy(self) -> float:
        """Pixel accuracy of the prediction, a fraction."""
        return self.confusion.pixel_accuracy()

    @property
    def miou_per_iteration(self) -> list[float]:
        """mIoU after each feedback iteration t = 1..T (one entry without feedback)."""
        return [m.miou() for m in self.iteration_confusions]

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly summary; IoU values are fractions, NaN becomes None.

        Keys: ``miou``, ``pixel_accuracy``, ``per_class`` {class name: IoU or None},
        ``miou_per_iteration``, ``resolution`` [H, W], ``samples``, ``pixels``, ``split``,
        ``checkpoint``, ``num_classes``.
        """
        data = self.confusion.as_dict()
        data.update(
            {
                "miou_per_iteration": json_safe(self.miou_per_iteration),
                "resolution": [int(self.resolution[0]), int(self.resolution[1])],
                "samples": int(self.samples),
                "split": self.split,
                "checkpoint": self.checkpoint,
            }
        )
        return data

    def report(self) -> str:
        """The per-class IoU table (Markdown), mIoU, pixel accuracy, the evaluation resolution
        and, with several feedback iterations, the mIoU after each one."""
        h, w = self.resolution
        where = f" of split {self.split!r}" if self.split else ""
        pct = format_percent
        lines = [
            self.confusion.to_markdown_table().rstrip("\n"),
            "",
            f"mIoU {pct(self.miou)} %, pixel accuracy {pct(self.pixel_accuracy)} % on "
            f"{self.samples} images{where} at {h}x{w} (H x W) px",
        ]
        if len(self.iteration_confusions) > 1:
            steps = ", ".join(
                f"t={t} {pct(m)} %" for t, m in enumerate(self.miou_per_iteration, start=1)
            )
            lines.append(f"mIoU per feedback iteration: {steps}")
        return "\n".join(lines) + "\n"


@dataclass
class CheckpointEvaluation:
    """What :func:`evaluate_checkpoint` measured, and on what.

    Attributes:
        result: the measurement.
        checkpoint: the checkpoint file, as given.
        shards: the shard folder, as given.
        split: the evaluated split.
        mode: the checkpoint's training mode ("erfnet", "restore-seg", "feedback").
        num_classes: classes C of the network (19, or 20 in the original's layout).
        step: the training step the checkpoint was written at (None if it does not say).
        iterations: feedback iterations run (1 for the modes without feedback).
        input: the images fed to the network, "distorted" or "clean".
    """

    result: EvalResult
    checkpoint: str
    shards: str
    split: str
    mode: str
    num_classes: int
    step: int | None
    iterations: int
    input: str = "distorted"

    def header(self) -> str:
        """One line: checkpoint, mode, classes, step, iterations, shards and split."""
        return (
            f"{self.checkpoint}: {self.mode}, {self.num_classes} classes, step {self.step}, "
            f"{self.iterations} iteration(s); {self.shards} split {self.split!r}"
            + (" (clean images)" if self.input == "clean" else "")
        )

    def report(self) -> str:
        """:meth:`header` above :meth:`EvalResult.report` (what ``fbseg eval`` prints)."""
        return self.header() + "\n" + self.result.report()

    def to_dict(self) -> dict[str, Any]:
        """:meth:`EvalResult.to_dict` plus ``shards``, ``mode``, ``iterations`` and ``step``
        (the layout of ``fbseg eval --json``, read back by :func:`load_result`), and ``input``
        when the network saw the clean images."""
        data = self.result.to_dict()
        data.update(shards=self.shards, mode=self.mode, iterations=self.iterations, step=self.step)
        if self.input != "distorted":
            data["input"] = self.input
        return data


# ------------------------------------------------------------------------------ evaluation
def _prediction_name(name: str, index: int, used: set[str]) -> str:
    """``name``, or ``name_{index}`` if this process already wrote ``name`` (repeated stems,
    e.g. several distorted variants of one source image)."""
    stem = Path(str(name)).name or f"sample_{index:06d}"
    if stem in used:
        stem = f"{stem}_{index:06d}"
    used.add(stem)
    return stem


def _loader(
    dataset: Dataset, batch_size: int, num_workers: int, device: torch.device
) -> DataLoader:
    """This rank's share of ``dataset`` in order: ``indices[rank::world]`` under a process
    group (:class:`ShardedEvalSampler`), everything otherwise."""
    rank, size = world()
    sampler = ShardedEvalSampler(len(dataset), size, rank) if size > 1 else None
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=False,
        sampler=sampler,
        num_workers=num_workers,
        multiprocessing_context="spawn" if num_workers > 0 else None,
        pin_memory=device.type == "cuda",
        worker_init_fn=worker_init() if num_workers > 0 else None,  # end with this process
    )


@torch.no_grad()
def evaluate(
    model: nn.Module,
    dataset: Dataset,
    iterations: int = DEFAULT_ITERATIONS,
    device: str | torch.device = "cpu",
    batch_size: int = 1,
    save_predictions: str | os.PathLike | None = None,
    num_workers: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> EvalResult:
    """Confusion matrices of ``model`` on ``dataset`` (SPEC section 5).

    What the trainer's validation relies on: ``model`` is the bare network (not a DDP wrapper:
    :func:`feedbackseg.models.infer` dispatches on its type), and it is left in eval mode on
    ``device`` (the caller puts it back in train mode); the forward passes run under the
    caller's autocast and forward hooks; under a process group every rank must call this
    function (the matrices and the sample count are summed with collectives), each on its own
    ``indices[rank::world]`` share; the global RNG is only touched by the DataLoader's base seed.

    Args:
        model: a network of :func:`feedbackseg.models.build_model` (any mode: ERFNet,
            RestoreSegmenter, FeedbackSegmenter) or any module mapping (B, 3, H, W) images to
            logits (B, C, H, W), C = 19 or 20; it is moved to ``device`` and put in eval mode.
        dataset: items with ``distorted`` (3, H, W) float in [0, 1], ``label`` (H, W) int64
            (255 = ignore; 19 too when ``dataset.num_classes == 20``), ``name`` and ``index``,
            e.g. :class:`feedbackseg.data.dataset.ShardDataset`; optional attributes ``image_size``,
            ``num_classes``, ``split`` and ``root`` (named in errors).
        iterations: feedback iterations T (feedback models; the others run once).
        device: "cpu", "cuda", "auto" or a torch.device.
        batch_size: images per forward pass.
        save_predictions: folder for the colourised predictions (Cityscapes palette), one PNG
            ``{name}.png`` per sample at the evaluation resolution; None: none written.
        num_workers: DataLoader worker processes (spawn start method).
        progress: called as ``progress(done, total)`` with this rank's images evaluated so far
            and its share's size, once before the first batch and after every batch.

    Returns:
        The :class:`EvalResult`; under ``torch.distributed`` the matrices and the sample count
        are summed over the ranks (every rank gets the totals).

    Raises:
        EvalError: a label outside the evaluated classes, or an empty dataset.
    """
    if batch_size < 1:
        raise EvalError(f"batch_size must be >= 1, got {batch_size}", key="batch_size")
    if num_workers < 0:
        raise EvalError(f"num_workers must be >= 0, got {num_workers}", key="num_workers")
    device = resolve_device(device)
    model = model.to(device).eval()
    loader = _loader(dataset, batch_size, num_workers, device)
    ignore = label_layout(getattr(dataset, "num_classes", NUM_CLASSES)).eval_ignore
    steps = iterations_run(model, iterations)
    matrices = [ConfusionMatrix(NUM_CLASSES, ignore) for _ in range(steps)]
    out_dir = None if save_predictions is None else Path(save_predictions)
    used: set[str] = set()
    resolution = getattr(dataset, "image_size", None)
    samples = 0
    share = len(loader.sampler) if loader.sampler is not None else len(dataset)
    if progress is not None:
        progress(0, share)
    for batch in start_iterator(loader):  # Ctrl-C while the workers start: after they run
        x = batch["distorted"].to(device, non_blocking=True)
        label = batch["label"].to(device, non_blocking=True)
        all_logits = infer(model, x, iterations).logits
        for matrix, logits in zip(matrices, all_logits, strict=True):
            try:
                matrix.update(predicted_ids(logits), label)
            except ValueError as error:
                where = getattr(dataset, "root", "dataset")
                raise EvalError(f"{where}: {error}") from None
        if resolution is None:
            resolution = tuple(label.shape[-2:])
        samples += int(x.shape[0])
        if progress is not None:
            progress(samples, share)
        if out_dir is not None:
            pred = predicted_ids(all_logits[-1]).cpu().numpy()
            for i, ids in enumerate(pred):
                stem = _prediction_name(batch["name"][i], int(batch["index"][i]), used)
                write_png(out_dir / f"{stem}.png", colorize_train_ids(ids))
    for matrix in matrices:
        matrix.all_reduce()
    samples = all_reduce_count(samples)
    if samples == 0:
        raise EvalError(f"{getattr(dataset, 'root', 'dataset')}: no samples to evaluate")
    return EvalResult(
        confusion=matrices[-1],
        iteration_confusions=matrices,
        resolution=(int(resolution[0]), int(resolution[1])),
        samples=samples,
        split=getattr(dataset, "split", None),
    )


def evaluate_checkpoint(
    checkpoint_path: str | os.PathLike,
    shards: str | os.PathLike,
    split: str = "val",
    height: int | None = None,
    iterations: int | None = None,
    device: str | torch.device = "auto",
    batch_size: int = 1,
    save_predictions: str | os.PathLike | None = None,
    num_workers: int = 0,
    input: str = "distorted",
    progress: Callable[[int, int], None] | None = None,
) -> CheckpointEvaluation:
    """Load a trainer checkpoint and evaluate it on a shard split (``fbseg eval``).

    Under ``torchrun`` every rank calls it (after joining the process group) with its device;
    each evaluates its share and every rank gets the totals.

    Args:
        checkpoint_path: a checkpoint written by the trainer (``RUN/best.pt``).
        shards: a turbsim shard folder.
        split: the split to evaluate.
        height: evaluation height [px] (the width keeps the aspect); None: the checkpoint's
            training height, or the stored size if it names none.
        iterations: feedback iterations T; None: the checkpoint's (3 if it does not say).
        device, batch_size, save_predictions, num_workers, progress: as for :func:`evaluate`.
        input: the images fed to the network: "distorted" (default) or "clean" (the split's
            clean images, e.g. for a model trained without turbulence).

    Returns:
        The :class:`CheckpointEvaluation` (its ``result.checkpoint`` is ``checkpoint_path``).

    Raises:
        CheckpointError: missing, unreadable or foreign checkpoint.
        DeviceError: the device does not exist on this machine.
        DataError, ShardError: the shards or the split cannot be read.
        EvalError: a height or a split size the network cannot take (``key == "height"`` for
            the height argument; also a size whose batches cannot fit in memory, refused
            before any work), out of memory while evaluating, or what :func:`evaluate`
            raises.
    """
    model, checkpoint = load_model(checkpoint_path, device)
    mode = checkpoint["mode"]
    multiple = size_multiple(model)
    if height is not None and height % multiple:
        raise EvalError(
            f"{height} is not a multiple of {multiple} (the {mode} network downsamples by "
            f"{multiple})",
            key="height",
        )
    if input not in INPUTS:
        raise EvalError(f"input must be one of {', '.join(INPUTS)}, got {input!r}", key="input")
    dataset = ShardDataset(
        shards, split, height=height or checkpoint_height(checkpoint), input=input
    )
    size = dataset.image_size
    if size[0] % multiple or size[1] % multiple:
        raise EvalError(
            f"{shards}: split {split!r} is {size[0]}x{size[1]} px, not a multiple of "
            f"{multiple} for the {mode} network; pass --height"
        )
    steps = iterations or checkpoint_iterations(checkpoint)
    device = resolve_device(device)
    check_inference_memory(model, size, batch_size, device, height or checkpoint_height(checkpoint))
    try:
        result = evaluate(
            model, dataset, steps, device, batch_size, save_predictions, num_workers, progress
        )
    except Exception as error:
        if not is_out_of_memory(error):
            raise
        detail = out_of_memory_detail(error)
        raise EvalError(
            f"out of memory evaluating {checkpoint_path} at {size[0]}x{size[1]} px, batch "
            f"{batch_size}{f' ({detail})' if detail else ''}; try a smaller --height or "
            "--batch-size"
        ) from None
    result.checkpoint = str(checkpoint_path)
    return CheckpointEvaluation(
        result=result,
        checkpoint=str(checkpoint_path),
        shards=str(shards),
        split=split,
        mode=mode,
        num_classes=checkpoint["num_classes"],
        step=checkpoint.get("step"),
        iterations=iterations_run(model, steps),
        input=input,
    )
