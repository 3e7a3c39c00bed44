"""Semantic segmentation metrics from an integer confusion matrix (SPEC section 5).

:class:`ConfusionMatrix` accumulates a C x C int64 matrix (rows = ground truth, columns =
prediction) with ``bincount`` over the pixels whose label is not ``ignore_index``. From it:
per-class IoU = TP / (TP + FP + FN), mIoU = mean over the classes present in the ground truth or
the prediction (the official Cityscapes definition; absent classes are NaN and excluded), and
pixel accuracy = trace / total. Under DDP each rank accumulates its own shard of the validation
set and :meth:`ConfusionMatrix.all_reduce` sums the matrices (counts add exactly, so the result
is independent of how samples were split, as long as no sample is evaluated twice).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.distributed as dist

from feedbackseg.data.cityscapes_labels import CITYSCAPES_CLASSES, CITYSCAPES_PALETTE
from turbsim.shards.schema import IGNORE_LABEL, NUM_CLASSES

__all__ = ["CITYSCAPES_CLASSES", "CITYSCAPES_PALETTE", "ConfusionMatrix"]


def _as_int_tensor(x: torch.Tensor | np.ndarray, what: str) -> torch.Tensor:
    if isinstance(x, np.ndarray):
        if x.dtype.kind not in "iu":
            raise TypeError(f"{what} must hold integer class ids, got numpy dtype {x.dtype}")
        if x.dtype == np.uint16 or x.dtype == np.uint32 or x.dtype == np.uint64:
            x = x.astype(np.int64)  # torch has no (full) unsigned support beyond uint8
        return torch.from_numpy(np.ascontiguousarray(x))
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{what} must be a torch.Tensor or numpy array, got {type(x).__name__}")
    if x.is_floating_point() or x.is_complex() or x.dtype == torch.bool:
        raise TypeError(f"{what} must hold integer class ids, got dtype {x.dtype}")
    return x


class ConfusionMatrix:
    """Pixel confusion matrix of a C-class segmentation, accumulated batch by batch.

    Args:
        num_classes: Number of evaluated classes C (19 for Cityscapes trainIds).
        ignore_index: Ground-truth label whose pixels are not counted.

    Attributes:
        matrix: (C, C) int64 numpy array; ``matrix[g, p]`` = pixels with ground truth ``g``
            predicted as ``p``.
    """

    def __init__(self, num_classes: int = NUM_CLASSES, ignore_index: int = IGNORE_LABEL) -> None:
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes = int(num_classes)
        self.ignore_index = int(ignore_index)
        self.matrix = np.zeros((num_classes, num_classes), dtype=np.int64)

    def __repr__(self) -> str:
        return (
            f"ConfusionMatrix(num_classes={self.num_classes}, ignore_index={self.ignore_index}, "
            f"pixels={self.total})"
        )

    @property
    def total(self) -> int:
        """Number of counted (non-ignored) pixels."""
        return int(self.matrix.sum())

    def reset(self) -> None:
        """Zero the counts."""
        self.matrix[:] = 0

    def update(self, pred: torch.Tensor | np.ndarray, target: torch.Tensor | np.ndarray) -> None:
        """Add a batch: predicted and ground-truth class ids of the same shape.

        Works on any device (the bincount runs where the tensors are; only the C x C result is
        copied to the host). Pixels whose target is ``ignore_index`` are skipped, whatever their
        prediction.

        Args:
            pred: Predicted class ids (e.g. ``logits.argmax(1)``), any shape, integer torch
                tensor or numpy array, values in [0, C).
            target: Ground-truth ids, same shape, values in [0, C) or ``ignore_index``.

        Raises:
            ValueError: shapes differ, a prediction outside [0, C), or a target outside [0, C)
                that is not ``ignore_index``.
            TypeError: non-integer input.
        """
        pred_t = _as_int_tensor(pred, "pred")
        target_t = _as_int_tensor(target, "target")
        if pred_t.shape != target_t.shape:
            raise ValueError(
                f"pred shape {tuple(pred_t.shape)} != target shape {tuple(target_t.shape)}"
            )
        pred_t = pred_t.reshape(-1).to(device=target_t.device, dtype=torch.int64)
        target_t = target_t.reshape(-1).to(torch.int64)
        c = self.num_classes
        valid = target_t != self.ignore_index
        bad_pred = (pred_t < 0) | (pred_t >= c)
        bad_target = valid & ((target_t < 0) | (target_t >= c))
        if bool(bad_pred.any()):
            values = torch.unique(pred_t[bad_pred])[:8].tolist()
            raise ValueError(f"predictions outside [0, {c}): {values}")
        if bool(bad_target.any()):
            values = torch.unique(target_t[bad_target])[:8].tolist()
            raise ValueError(
                f"targets outside [0, {c}) that are not ignore_index={self.ignore_index}: {values}"
            )
        index = target_t[valid] * c + pred_t[valid]
        counts = torch.bincount(index, minlength=c * c).reshape(c, c)
        self.matrix += counts.cpu().numpy()

    def _check_compatible(self, other: ConfusionMatrix) -> None:
        if not isinstance(other, ConfusionMatrix):
            raise TypeError(f"can only merge a ConfusionMatrix, got {type(other).__name__}")
        if (other.num_classes, other.ignore_index) != (self.num_classes, self.ignore_index):
            raise ValueError(
                f"cannot merge ConfusionMatrix(num_classes={other.num_classes}, ignore_index="
                f"{other.ignore_index}) into (num_classes={self.num_classes}, ignore_index="
                f"{self.ignore_index})"
            )

    def merge(self, other: ConfusionMatrix) -> ConfusionMatrix:
        """Add another matrix's counts to this one in place; returns ``self``."""
        self._check_compatible(other)
        self.matrix += other.matrix
        return self

    def __add__(self, other: ConfusionMatrix) -> ConfusionMatrix:
        self._check_compatible(other)
        out = ConfusionMatrix(self.num_classes, self.ignore_index)
        out.matrix = self.matrix + other.matrix
        return out

    def __iadd__(self, other: ConfusionMatrix) -> ConfusionMatrix:
        return self.merge(other)

    def all_reduce(self, group: dist.ProcessGroup | None = None) -> ConfusionMatrix:
        """Sum the matrices of all ranks in place (no-op unless torch.distributed is initialised).

        Every rank must call it (a collective). With the NCCL backend the counts travel on the
        current CUDA device. Returns ``self``.
        """
        if not (dist.is_available() and dist.is_initialized()):
            return self
        device = torch.device("cpu")
        if dist.get_backend(group) == "nccl":
            device = torch.device("cuda", torch.cuda.current_device())
        counts = torch.from_numpy(self.matrix).to(device)
        dist.all_reduce(counts, op=dist.ReduceOp.SUM, group=group)
        self.matrix = counts.cpu().numpy().astype(np.int64, copy=False)
        return self

    def iou(self) -> np.ndarray:
        """(C,) float64 per-class IoU = TP / (TP + FP + FN); NaN for a class absent from both
        the ground truth and the prediction."""
        tp = np.diag(self.matrix).astype(np.float64)
        gt = self.matrix.sum(axis=1)
        predicted = self.matrix.sum(axis=0)
        union = (gt + predicted).astype(np.float64) - tp
        out = np.full(self.num_classes, np.nan)
        np.divide(tp, union, out=out, where=union > 0)
        return out

    def miou(self) -> float:
        """Mean IoU over the classes present in the ground truth or the prediction (NaN if
        nothing was counted)."""
        iou = self.iou()
        present = ~np.isnan(iou)
        return float(iou[present].mean()) if present.any() else math.nan

    def pixel_accuracy(self) -> float:
        """Fraction of counted pixels predicted correctly (NaN if nothing was counted)."""
        total = self.total
        return float(np.trace(self.matrix) / total) if total else math.nan

    def _names(self, class_names: Sequence[str] | None) -> list[str]:
        if class_names is None:
            if self.num_classes == len(CITYSCAPES_CLASSES):
                return list(CITYSCAPES_CLASSES)
            return [str(i) for i in range(self.num_classes)]
        if len(class_names) != self.num_classes:
            raise ValueError(f"got {len(class_names)} class names for {self.num_classes} classes")
        return list(class_names)

    def as_dict(self, class_names: Sequence[str] | None = None) -> dict:
        """JSON-friendly summary: NaN becomes None.

        Args:
            class_names: C names; default :data:`CITYSCAPES_CLASSES` for 19 classes, else the
                class ids as strings.

        Returns:
            ``{"miou", "pixel_accuracy", "per_class": {name: iou or None}, "pixels",
            "num_classes"}``; IoU values are fractions in [0, 1].
        """

        def clean(v: float) -> float | None:
            return None if math.isnan(v) else float(v)

        names = self._names(class_names)
        return {
            "miou": clean(self.miou()),
            "pixel_accuracy": clean(self.pixel_accuracy()),
            "per_class": {n: clean(v) for n, v in zip(names, self.iou(), strict=True)},
            "pixels": self.total,
            "num_classes": self.num_classes,
        }

    def to_json(self, class_names: Sequence[str] | None = None) -> str:
        """:meth:`as_dict` as an indented JSON string."""
        return json.dumps(self.as_dict(class_names), indent=2)

    def to_markdown_table(self, class_names: Sequence[str] | None = None) -> str:
        """Per-class IoU table in Markdown, IoU in percent with 2 decimals, "n/a" for absent
        classes, followed by mIoU and pixel accuracy rows."""

        def pct(v: float) -> str:
            return "n/a" if math.isnan(v) else f"{100.0 * v:.2f}"

        names = self._names(class_names)
        width = max(len("pixel accuracy"), *(len(n) for n in names))
        lines = [f"| {'class':<{width}} | IoU [%] |", f"|{'-' * (width + 2)}|--------:|"]
        for name, value in zip(names, self.iou(), strict=True):
            lines.append(f"| {name:<{width}} | {pct(value):>7} |")
        lines.append(f"| {'**mIoU**':<{width}} | {pct(self.miou()):>7} |")
        lines.append(f"| {'pixel accuracy':<{width}} | {pct(self.pixel_accuracy()):>7} |")
        return "\n".join(lines) + "\n"
