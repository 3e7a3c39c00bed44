"""Pictures of tilt fields: an HSV colour wheel (numpy only) and a PNG writer (matplotlib).

Convention: a field has shape (2, H, W); ``field[0]`` is the row displacement (positive down)
and ``field[1]`` the column displacement (positive right), in pixels. The colour shows the
direction of the displacement vector F itself (where each output pixel samples the clean image
from; content moves by -F): hue = angle of (F_col, F_row) measured from +column towards +row
(red = right, yellow-green = down, cyan = left, blue-purple = up), value = |F| / max_px,
saturation = 1. A zero vector is black.

matplotlib is an optional dependency (``pip install 'turbsim-feedbackseg[viz]'``); it is imported
only inside :func:`save_field_png`.
"""

from __future__ import annotations

import os
from types import ModuleType
from typing import Any

import numpy as np

from turbsim._files import atomic_path

#: Message of the ImportError raised when matplotlib is missing.
MATPLOTLIB_MISSING = "writing PNG pictures needs matplotlib: pip install 'turbsim-feedbackseg[viz]'"


def _check_field(field: np.ndarray) -> np.ndarray:
    field = np.asarray(field)
    if field.ndim != 3 or field.shape[0] != 2:
        raise ValueError(f"field must have shape (2, H, W), got {field.shape}")
    if not np.issubdtype(field.dtype, np.floating):
        raise ValueError(f"field must be floating point, got {field.dtype}")
    return field


def _hsv_to_rgb(hue: np.ndarray, value: np.ndarray) -> np.ndarray:
    """HSV -> RGB with saturation 1; hue in [0, 1), value in [0, 1]; returns (..., 3) in [0, 1]."""
    h6 = (hue % 1.0) * 6.0
    sector = np.floor(h6).astype(np.int64) % 6
    frac = h6 - np.floor(h6)
    zero = np.zeros_like(value)
    falling = value * (1.0 - frac)
    rising = value * frac
    # (r, g, b) per sector of the wheel, saturation 1: p = 0, q = v (1 - f), t = v f.
    choices = [
        (value, rising, zero),
        (falling, value, zero),
        (zero, value, rising),
        (zero, falling, value),
        (rising, zero, value),
        (value, zero, falling),
    ]
    rgb = np.zeros(value.shape + (3,), dtype=np.float64)
    for index, (r, g, b) in enumerate(choices):
        mask = sector == index
        rgb[mask, 0] = r[mask]
        rgb[mask, 1] = g[mask]
        rgb[mask, 2] = b[mask]
    return rgb


def field_to_rgb(field: np.ndarray, max_px: float | None = None) -> np.ndarray:
    """Colour-wheel picture of a displacement field.

    Args:
        field: (2, H, W) float displacement [px]; [0] row, [1] column.
        max_px: magnitude [px] shown at full brightness; larger vectors saturate. None: the
            largest magnitude in the field (a zero field stays black).

    Returns:
        uint8 (H, W, 3) RGB image: hue = direction of F, value = |F| / max_px, saturation = 1.
    """
    field = _check_field(field)
    if max_px is not None and not (np.isfinite(max_px) and max_px > 0):
        raise ValueError(f"max_px must be finite and > 0, got {max_px!r}")
    rows = field[0].astype(np.float64)
    cols = field[1].astype(np.float64)
    magnitude = np.hypot(rows, cols)
    scale = float(magnitude.max(initial=0.0)) if max_px is None else float(max_px)
    if scale > 0.0:
        value = np.clip(magnitude / scale, 0.0, 1.0)
    else:
        value = np.zeros_like(magnitude)
    hue = np.arctan2(rows, cols) / (2.0 * np.pi)
    rgb = _hsv_to_rgb(hue, value)
    return np.round(rgb * 255.0).astype(np.uint8)


def colour_wheel(size: int) -> np.ndarray:
    """(size, size, 4) RGBA legend: the colour of each direction, transparent outside the disc."""
    centre = (size - 1) / 2.0
    rows, cols = np.mgrid[0:size, 0:size].astype(np.float64) - centre
    wheel = np.stack([rows, cols]) / max(centre, 1.0)
    rgb = field_to_rgb(wheel, max_px=1.0)
    alpha = np.where(np.hypot(rows, cols) <= centre, 255, 0).astype(np.uint8)
    return np.dstack([rgb, alpha])


def require_matplotlib() -> ModuleType:
    """Import matplotlib, or raise ImportError saying how to install it."""
    try:
        import matplotlib
    except ImportError as error:
        raise ImportError(MATPLOTLIB_MISSING) from error
    return matplotlib


