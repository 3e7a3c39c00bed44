"""Evaluation of a trained model on a shard split (SPEC-feedbackseg section 5), and the helpers
that ``fbseg eval``, ``fbseg predict`` and ``fbseg compare`` share.

:func:`evaluate` runs a model over a dataset (the same inference loop as training, SPEC 2.4: the
last feedback iteration is the prediction) and accumulates a 19 x 19 confusion matrix per
feedback iteration over the pixels whose label is not ignored. The reported IoU is the official
Cityscapes one (NOTES-ecosystem.md): per class TP / (TP + FP + FN), classes absent from both the
ground truth and the prediction excluded from the mean (:class:`ConfusionMatrix`). Every report
states the evaluation resolution.

Under ``torch.distributed`` (if a process group is initialised) each rank evaluates
``indices[rank::world]``, with no padded duplicates, and the confusion matrices are summed, so
every pixel counts exactly once whatever the world size.

The 20-class layout of the original (19 classes + a void class 19 carrying weight 0) is evaluated
on the 19 real classes: the void logit is never predicted, and a void label (the dataset maps 255
to 19 in that layout) is ignored, as in the trainer's validation.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Dataset

from feedbackseg.checkpoints import CheckpointError, load_checkpoint, model_from_checkpoint
from feedbackseg.cityscapes_labels import CITYSCAPES_CLASSES, colorize_train_ids
from feedbackseg.distributed import ShardedEvalSampler
from feedbackseg.metrics import ConfusionMatrix
from feedbackseg.models import ERFNet, FeedbackSegmenter, RestoreSegmenter

__all__ = [
    "DEFAULT_ITERATIONS",
    "EVAL_CLASSES",
    "EvalError",
    "EvalResult",
    "checkpoint_height",
    "checkpoint_iterations",
    "comparison_markdown",
    "evaluate",
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
EVAL_CLASSES = 19
#: Feedback iterations T when a checkpoint does not say (the original's T).
DEFAULT_ITERATIONS = 3
IGNORE_INDEX = 255
#: File name of an evaluation result inside a run folder (read by ``fbseg compare``).
EVAL_JSON_NAME = "eval.json"
METRICS_NAME = "metrics.jsonl"


class EvalError(ValueError):
    """Evaluation or prediction cannot run as asked; one-line message naming the file or flag."""


# ------------------------------------------------------------------------------ the model
def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """The torch device for ``"auto"`` (CUDA when available), ``"cpu"`` or ``"cuda[:k]"``.

    Raises:
        EvalError: CUDA asked for but not available.
    """
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise EvalError(f"--device {device}: CUDA is not available on this machine")
    try:
        return torch.device(device)
    except RuntimeError:
        raise EvalError(f"--device: unknown device {device!r}") from None


def load_model(
    path: str | os.PathLike, device: str | torch.device = "cpu"
) -> tuple[nn.Module, dict]:
    """A trainer checkpoint's network, in eval mode on ``device``, and the checkpoint dict.

    Raises:
        CheckpointError: missing, unreadable or foreign file (one line naming it).
    """
    try:
        checkpoint = load_checkpoint(path, map_location="cpu")
    except CheckpointError:
        raise
    except Exception as error:  # noqa: BLE001 - e.g. KeyError from torch's unpickler on junk
        raise CheckpointError(
            f"{path}: not a readable torch checkpoint ({type(error).__name__})"
        ) from None
    model = model_from_checkpoint(checkpoint, path)
    return model.to(resolve_device(device)).eval(), checkpoint


def _config(checkpoint: Mapping[str, Any]) -> Mapping[str, Any]:
    config = checkpoint.get("config")
    return config if isinstance(config, Mapping) else {}


def checkpoint_height(checkpoint: Mapping[str, Any]) -> int | None:
    """The training height [px] stored in a checkpoint's config (None: the stored size)."""
    height = _config(checkpoint).get("height")
    return None if height is None else int(height)


def checkpoint_iterations(checkpoint: Mapping[str, Any]) -> int:
    """Feedback iterations T of a checkpoint (config, then top level, then 3)."""
    value = _config(checkpoint).get("iterations", checkpoint.get("iterations"))
    return DEFAULT_ITERATIONS if value is None else int(value)


