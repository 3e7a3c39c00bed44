"""Pictures of runs: training curves from ``RUN/metrics.jsonl`` and per-class IoU bar charts.

matplotlib is an optional dependency (``pip install 'turbsim-feedbackseg[viz]'``): it is imported
inside the functions that draw, through :func:`require_matplotlib`, and only its object-oriented
API is used (a ``Figure`` on an Agg canvas: no pyplot, no global state, no display needed). PNGs
are written to a temporary file in the same folder and renamed into place.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

from feedbackseg.errors import PlotError
from feedbackseg.paths import named_os_errors
from feedbackseg.runs import rundir
from turbsim._files import atomic_path

__all__ = [
    "MATPLOTLIB_MISSING",
    "PlotError",
    "plot_per_class_iou",
    "plot_training_curves",
    "read_metrics",
    "require_matplotlib",
]

#: Message of the ImportError raised when matplotlib is missing.
MATPLOTLIB_MISSING = "drawing PNG charts needs matplotlib: pip install 'turbsim-feedbackseg[viz]'"
METRICS_NAME = rundir.METRICS_NAME
#: Loss keys of the training records, drawn when present.
LOSS_KEYS = ("loss_seg", "loss_l1")


def require_matplotlib() -> ModuleType:
    """Import matplotlib, or raise ImportError saying how to install it."""
    try:
        import matplotlib
    except ImportError as error:
        raise ImportError(MATPLOTLIB_MISSING) from error
    return matplotlib


def read_metrics(run_dir: str | os.PathLike) -> list[dict[str, Any]]:
    """The records of ``RUN/metrics.jsonl``: :func:`feedbackseg.runs.rundir.read_metrics`.

    A half-written last line (a killed run) is skipped.

    Args:
        run_dir: a run folder, or the metrics file itself.

    Raises:
        PlotError: no such file, or a line other than the last that is not a JSON object.
    """
    try:
        return rundir.read_metrics(run_dir)
    except rundir.MetricsError as error:
        raise PlotError(str(error)) from None


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _series(records: list[dict[str, Any]], key: str) -> tuple[list[float], list[float]]:
    """(steps, values) of the records holding a finite ``key`` and a ``step``."""
    steps, values = [], []
    for record in records:
        step, value = _number(record.get("step")), _number(record.get(key))
        if step is not None and value is not None:
            steps.append(step)
            values.append(value)
    return steps, values


def _save_figure(figure: Any, out_png: str | os.PathLike) -> Path:
    path = Path(out_png)
    path.parent.mkdir(parents=True, exist_ok=True)
    with named_os_errors(path), atomic_path(path) as temporary:  # a full disk names no file
        figure.savefig(temporary, format="png")
    return path


def _figure(width_in: float, height_in: float) -> Any:
    require_matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width_in, height_in), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def plot_training_curves(run_dir: str | os.PathLike, out_png: str | os.PathLike) -> Path:
    """Training curves of a run: losses vs step (left) and validation mIoU vs step (right).

    Records of ``RUN/metrics.jsonl`` with ``step`` and any of ``loss_seg``, ``loss_l1`` (a loss
    that is 0 throughout, e.g. L1 of the erfnet mode, is left out) and ``val_miou`` (drawn in
    %) are used; other keys are ignored.

    Args:
        run_dir: the run folder (or its metrics file).
        out_png: the PNG to write (900 x 360 px).

    Returns:
        The path written.

    Raises:
        ImportError: matplotlib is missing (the message says what to install).
        PlotError: no metrics file, or nothing to draw in it.
    """
    require_matplotlib()
    records = read_metrics(run_dir)
    losses = {key: _series(records, key) for key in LOSS_KEYS}
    losses = {k: s for k, s in losses.items() if s[1] and any(v != 0.0 for v in s[1])}
    val_steps, val_miou = _series(records, "val_miou")
    if not losses and not val_miou:
        raise PlotError(f"{run_dir}: no loss_seg, loss_l1 or val_miou records to draw")
    figure = _figure(9.0, 3.6)
    left, right = figure.subplots(1, 2)
    for key, (steps, values) in losses.items():
        left.plot(steps, values, label=key, linewidth=1.2)
    left.set_xlabel("step")
    left.set_ylabel("loss")
    left.set_title("training losses")
    if losses:
        left.legend(loc="best", fontsize="small", framealpha=0.7)
        if all(v > 0 for _, values in losses.values() for v in values):
            left.set_yscale("log")
    else:
        left.text(0.5, 0.5, "no loss records", ha="center", va="center")
    right.set_xlabel("step")
    right.set_ylabel("mIoU [%]")
    right.set_title("validation mIoU")
    if val_miou:
        right.plot(val_steps, [100.0 * v for v in val_miou], marker="o", linewidth=1.2)
        best = max(range(len(val_miou)), key=val_miou.__getitem__)
        right.annotate(
            f"best {100.0 * val_miou[best]:.2f}",
            (val_steps[best], 100.0 * val_miou[best]),
            textcoords="offset points",
            xytext=(0, 6),
            ha="center",
        )
        right.margins(y=0.15)
    else:
        right.text(0.5, 0.5, "no validation records", ha="center", va="center")
    figure.suptitle(Path(run_dir).name)
    return _save_figure(figure, out_png)


def plot_per_class_iou(
    results: Mapping[str, Mapping[str, float | None]], out_png: str | os.PathLike
) -> Path:
    """Grouped bar chart of per-class IoU [%], one bar colour per result.

    Args:
        results: label -> per-class table {class name: IoU fraction or None}; classes in the
            order they first appear; a None (class absent) draws no bar.
        out_png: the PNG to write.

    Returns:
        The path written.

    Raises:
        ImportError: matplotlib is missing (the message says what to install).
        PlotError: no results or no classes.
    """
    require_matplotlib()
    return _save_figure(per_class_figure(results), out_png)


def per_class_figure(results: Mapping[str, Mapping[str, float | None]]) -> Any:
    """The figure of :func:`plot_per_class_iou` (not saved): a class a result has no IoU for
    (absent from the labels and never predicted) is marked "n/a" above its slot, so that it
    does not read as 0 %; the legend sits outside the axes, clear of the bars."""
    if not results:
        raise PlotError("no results to draw")
    classes: list[str] = []
    for table in results.values():
        classes.extend(name for name in table if name not in classes)
    if not classes:
        raise PlotError("the results hold no per-class IoU")
    n = len(results)
    bar = 0.8 / n
    figure = _figure(max(6.0, 0.5 * len(classes) + 1.5), 4.2)
    axes = figure.subplots()
    for k, (label, table) in enumerate(results.items()):
        xs, heights = [], []
        for i, name in enumerate(classes):
            value = _number(table.get(name))
            x = i - 0.4 + bar * (k + 0.5)
            if value is not None:
                xs.append(x)
                heights.append(100.0 * value)
            else:
                axes.text(x, 1.0, "n/a", rotation=90, ha="center", va="bottom", fontsize=6)
        axes.bar(xs, heights, width=bar, label=label)
    axes.set_xticks(range(len(classes)), classes, rotation=60, ha="right")
    axes.set_xlim(-0.6, len(classes) - 0.4)
    axes.set_ylim(0.0, 100.0)
    axes.set_ylabel("IoU [%]")
    axes.set_title("per-class IoU (n/a: class neither in the labels nor predicted)")
    axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small")
    return figure