def save_field_png(
    field: np.ndarray, path: str | os.PathLike[str], max_px: float | None = None
) -> None:
    """Write a PNG of the field: colour wheel (see :func:`field_to_rgb`) plus arrows and legend.

    The PNG has exactly H x W pixels. Arrows on a coarse grid point along F (scaled so the
    longest spans one grid cell); a colour-wheel legend sits in the top-left corner. The file is
    written to a temporary name in the same folder and then renamed, so it is never half-written.

    Args:
        field: (2, H, W) float displacement [px]; [0] row, [1] column.
        path: output PNG file.
        max_px: magnitude [px] at full brightness (None: the field's maximum).

    Raises:
        ImportError: if matplotlib is not installed (the message says what to install).
    """
    field = _check_field(field)
    require_matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    height, width = field.shape[1:]
    dpi = 100
    figure = Figure(figsize=(width / dpi, height / dpi), dpi=dpi)
    FigureCanvasAgg(figure)
    axes = figure.add_axes((0.0, 0.0, 1.0, 1.0))
    axes.set_axis_off()
    axes.imshow(field_to_rgb(field, max_px), interpolation="nearest")

    magnitude = np.hypot(field[0], field[1])
    longest = float(magnitude.max(initial=0.0))
    step = max(1, max(height, width) // 32)
    if longest > 0.0 and min(height, width) >= 8:
        grid_rows, grid_cols = np.mgrid[step // 2 : height : step, step // 2 : width : step]
        axes.quiver(
            grid_cols,
            grid_rows,
            field[1][grid_rows, grid_cols],
            field[0][grid_rows, grid_cols],
            color="white",
            angles="xy",
            scale_units="xy",
            scale=longest / (0.9 * step),
            width=0.0015,
        )
    axes.set_xlim(-0.5, width - 0.5)
    axes.set_ylim(height - 0.5, -0.5)

    legend_px = min(height, width) // 6
    if legend_px >= 16:
        legend = figure.add_axes(
            (0.01, 1.0 - 0.01 - legend_px / height, legend_px / width, legend_px / height)
        )
        legend.set_axis_off()
        legend.imshow(colour_wheel(legend_px), interpolation="nearest")

    save_figure(figure, path, dpi=dpi)


def save_figure(figure: Any, path: str | os.PathLike[str], dpi: int = 100) -> None:
    """Save a matplotlib figure as PNG, published atomically (turbsim._files)."""
    with atomic_path(path) as temporary:
        figure.savefig(temporary, format="png", dpi=dpi)


def plot_stats(curves: Any, line: Any, path: str | os.PathLike[str]) -> None:
    """PNG with two panels: tilt correlation vs separation (measured +- 2 s.e. against the
    theory) and mean square vs Cn2 (measured against sigma_r^2).

    Args:
        curves: a :class:`turbsim.views.diagnostics.CorrelationCurves`.
        line: a :class:`turbsim.views.diagnostics.VarianceLine`.
        path: output PNG.

    Raises:
        ImportError: if matplotlib is not installed (the message says what to install).
    """
    require_matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(11, 4.2), dpi=100)
    FigureCanvasAgg(figure)
    ax1, ax2 = figure.subplots(1, 2)
    styles = {
        "x_par": ("tab:red", "longitudinal, along x (column comp.)"),
        "y_par": ("tab:orange", "longitudinal, along y (row comp.)"),
        "x_perp": ("tab:blue", "lateral, along x (row comp.)"),
        "y_perp": ("tab:cyan", "lateral, along y (column comp.)"),
    }
    for key, (colour, label) in styles.items():
        ax1.errorbar(
            curves.lags_px,
            curves.measured[key],
            yerr=2 * curves.stderr[key],
            fmt="o",
            ms=3,
            color=colour,
            label=label,
        )
        ax1.plot(curves.lags_px, curves.theory[key], "-", color=colour, lw=1)
    ax1.set_xscale("log")
    ax1.set_xlabel("separation d [px]")
    ax1.set_ylabel("correlation")
    ax1.axhline(0, color="k", lw=0.5)
    h, w = curves.shape
    ax1.set_title(
        f"{curves.n_fields} fields {h}x{w}, sigma_r {curves.sigma_r_px:.2f} px: "
        "dots measured (+-2 s.e.), lines theory",
        fontsize=9,
    )
    ax1.legend(fontsize=7)
    ax2.loglog(line.cn2, line.theory_px2, "k-", label="theory sigma_r^2")
    ax2.errorbar(
        line.cn2,
        line.measured_px2[:, 0],
        yerr=2 * line.stderr_px2[:, 0],
        fmt="o",
        label="measured, row comp.",
    )
    ax2.errorbar(
        line.cn2,
        line.measured_px2[:, 1],
        yerr=2 * line.stderr_px2[:, 1],
        fmt="s",
        mfc="none",
        label="measured, column comp.",
    )
    ax2.set_xlabel("Cn2 [m^-2/3]")
    ax2.set_ylabel("E[F^2] [px^2]")
    ax2.set_title("variance is linear in Cn2", fontsize=9)
    ax2.legend(fontsize=7)
    figure.tight_layout()
    save_figure(figure, path)