def size_multiple(model: nn.Module) -> int:
    """Image sides must be multiples of this [px]: 8 for ERFNet alone, 16 with the restorer."""
    return 8 if isinstance(model, ERFNet) else 16


def run_model(
    model: nn.Module, distorted: torch.Tensor, iterations: int = DEFAULT_ITERATIONS
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Per-iteration logits and restored images of any of the three model kinds.

    Args:
        model: :class:`FeedbackSegmenter` (T iterations), :class:`RestoreSegmenter` (one) or a
            plain segmenter such as :class:`ERFNet` (one, no restoration).
        distorted: network input (B, 3, H, W) in [0, 1].
        iterations: feedback iterations T (feedback models only).

    Returns:
        (logits, restored): logits a list of (B, C, H, W), one per iteration, the last being the
        prediction; restored a list of (B, 3, H, W) in the same order, empty without a restorer.
    """
    if isinstance(model, FeedbackSegmenter):
        out = model(distorted, iterations=iterations)
        return out.logits, out.restored
    if isinstance(model, RestoreSegmenter):
        out = model(distorted)
        return out.logits, out.restored
    return [model(distorted)], []


def predicted_ids(logits: torch.Tensor) -> torch.Tensor:
    """Class ids (B, H, W) int64 among the 19 evaluated classes (a void logit is never taken)."""
    return logits[:, :EVAL_CLASSES].argmax(1)


# ------------------------------------------------------------------------------ file output
def _atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_png(path: str | os.PathLike, rgb: np.ndarray) -> Path:
    """Write an RGB image as PNG atomically (temporary file in the same folder, then rename).

    Args:
        path: output file; its folder is created if needed.
        rgb: (H, W, 3) uint8 RGB (converted to OpenCV's BGR here, at the boundary).
    """
    path = Path(path)
    rgb = np.asarray(rgb)
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected (H, W, 3) uint8 RGB, got {rgb.shape} {rgb.dtype}")
    ok, encoded = cv2.imencode(".png", np.ascontiguousarray(rgb[:, :, ::-1]))
    if not ok:
        raise OSError(f"{path}: PNG encoding failed")
    _atomic_write_bytes(path, encoded.tobytes())
    return path


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write UTF-8 text atomically (temporary file in the same folder, then rename)."""
    path = Path(path)
    _atomic_write_bytes(path, text.encode("utf-8"))
    return path


def write_json(path: str | os.PathLike, data: Any) -> Path:
    """Write ``data`` as indented JSON atomically; NaN is written as null."""
    path = Path(path)
    text = json.dumps(_nan_to_none(data), indent=2) + "\n"
    _atomic_write_bytes(path, text.encode("utf-8"))
    return path


def _nan_to_none(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _nan_to_none(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_nan_to_none(v) for v in value]
    return value


# ------------------------------------------------------------------------------ evaluation
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
                "miou_per_iteration": _nan_to_none(self.miou_per_iteration),
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
        lines = [
            self.confusion.to_markdown_table().rstrip("\n"),
            "",
            f"mIoU {_pct(self.miou)} %, pixel accuracy {_pct(self.pixel_accuracy)} % on "
            f"{self.samples} images{where} at {h}x{w} (H x W) px",
        ]
        if len(self.iteration_confusions) > 1:
            steps = ", ".join(
                f"t={t} {_pct(m)} %" for t, m in enumerate(self.miou_per_iteration, start=1)
            )
            lines.append(f"mIoU per feedback iteration: {steps}")
        return "\n".join(lines) + "\n"


def _pct(value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{100.0 * value:.2f}"


def _world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _all_reduce_count(count: int) -> int:
    """Sum an integer over the ranks (identity without a process group)."""
    if not (dist.is_available() and dist.is_initialized()):
        return count
    device = torch.device("cpu")
    if dist.get_backend() == "nccl":
        device = torch.device("cuda", torch.cuda.current_device())
    value = torch.tensor([count], dtype=torch.int64, device=device)
    dist.all_reduce(value, op=dist.ReduceOp.SUM)
    return int(value.item())


def _prediction_name(name: str, index: int, used: set[str]) -> str:
    """``name``, or ``name_{index}`` if this process already wrote ``name`` (repeated stems,
    e.g. several distorted variants of one source image)."""
    stem = Path(str(name)).name or f"sample_{index:06d}"
    if stem in used:
        stem = f"{stem}_{index:06d}"
    used.add(stem)
    return stem


@torch.no_grad()
def evaluate(
    model: nn.Module,
    dataset: Dataset,
    iterations: int = DEFAULT_ITERATIONS,
    device: str | torch.device = "cpu",
    batch_size: int = 1,
    save_predictions: str | os.PathLike | None = None,
    num_workers: int = 0,
) -> EvalResult:
    """Confusion matrices of ``model`` on ``dataset`` (SPEC section 5).

    Args:
        model: a network of :func:`feedbackseg.models.build_model` (any mode); it is moved to
            ``device`` and put in eval mode.
        dataset: items with ``distorted`` (3, H, W) float in [0, 1], ``label`` (H, W) int64
            (255 = ignore; 19 too when ``dataset.num_classes == 20``), ``name`` and ``index``,
            e.g. :class:`feedbackseg.data.ShardDataset`.
        iterations: feedback iterations T (feedback models; the others run once).
        device: "cpu", "cuda", "auto" or a torch.device.
        batch_size: images per forward pass.
        save_predictions: folder for the colourised predictions (Cityscapes palette), one PNG
            ``{name}.png`` per sample at the evaluation resolution; None: none written.
        num_workers: DataLoader worker processes (spawn start method).

    Returns:
        The :class:`EvalResult`; under ``torch.distributed`` the matrices and the sample count
        are summed over the ranks (every rank gets the totals).

    Raises:
        EvalError: a label outside the evaluated classes, or an empty dataset.
    """
    if batch_size < 1:
        raise EvalError(f"--batch-size: must be >= 1, got {batch_size}")
    if num_workers < 0:
        raise EvalError(f"--workers: must be >= 0, got {num_workers}")
    device = resolve_device(device)
    model = model.to(device).eval()
    rank, world = _world()
    sampler = ShardedEvalSampler(len(dataset), world, rank) if world > 1 else None
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=False,
        sampler=sampler,
        num_workers=num_workers,
        multiprocessing_context="spawn" if num_workers > 0 else None,
        pin_memory=device.type == "cuda",
    )
    ignore = 19 if getattr(dataset, "num_classes", 19) == 20 else IGNORE_INDEX
    steps = iterations if isinstance(model, FeedbackSegmenter) else 1
    matrices = [ConfusionMatrix(EVAL_CLASSES, ignore) for _ in range(steps)]
    out_dir = None if save_predictions is None else Path(save_predictions)
    used: set[str] = set()
    resolution = getattr(dataset, "image_size", None)
    samples = 0
    for batch in loader:
        x = batch["distorted"].to(device, non_blocking=True)
        label = batch["label"].to(device, non_blocking=True)
        all_logits, _ = run_model(model, x, iterations)
        for matrix, logits in zip(matrices, all_logits, strict=True):
            try:
                matrix.update(predicted_ids(logits), label)
            except ValueError as error:
                where = getattr(dataset, "root", "dataset")
                raise EvalError(f"{where}: {error}") from None
        if resolution is None:
            resolution = tuple(label.shape[-2:])
        samples += int(x.shape[0])
        if out_dir is not None:
            pred = predicted_ids(all_logits[-1]).cpu().numpy()
            for i, ids in enumerate(pred):
                stem = _prediction_name(batch["name"][i], int(batch["index"][i]), used)
                write_png(out_dir / f"{stem}.png", colorize_train_ids(ids))
    for matrix in matrices:
        matrix.all_reduce()
    samples = _all_reduce_count(samples)
    if samples == 0:
        raise EvalError(f"{getattr(dataset, 'root', 'dataset')}: no samples to evaluate")
    return EvalResult(
        confusion=matrices[-1],
        iteration_confusions=matrices,
        resolution=(int(resolution[0]), int(resolution[1])),
        samples=samples,
        split=getattr(dataset, "split", None),
    )


# ------------------------------------------------------------------------------ comparison
def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as error:
        raise EvalError(f"{path}: cannot read ({error.__class__.__name__})") from None
    except json.JSONDecodeError as error:
        raise EvalError(f"{path}: not valid JSON (line {error.lineno}: {error.msg})") from None


def _check_result(data: Any, path: Path) -> dict[str, Any]:
    if not isinstance(data, dict) or not isinstance(data.get("per_class"), dict):
        raise EvalError(f"{path}: not an evaluation result (no 'per_class' table)")
    if "miou" not in data:
        raise EvalError(f"{path}: not an evaluation result (no 'miou')")
    return data


def _last_validation(path: Path) -> dict[str, Any]:
    from feedbackseg.plots import PlotError, read_metrics

    try:
        records = read_metrics(path)
    except PlotError as error:
        raise EvalError(str(error)) from None
    last = None
    for record in records:
        if "val_miou" in record and "per_class" in record:
            last = record
    if last is None:
        raise EvalError(f"{path}: no validation record (a run trained without validation?)")
    return {
        "miou": last["val_miou"],
        "pixel_accuracy": last.get("val_pixel_accuracy"),
        "per_class": last["per_class"],
        "miou_per_iteration": last.get("val_miou_per_iteration"),
        "resolution": last.get("val_resolution"),
        "split": last.get("split"),
        "step": last.get("step"),
    }


def load_result(path: str | os.PathLike) -> dict[str, Any]:
    """An evaluation result for ``fbseg compare``.

    Args:
        path: an eval JSON file (``fbseg eval --json``), or a run folder holding ``eval.json``
            or, failing that, ``metrics.jsonl`` (its last validation record is used).

    Returns:
        A dict with at least ``miou`` and ``per_class`` {class name: IoU or None} (fractions);
        ``pixel_accuracy`` and ``resolution`` when known.

    Raises:
        EvalError: a missing path or a file that holds no evaluation result (one line).
    """
    path = Path(path)
    if path.is_dir():
        if (path / EVAL_JSON_NAME).is_file():
            return _check_result(_read_json(path / EVAL_JSON_NAME), path / EVAL_JSON_NAME)
        if (path / METRICS_NAME).is_file():
            return _last_validation(path / METRICS_NAME)
        raise EvalError(f"{path}: run folder without {EVAL_JSON_NAME} or {METRICS_NAME}")
    if not path.exists():
        raise EvalError(f"{path}: no such file or run folder")
    return _check_result(_read_json(path), path)


def result_label(path: str | os.PathLike) -> str:
    """Column title of a result: the run folder's name, or the file's stem (its folder's name
    for a file called ``eval.json``)."""
    path = Path(path)
    if path.is_dir():
        return path.resolve().name
    if path.name == EVAL_JSON_NAME:
        return path.resolve().parent.name
    return path.stem


def comparison_markdown(results: Mapping[str, Mapping[str, Any]]) -> str:
    """Markdown table of several evaluation results: rows = classes, mIoU, pixel accuracy and
    resolution; columns = results. IoU in percent with 2 decimals, "n/a" where absent.

    Args:
        results: column title -> result dict (``per_class``, ``miou``, optionally
            ``pixel_accuracy`` and ``resolution``), as :func:`load_result` returns.
    """
    labels = list(results)
    classes: list[str] = []
    for result in results.values():
        for name in result.get("per_class", {}):
            if name not in classes:
                classes.append(name)
    if set(classes) <= set(CITYSCAPES_CLASSES):
        classes = [c for c in CITYSCAPES_CLASSES if c in classes]

    def resolution(result: Mapping[str, Any]) -> str:
        size = result.get("resolution")
        return f"{size[0]}x{size[1]}" if isinstance(size, Sequence) and len(size) == 2 else "n/a"

    rows: list[list[str]] = [["class", *labels]]
    for name in classes:
        rows.append([name, *(_pct(results[k].get("per_class", {}).get(name)) for k in labels)])
    rows.append(["**mIoU**", *(_pct(results[k].get("miou")) for k in labels)])
    rows.append(["pixel accuracy", *(_pct(results[k].get("pixel_accuracy")) for k in labels)])
    rows.append(["resolution (HxW)", *(resolution(results[k]) for k in labels)])
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for number, row in enumerate(rows):
        cells = [row[0].ljust(widths[0])] + [
            c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)
        ]
        lines.append("| " + " | ".join(cells) + " |")
        if number == 0:
            rule = ["-" * (widths[0] + 2)] + ["-" * (w + 1) + ":" for w in widths[1:]]
            lines.append("|" + "|".join(rule) + "|")
    lines.append("")
    lines.append("IoU, mIoU and pixel accuracy in %.")
    return "\n".join(lines) + "\n"
