"""Comparison of evaluation results (``fbseg compare``): read the results of several runs and lay
them side by side in one Markdown table.

A result is a file written by ``fbseg eval --json`` (:meth:`CheckpointEvaluation.to_dict
<feedbackseg.evaluation.evaluate.CheckpointEvaluation.to_dict>`), or a run folder: its
``eval.json``, or else the last validation record of its ``metrics.jsonl`` (read by
:func:`feedbackseg.runs.rundir.read_metrics`, which skips a half-written last line). IoU values are
fractions in the files and percent with two decimals in the table; "n/a" marks a class absent
from both the ground truth and the prediction.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from feedbackseg.data.cityscapes_labels import CITYSCAPES_CLASSES
from feedbackseg.evaluation.inference import EvalError
from feedbackseg.paths import not_found
from feedbackseg.runs.rundir import METRICS_NAME

__all__ = [
    "EVAL_JSON_NAME",
    "comparison_markdown",
    "format_percent",
    "load_result",
    "result_label",
]

#: File name of an evaluation result inside a run folder (read by ``fbseg compare``).
EVAL_JSON_NAME = "eval.json"


def format_percent(value: float | None) -> str:
    """A fraction as percent with two decimals (``0.1234`` -> ``"12.34"``); None or NaN ->
    ``"n/a"``."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{100.0 * value:.2f}"


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
    from feedbackseg.runs.rundir import MetricsError, read_metrics

    try:
        records = read_metrics(path)
    except MetricsError as error:
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
        raise EvalError(not_found(path, "file or run folder"))
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


def _resolution(result: Mapping[str, Any]) -> str:
    size = result.get("resolution")
    return f"{size[0]}x{size[1]}" if isinstance(size, Sequence) and len(size) == 2 else "n/a"


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
    pct = format_percent
    rows: list[list[str]] = [["class", *labels]]
    for name in classes:
        rows.append([name, *(pct(results[k].get("per_class", {}).get(name)) for k in labels)])
    rows.append(["**mIoU**", *(pct(results[k].get("miou")) for k in labels)])
    rows.append(["pixel accuracy", *(pct(results[k].get("pixel_accuracy")) for k in labels)])
    rows.append(["resolution (HxW)", *(_resolution(results[k]) for k in labels)])
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
