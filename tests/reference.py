"""Naive pure-Python reference implementations that the Numba kernels are compared with.

Deliberately slow and literal: plain loops over pixels, Python floats (IEEE float64), one
formula per line, following the contracts in the docstrings of the kernels' public wrappers.
Use only on tiny arrays.
"""

from __future__ import annotations

import math

import numpy as np


def _reflect101_reference(x: float, xmax: float) -> float:
    """Mirror ``x`` about the edge pixel centres 0 and ``xmax`` (reflect-101), period 2 xmax."""
    if xmax == 0.0:
        return 0.0
    period = 2.0 * xmax
    x = math.fmod(abs(x), period)
    if x > xmax:
        x = period - x
    return x


def warp_image_reference(image: np.ndarray, field: np.ndarray, border: str = "clamp") -> np.ndarray:
    """Reference for ``turbsim.physics.warp.warp_image``: ``out(r, c) = image(r + F[0], c + F[1])``.

    Bilinear interpolation in float64 with the same operation order as the kernel:
    ``top = (1 - wx) I00 + wx I01``, ``bottom = (1 - wx) I10 + wx I11``,
    ``v = (1 - wy) top + wy bottom``. uint8 output is ``floor(v + 0.5)`` clipped to [0, 255].

    Args:
        image: (H, W) or (H, W, C), uint8, float32 or float64.
        field: (2, H, W) displacement [px]; [0] row, [1] column.
        border: "clamp", "reflect" (reflect-101) or "zero" (outside sample points give 0).

    Returns:
        Warped image, same shape and dtype as ``image``.
    """
    image = np.asarray(image)
    field = np.asarray(field)
    grey = image.ndim == 2
    img = image[:, :, None] if grey else image
    height, width, channels = img.shape
    assert field.shape == (2, height, width)
    out = np.zeros(img.shape, dtype=img.dtype)
    hmax = float(height - 1)
    wmax = float(width - 1)
    for r in range(height):
        for c in range(width):
            y = r + float(field[0, r, c])
            x = c + float(field[1, r, c])
            if not (math.isfinite(y) and math.isfinite(x)):
                raise ValueError("non-finite field")
            if border == "zero":
                if y < 0.0 or y > hmax or x < 0.0 or x > wmax:
                    continue  # output stays 0 in every channel
            elif border == "reflect":
                y = _reflect101_reference(y, hmax)
                x = _reflect101_reference(x, wmax)
            elif border == "clamp":
                y = min(max(y, 0.0), hmax)
                x = min(max(x, 0.0), wmax)
            else:
                raise ValueError(f"unknown border {border!r}")
            y0 = math.floor(y)
            x0 = math.floor(x)
            wy = y - y0
            wx = x - x0
            y1 = min(y0 + 1, height - 1)
            x1 = min(x0 + 1, width - 1)
            for k in range(channels):
                i00 = float(img[y0, x0, k])
                i01 = float(img[y0, x1, k])
                i10 = float(img[y1, x0, k])
                i11 = float(img[y1, x1, k])
                top = (1.0 - wx) * i00 + wx * i01
                bottom = (1.0 - wx) * i10 + wx * i11
                v = (1.0 - wy) * top + wy * bottom
                if img.dtype == np.uint8:
                    out[r, c, k] = min(max(math.floor(v + 0.5), 0), 255)
                else:
                    out[r, c, k] = v  # float32 output: numpy rounds to nearest
    return out[:, :, 0] if grey else out


def cb_ifl_naive(logits, target, weights, gamma, alpha=1.0, ignore_index=255) -> float:
    """Class-balanced iterative focal loss (Rai et al., BMVC 2020) as a per-pixel Python loop
    in float64: per-image weighted mean of -(1 - p_t)^gamma log p_t, then the batch mean."""
    z = np.asarray(logits, dtype=np.float64)
    y = np.asarray(target)
    b_, c_, h, w = z.shape
    per_image = []
    for b in range(b_):
        num = den = 0.0
        for r in range(h):
            for c in range(w):
                t = int(y[b, r, c])
                if t == ignore_index:
                    continue
                m = max(z[b, :, r, c])
                lse = m + math.log(sum(math.exp(v - m) for v in z[b, :, r, c]))
                logp = z[b, t, r, c] - lse
                focal = -((1.0 - math.exp(logp)) ** gamma) * logp
                num += weights[t] * focal
                den += weights[t]
        per_image.append(num / den if den > 0 else 0.0)
    return alpha * sum(per_image) / b_
