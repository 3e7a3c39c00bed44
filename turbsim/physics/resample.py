"""Displacement fields between the native and the stored pixel grid (area averaging).

``turbsim generate --size HxW`` distorts a frame at its native size and then area-resizes the
image (``cv2.INTER_AREA``). Each stored pixel is then the mean of the native pixels under its
footprint, each of which was displaced by the native field F_n. To first order in the variation
of F_n inside one footprint, the stored image shows the displacement

    F_s(p) = (area mean of F_n over the footprint of p) * (H / H_n, W / W_n)

(row component scaled by the row ratio, column component by the column ratio, so that F_s is in
stored pixels). That is :func:`area_resize_field`. It is smoother than the native field (a
neighbouring stored vector differs less), which is why its fold fraction is lower
(:mod:`turbsim.views.folding`).

:func:`area_weights` is the linear map of one axis that ``cv2.resize(..., INTER_AREA)`` applies
when it shrinks an axis (a matrix, so that torch code can apply exactly the same average; see
:mod:`turbsim.augment`). numpy and OpenCV only.
"""

from __future__ import annotations

import math
from functools import lru_cache

import cv2
import numpy as np

__all__ = ["area_resize_field", "area_weights"]


@lru_cache(maxsize=16)
def _area_weights(n_in: int, n_out: int) -> np.ndarray:
    scale = n_in / n_out
    weights = np.zeros((n_out, n_in), np.float64)
    for i in range(n_out):
        start, stop = i * scale, min((i + 1) * scale, float(n_in))
        first, last = math.floor(start), math.ceil(stop)
        for j in range(first, last):
            overlap = min(stop, j + 1.0) - max(start, float(j))
            if overlap > 1e-3:  # OpenCV drops slivers below 1e-3 px of the source
                weights[i, j] = overlap
        weights[i] /= weights[i].sum()
    weights.flags.writeable = False
    return weights


def area_weights(n_in: int, n_out: int) -> np.ndarray:
    """The (n_out, n_in) float64 matrix of an area-average shrink of one axis.

    Row i averages the source pixels under the output pixel's footprint
    ``[i s, (i + 1) s)``, s = n_in / n_out, each weighted by its overlap [px] (slivers under
    1e-3 px dropped, as OpenCV does), rows summing to 1. Applied to both axes it is
    ``cv2.resize(x, (n_out_cols, n_out_rows), interpolation=cv2.INTER_AREA)`` for a float image
    (a test holds the two to float32 precision).

    Args:
        n_in: source length [px], >= 1.
        n_out: output length [px], 1 <= n_out <= n_in (shrinking only).

    Raises:
        ValueError: n_out outside [1, n_in].
    """
    if not 1 <= n_out <= n_in:
        raise ValueError(
            f"area weights shrink an axis: need 1 <= n_out <= n_in, got {n_out}, {n_in}"
        )
    return _area_weights(int(n_in), int(n_out))


def area_resize_field(field: np.ndarray, out_shape: tuple[int, int]) -> np.ndarray:
    """The displacement a stored image shows: ``field`` area-averaged to ``out_shape``, scaled.

    Args:
        field: (2, H_n, W_n) displacement [native px]; [0] row, [1] column.
        out_shape: stored (H, W) [px], H <= H_n and W <= W_n.

    Returns:
        float32 (2, H, W) [stored px]: each component the ``cv2.INTER_AREA`` resize of the
        native one, the row component times H / H_n, the column component times W / W_n.
        ``field`` itself (as float32) when the sizes are equal.

    Raises:
        ValueError: a bad field shape, or an output larger than the field on an axis.
    """
    field = np.asarray(field)
    if field.ndim != 3 or field.shape[0] != 2:
        raise ValueError(f"field must be (2, H, W), got shape {field.shape}")
    h, w = (int(s) for s in out_shape)
    nh, nw = field.shape[1:]
    if not (1 <= h <= nh and 1 <= w <= nw):
        raise ValueError(f"stored size {h}x{w} must be within the field's {nh}x{nw}")
    if (h, w) == (nh, nw):
        return np.ascontiguousarray(field, dtype=np.float32)
    planes = [np.ascontiguousarray(c, dtype=np.float32) for c in field]
    return np.stack(
        [
            cv2.resize(planes[0], (w, h), interpolation=cv2.INTER_AREA) * np.float32(h / nh),
            cv2.resize(planes[1], (w, h), interpolation=cv2.INTER_AREA) * np.float32(w / nw),
        ]
    ).astype(np.float32)
